"""Shared fixtures for the calibration tests: board, a distortion-free and a distorted camera."""

from __future__ import annotations

import numpy as np
import pytest

from kinema4d_core.calibration.board import load_board
from kinema4d_core.camera import CameraModel, look_at


@pytest.fixture(scope="session")
def board(repo_root):
    return load_board(repo_root / "calibration" / "charuco_board.yaml")


@pytest.fixture(scope="session")
def camera():
    """640x480, plumb_bob distortion, looking at the workspace from 1.8 m."""
    K = np.array([[610.0, 0.0, 318.7], [0.0, 608.0, 241.2], [0.0, 0.0, 1.0]])
    return CameraModel(640, 480, K, np.array([0.06, -0.12, 0.001, -0.0007, 0.03]), "plumb_bob",
                       look_at((1.5, 0.7, 0.9), (0.4, 0.0, 0.3)), parent_frame="panda_link0")


@pytest.fixture(scope="session")
def pinhole(camera):
    """The same camera without distortion (for plane-homography image synthesis)."""
    return CameraModel(camera.width, camera.height, camera.K, np.zeros(5), "plumb_bob", camera.T_base_camera)
