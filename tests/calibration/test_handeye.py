"""Eye-to-hand calibration and single-view PnP against simulated ground truth.

Corner observations are the board corners projected through the ground-truth CameraModel plus
0.3 px Gaussian noise (what a good ChArUco detection delivers).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from kinema4d_core.calibration.board import CharucoDetection
from kinema4d_core.calibration.geometry import make_pose, pose_errors
from kinema4d_core.calibration.handeye import HandEyeView, solve_eye_to_hand
from kinema4d_core.calibration.pnp import calibrate_single_view
from kinema4d_core.calibration.synthetic import board_poses_facing_camera, flange_poses, observe_board
from kinema4d_core.errors import CalibrationError

T_EE_BOARD = make_pose(Rotation.from_euler("xyz", [180, 0, 90], degrees=True).as_matrix(), [-0.10, 0.14, 0.03])


def _views(camera, board, n, seed, noise_px=0.3):
    rng = np.random.default_rng(seed)
    boards = board_poses_facing_camera(camera, n, spec=board, rng=rng)
    ee = flange_poses(boards, T_EE_BOARD)
    return [HandEyeView(f"view_{i:03d}", ee[i], observe_board(camera, board, camera.T_camera_base @ boards[i],
                                                              noise_px=noise_px, rng=rng)) for i in range(n)]


def _intrinsics_only(camera):
    return camera.with_pose(np.eye(4))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eight_noisy_views_recover_the_camera_within_2mm_and_0p2deg(camera, board, seed):
    views = _views(camera, board, 8, seed)
    result = solve_eye_to_hand(views, board, _intrinsics_only(camera))
    t_err, r_err = pose_errors(result.T_base_camera, camera.T_base_camera)
    assert t_err <= 0.002 and r_err <= 0.2, (t_err, r_err)
    t_b, r_b = pose_errors(result.T_ee_board, T_EE_BOARD)
    assert t_b <= 0.002 and r_b <= 0.2
    # Figures: per-view rms close to the injected noise (0.3 px per axis -> ~0.42 px per corner).
    assert result.n_used == 8 and all(v.used for v in result.views)
    assert 0.2 < result.rms_px < 0.7
    assert all(0.1 < v.rms_px < 1.0 for v in result.views)
    # The reported spread is the right order of magnitude for the actual error.
    assert 0 < result.translation_std_m < 0.005 and 0 < result.rotation_std_deg < 0.5
    assert "view_007" in result.summary()


def test_refinement_beats_the_closed_form(camera, board):
    result = solve_eye_to_hand(_views(camera, board, 10, 5, noise_px=0.5), board, _intrinsics_only(camera))
    refined = pose_errors(result.T_base_camera, camera.T_base_camera)[0]
    closed = pose_errors(result.T_base_camera_closed_form, camera.T_base_camera)[0]
    assert refined <= closed


def test_views_with_too_few_corners_are_rejected_with_the_reason(camera, board):
    views = _views(camera, board, 9, 3)
    d = views[4].detection
    views[4] = HandEyeView(views[4].name, views[4].T_base_ee, CharucoDetection(d.ids[:5], d.corners[:5], 3))
    result = solve_eye_to_hand(views, board, _intrinsics_only(camera), min_corners=6)
    rejected = [v for v in result.views if not v.used]
    assert [v.name for v in rejected] == ["view_004"]
    assert "only 5" in rejected[0].reason and "min_corners=6" in rejected[0].reason
    assert pose_errors(result.T_base_camera, camera.T_base_camera)[0] <= 0.002


def test_fewer_views_than_needed(camera, board):
    with pytest.raises(CalibrationError) as err:
        solve_eye_to_hand(_views(camera, board, 3, 0), board, _intrinsics_only(camera), min_views=4)
    assert err.value.field == "views" and "only 3 usable views" in err.value.problem


def test_pure_translations_are_degenerate(camera, board):
    rng = np.random.default_rng(0)
    T0 = board_poses_facing_camera(camera, 1, spec=board, rng=rng)[0]
    boards = [T0 @ make_pose(np.eye(3), rng.uniform(-0.1, 0.1, 3) * [1, 1, 0]) for _ in range(8)]
    views = [HandEyeView(f"v{i}", e, observe_board(camera, board, camera.T_camera_base @ b, noise_px=0.3, rng=rng))
             for i, (b, e) in enumerate(zip(boards, flange_poses(boards, T_EE_BOARD)))]
    with pytest.raises(CalibrationError) as err:
        solve_eye_to_hand(views, board, _intrinsics_only(camera))
    assert "degenerate" in err.value.problem and "rotat" in err.value.fix


def test_rotations_about_a_single_axis_are_degenerate(camera, board):
    rng = np.random.default_rng(1)
    T0 = board_poses_facing_camera(camera, 1, spec=board, rng=rng)[0]
    w, h = board.size_m
    centre = make_pose(np.eye(3), [w / 2, h / 2, 0])
    boards = [T0 @ centre @ make_pose(Rotation.from_rotvec([0, 0, a]).as_matrix(), [0, 0, 0]) @ np.linalg.inv(centre)
              for a in np.radians(np.linspace(-40, 40, 8))]
    views = [HandEyeView(f"v{i}", e, observe_board(camera, board, camera.T_camera_base @ b, noise_px=0.3, rng=rng))
             for i, (b, e) in enumerate(zip(boards, flange_poses(boards, T_EE_BOARD)))]
    with pytest.raises(CalibrationError) as err:
        solve_eye_to_hand(views, board, _intrinsics_only(camera))
    assert "one axis" in err.value.problem


def test_single_view_with_board_at_known_pose(camera, board):
    rng = np.random.default_rng(4)
    T_base_board = board_poses_facing_camera(camera, 1, spec=board, rng=rng, distance=(0.5, 0.6))[0]
    det = observe_board(camera, board, camera.T_camera_base @ T_base_board, noise_px=0.3, rng=rng)
    result = calibrate_single_view(det, board, _intrinsics_only(camera), T_base_board)
    t_err, r_err = pose_errors(result.T_base_camera, camera.T_base_camera)
    assert t_err < 0.005 and r_err < 0.3
    assert 0.1 < result.rms_px < 0.7
    assert 0 < result.translation_std_m < 0.01


def test_single_view_without_board_raises(camera, board):
    empty = CharucoDetection(np.zeros(0, np.int64), np.zeros((0, 2)), 0)
    with pytest.raises(CalibrationError) as err:
        calibrate_single_view(empty, board, camera, np.eye(4))
    assert "board not found" in err.value.problem
