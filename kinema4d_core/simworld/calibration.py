"""Ground-truth calibration of the sim camera as a ``kinema4d_core.camera.CameraModel``.

MuJoCo renders a pinhole image with vertical field of view ``fovy`` and the principal point at the
image centre: fy = (H/2) / tan(fovy/2), fx = fy, cx = W/2 - 0.5, cy = H/2 - 0.5 (OpenCV pixel
centres at integer coordinates). The pose is the optical frame in the robot base frame.
"""

from __future__ import annotations

import math

import numpy as np

from kinema4d_core.camera import CameraModel
from kinema4d_core.simworld.scene import SimConfig


def sim_intrinsics(width: int, height: int, fovy_deg: float) -> np.ndarray:
    """(3,3) K of a MuJoCo camera rendered at width x height pixels."""
    f = (height / 2.0) / math.tan(math.radians(fovy_deg) / 2.0)
    return np.array([[f, 0.0, width / 2.0 - 0.5], [0.0, f, height / 2.0 - 0.5], [0.0, 0.0, 1.0]])


def sim_camera_model(cfg: SimConfig) -> CameraModel:
    """The exact camera model of the sim camera (no distortion) for ``cfg``."""
    return CameraModel(width=cfg.width, height=cfg.height, K=sim_intrinsics(cfg.width, cfg.height, cfg.fovy_deg),
                       D=np.zeros(5), distortion_model="plumb_bob", T_base_camera=cfg.T_base_camera,
                       camera_name=cfg.camera_name, parent_frame=cfg.base_frame, child_frame=cfg.optical_frame)
