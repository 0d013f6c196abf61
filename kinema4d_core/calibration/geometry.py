"""Small rigid-transform helpers shared by the calibration modules (4x4 homogeneous, metres)."""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial.transform import Rotation


def make_pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """4x4 transform from a 3x3 rotation and a translation (metres)."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return T


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform."""
    R, t = T[:3, :3], T[:3, 3]
    return make_pose(R.T, -R.T @ t)


def pose_from_vec(x: np.ndarray) -> np.ndarray:
    """4x4 transform from a 6-vector (rotation vector [rad], translation [m])."""
    return make_pose(Rotation.from_rotvec(x[:3]).as_matrix(), x[3:6])


def vec_from_pose(T: np.ndarray) -> np.ndarray:
    """6-vector (rotation vector [rad], translation [m]) of a rigid 4x4 transform."""
    return np.concatenate([Rotation.from_matrix(T[:3, :3]).as_rotvec(), T[:3, 3]])


def rotation_angle_deg(R_a: np.ndarray, R_b: np.ndarray) -> float:
    """Angle (degrees) of the rotation taking ``R_b`` to ``R_a``."""
    c = (np.trace(R_a[:3, :3].T @ R_b[:3, :3]) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def pose_errors(T_est: np.ndarray, T_ref: np.ndarray) -> tuple[float, float]:
    """(translation error [m], rotation error [deg]) between two poses."""
    return float(np.linalg.norm(T_est[:3, 3] - T_ref[:3, 3])), rotation_angle_deg(T_est, T_ref)


def project(K: np.ndarray, D: np.ndarray, T_camera_x: np.ndarray, points_x: np.ndarray) -> np.ndarray:
    """Project (N,3) points of frame x into pixels (N,2) with OpenCV's model (plumb_bob/rational)."""
    rvec, _ = cv2.Rodrigues(np.ascontiguousarray(T_camera_x[:3, :3]))
    uv, _ = cv2.projectPoints(np.ascontiguousarray(points_x, dtype=np.float64).reshape(-1, 1, 3), rvec,
                              np.ascontiguousarray(T_camera_x[:3, 3]), np.asarray(K, np.float64),
                              np.asarray(D, np.float64).reshape(-1))
    return uv.reshape(-1, 2)
