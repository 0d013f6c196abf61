"""ChArUco board definition and detection on real rendered images."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml

from kinema4d_core.calibration.board import (board_from_dict, board_points, detect_charuco, load_board,
                                             rejection_reason)
from kinema4d_core.calibration.geometry import make_pose
from kinema4d_core.calibration.synthetic import warp_board_image
from kinema4d_core.errors import ConfigError
from scipy.spatial.transform import Rotation


def _view(pinhole, board, tilt_deg=25.0, distance=0.6):
    w, h = board.size_m
    R = Rotation.from_euler("xyz", [tilt_deg, -15.0, 10.0], degrees=True).as_matrix()
    return make_pose(R, np.array([0.0, 0.0, distance]) - R @ np.array([w / 2, h / 2, 0.0]))


def test_yaml_in_repo_describes_a_printable_board(board):
    assert (board.squares_x, board.squares_y) == (7, 5)
    assert board.n_corners == 24
    w, h = board.size_m
    assert w <= 0.297 and h <= 0.210          # fits an A4 sheet
    pts = board_points(board)
    assert pts.shape == (24, 3)
    np.testing.assert_allclose(pts[0], [board.square_length, board.square_length, 0.0])


@pytest.mark.parametrize("key,value,field", [
    ("squares_x", 1, "squares_x"), ("square_length", -0.04, "square_length"),
    ("marker_length", 0.05, "marker_length"), ("dictionary", "DICT_9X9_1", "dictionary"),
    ("squares_y", "five", "squares_y"),
])
def test_bad_board_definitions_name_the_field(tmp_path, repo_root, key, value, field):
    doc = yaml.safe_load((repo_root / "calibration" / "charuco_board.yaml").read_text())
    doc[key] = value
    path = tmp_path / "board.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as err:
        load_board(path)
    assert field in err.value.field


def test_detects_a_rendered_board_at_the_projected_corners(pinhole, board):
    T_camera_board = _view(pinhole, board)
    image = warp_board_image(pinhole, board, T_camera_board)
    det = detect_charuco(image, board)
    assert det.n_corners == board.n_corners
    np.testing.assert_array_equal(det.ids, np.arange(board.n_corners))
    pts = board_points(board) @ T_camera_board[:3, :3].T + T_camera_board[:3, 3]
    err = np.linalg.norm(det.corners - pinhole.project(pts), axis=1)
    assert err.max() < 0.5 and err.mean() < 0.2, err
    assert rejection_reason(det, board, 6) is None


def test_wrong_dictionary_means_board_not_found(pinhole, board):
    image = warp_board_image(pinhole, board, _view(pinhole, board))
    wrong = dataclasses.replace(board, dictionary="DICT_4X4_50")
    det = detect_charuco(image, wrong)
    reason = rejection_reason(det, wrong, 6)
    assert det.n_corners == 0 and reason is not None and "board not found" in reason


def test_wrong_square_count_yields_too_few_corners(pinhole, board):
    image = warp_board_image(pinhole, board, _view(pinhole, board))
    wrong = board_from_dict({"squares_x": 5, "squares_y": 4, "square_length": board.square_length,
                             "marker_length": board.marker_length, "dictionary": board.dictionary})
    det = detect_charuco(image, wrong)
    # The marker ids of a 5x4 board are a subset of the 7x5 board's, but their neighbourhood differs:
    # whatever is interpolated must not pass as a good view with the true corner positions.
    reason = rejection_reason(det, wrong, 6)
    if reason is None:
        pts = board_points(wrong)[det.ids]
        T = _view(pinhole, board)
        truth = pinhole.project(pts @ T[:3, :3].T + T[:3, 3])
        assert np.linalg.norm(det.corners - truth, axis=1).max() > 5.0
    else:
        assert "corners" in reason or "not found" in reason


def test_blank_image_is_not_a_board(board):
    det = detect_charuco(np.full((240, 320, 3), 200, np.uint8), board)
    assert "board not found" in rejection_reason(det, board, 6)
