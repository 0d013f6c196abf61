"""Board pose from one image (PnP) and the single-view camera calibration.

Single-view case: the board lies at a known pose ``T_base_board`` in the robot base frame
(e.g. screwed to the table at a measured place); one detection gives
``T_base_camera = T_base_board @ inv(T_camera_board)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from kinema4d_core.calibration.board import BoardSpec, CharucoDetection, board_points, require_detection
from kinema4d_core.calibration.geometry import invert, make_pose, project, rotation_angle_deg
from kinema4d_core.errors import CalibrationError, InputError

if TYPE_CHECKING:
    from kinema4d_core.camera import CameraModel


@dataclass(frozen=True)
class BoardPose:
    """Pose of the board in the camera optical frame and its per-corner reprojection error (px)."""

    T_camera_board: np.ndarray
    residuals_px: np.ndarray   # (n,) pixel distance of each detected corner to its reprojection
    ids: np.ndarray            # (n,) corner ids used

    @property
    def rms_px(self) -> float:
        return float(np.sqrt(np.mean(self.residuals_px ** 2)))


@dataclass(frozen=True)
class SingleViewResult:
    """Single-view calibration: camera pose in the base frame, error figures and spread.

    translation_std_m / rotation_std_deg: bootstrap spread over the detected corners.
    """

    T_base_camera: np.ndarray
    board_pose: BoardPose
    translation_std_m: float
    rotation_std_deg: float

    @property
    def rms_px(self) -> float:
        return self.board_pose.rms_px


def _solve(obj: np.ndarray, img: np.ndarray, K: np.ndarray, D: np.ndarray) -> np.ndarray:
    ok, rvec, tvec = cv2.solvePnP(obj, img, K, D, flags=cv2.SOLVEPNP_IPPE)
    if not ok:
        ok, rvec, tvec = cv2.solvePnP(obj, img, K, D, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        raise CalibrationError("PnP found no board pose", field="corners",
                               fix="check the intrinsics and the board definition")
    rvec, tvec = cv2.solvePnPRefineLM(obj, img, K, D, rvec, tvec)
    return make_pose(cv2.Rodrigues(rvec)[0], tvec.reshape(3))


def estimate_board_pose(detection: CharucoDetection, spec: BoardSpec, camera: "CameraModel",
                        *, min_corners: int = 6, field: str = "view") -> BoardPose:
    """T_camera_board from detected corners (IPPE for the planar board, then Levenberg-Marquardt)."""
    require_detection(detection, spec, min_corners, field)
    K, D = np.asarray(camera.K, np.float64), np.asarray(camera.D, np.float64).reshape(-1)
    obj = board_points(spec)[detection.ids]
    img = np.ascontiguousarray(detection.corners, dtype=np.float64)
    T = _solve(obj, img, K, D)
    if T[2, 3] <= 0:
        raise CalibrationError("the board pose found lies behind the camera", field=field,
                               fix="check the intrinsics and the board definition")
    res = np.linalg.norm(project(K, D, T, obj) - img, axis=1)
    return BoardPose(T, res, detection.ids.copy())


def calibrate_single_view(detection: CharucoDetection, spec: BoardSpec, camera: "CameraModel",
                          T_base_board: np.ndarray, *, min_corners: int = 6, n_bootstrap: int = 50,
                          seed: int = 0) -> SingleViewResult:
    """Camera pose from one view of a board at a known base-frame pose.

    T_base_board: (4,4) pose of the board frame (see board.py) in the robot base frame, metres.
    """
    T_base_board = np.asarray(T_base_board, dtype=np.float64)
    if T_base_board.shape != (4, 4) or not np.all(np.isfinite(T_base_board)):
        raise InputError(f"expected a finite 4x4 transform, got shape {T_base_board.shape}",
                         field="T_base_board", fix="pass the board pose in the base frame as a 4x4 matrix")
    pose = estimate_board_pose(detection, spec, camera, min_corners=min_corners)
    T_base_camera = T_base_board @ invert(pose.T_camera_board)
    rng = np.random.default_rng(seed)
    K, D = np.asarray(camera.K, np.float64), np.asarray(camera.D, np.float64).reshape(-1)
    obj_all = board_points(spec)[detection.ids]
    dt, dr = [], []
    for _ in range(n_bootstrap):
        pick = rng.integers(0, detection.n_corners, detection.n_corners)
        if np.unique(pick).size < 4:
            continue
        try:
            T_b = T_base_board @ invert(_solve(obj_all[pick], detection.corners[pick].copy(), K, D))
        except (cv2.error, CalibrationError):
            continue
        dt.append(np.linalg.norm(T_b[:3, 3] - T_base_camera[:3, 3]))
        dr.append(rotation_angle_deg(T_b, T_base_camera))
    t_std = float(np.sqrt(np.mean(np.square(dt)))) if dt else float("nan")
    r_std = float(np.sqrt(np.mean(np.square(dr)))) if dr else float("nan")
    return SingleViewResult(T_base_camera, pose, t_std, r_std)
