"""Synthetic calibration data with known ground truth (tests, benchmarks, demos).

Corner observations are made by projecting the board's inner corners through a ground-truth
:class:`~kinema4d_core.camera.CameraModel` (``camera.project``) and adding Gaussian pixel noise;
``warp_board_image`` renders a real ChArUco image into a camera view through the plane
homography so that OpenCV's detector can be exercised end to end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from kinema4d_core.calibration.board import BoardSpec, CharucoDetection, board_image, board_points
from kinema4d_core.calibration.geometry import invert, make_pose

if TYPE_CHECKING:
    from kinema4d_core.camera import CameraModel


def observe_board(camera: "CameraModel", spec: BoardSpec, T_camera_board: np.ndarray, *, noise_px: float = 0.0,
                  rng: np.random.Generator | None = None, border_px: float = 2.0) -> CharucoDetection:
    """Corners a detector would report: visible (in front, inside the image, board facing the camera)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    pts_b = board_points(spec)
    pts_c = pts_b @ T_camera_board[:3, :3].T + T_camera_board[:3, 3]
    normal_c = -T_camera_board[:3, 2]                      # printed side faces -z of the board frame
    facing = float(normal_c @ (-T_camera_board[:3, 3])) > 0
    uv = camera.project(pts_c)
    ok = np.isfinite(uv).all(axis=1) & (pts_c[:, 2] > 0.05)
    ok &= (uv[:, 0] >= border_px) & (uv[:, 0] <= camera.width - 1 - border_px)
    ok &= (uv[:, 1] >= border_px) & (uv[:, 1] <= camera.height - 1 - border_px)
    if not facing:
        ok[:] = False
    ids = np.flatnonzero(ok)
    corners = uv[ok] + rng.normal(0.0, noise_px, size=(ids.size, 2)) if noise_px > 0 else uv[ok]
    n_markers = (spec.squares_x * spec.squares_y) // 2 if ids.size else 0
    return CharucoDetection(ids.astype(np.int64), corners.astype(np.float64), n_markers)


def board_poses_facing_camera(camera: "CameraModel", n: int, *, distance: tuple[float, float] = (0.7, 1.1),
                              max_tilt_deg: float = 35.0, spec: BoardSpec | None = None,
                              rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """``n`` varied board poses T_base_board in front of the camera, printed side towards it.

    The board centre lies on a ray through the central part of the image at ``distance`` metres;
    its orientation is tilted by up to ``max_tilt_deg`` about random axes (and rolled freely
    within +-60 deg), which gives the rotation diversity hand-eye calibration needs.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    half = np.zeros(3)
    if spec is not None:
        w, h = spec.size_m
        half = np.array([w / 2, h / 2, 0.0])
    K = camera.K
    poses = []
    for _ in range(n):
        u = camera.width * rng.uniform(0.35, 0.65)
        v = camera.height * rng.uniform(0.35, 0.65)
        ray = np.array([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], 1.0])
        centre_c = ray / np.linalg.norm(ray) * rng.uniform(*distance)
        # Board z axis points away from the camera (camera looks at the printed side).
        tilt_axis = rng.normal(size=3)
        tilt_axis[2] = 0.0
        tilt_axis /= np.linalg.norm(tilt_axis)
        R = (Rotation.from_rotvec(tilt_axis * np.radians(rng.uniform(10.0, max_tilt_deg)))
             * Rotation.from_rotvec([0, 0, np.radians(rng.uniform(-60, 60))])).as_matrix()
        T_camera_board = make_pose(R, centre_c - R @ half)
        poses.append(camera.T_base_camera @ T_camera_board)
    return poses


def warp_board_image(camera: "CameraModel", spec: BoardSpec, T_camera_board: np.ndarray, *,
                     pixels_per_square: int = 120, background: int = 180) -> np.ndarray:
    """(H,W) uint8 image of the board seen by a distortion-free ``camera`` (plane homography)."""
    img, H_img_board = board_image(spec, pixels_per_square)
    K = camera.K
    # Plane z=0 of the board: pixel ~ K [r1 r2 t] (x, y, 1).
    H_cam_board = K @ np.column_stack([T_camera_board[:3, 0], T_camera_board[:3, 1], T_camera_board[:3, 3]])
    H = H_cam_board @ np.linalg.inv(H_img_board)
    canvas = np.full((camera.height, camera.width), background, np.uint8)
    mask = cv2.warpPerspective(np.full(img.shape, 255, np.uint8), H, (camera.width, camera.height),
                               flags=cv2.INTER_NEAREST)
    warped = cv2.warpPerspective(img, H, (camera.width, camera.height), flags=cv2.INTER_LINEAR)
    return np.where(mask > 0, warped, canvas).astype(np.uint8)


def flange_poses(T_base_boards: list[np.ndarray], T_ee_board: np.ndarray) -> list[np.ndarray]:
    """T_base_ee for each board pose, with the board fixed at T_ee_board on the flange."""
    T_board_ee = invert(T_ee_board)
    return [T @ T_board_ee for T in T_base_boards]


def flange_board_pose(spec: BoardSpec, standoff: float = 0.02) -> np.ndarray:
    """T_ee_board of a board centred on the flange, printed side facing along the ee z axis."""
    w, h = spec.size_m
    R = np.diag([1.0, -1.0, -1.0])                 # board z = -ee z: the printed side looks along +ee z
    return make_pose(R, np.array([0.0, 0.0, standoff]) - R @ np.array([w / 2, h / 2, 0.0]))


def robot_board_views(robot, camera: "CameraModel", spec: BoardSpec, T_ee_board: np.ndarray, n: int, *,
                      rng: np.random.Generator | None = None, min_visible: float = 0.9,
                      distance: tuple[float, float] = (0.6, 0.95), max_tries: int | None = None
                      ) -> tuple[np.ndarray, list[np.ndarray]]:
    """``n`` joint configurations that show the flange-mounted board to ``camera``.

    Board poses facing the camera are drawn (``board_poses_facing_camera``) and reached by IK of
    the ee frame; configurations that do not converge or show fewer than ``min_visible`` of the
    corners are skipped. Returns ``(Q (n,N), T_camera_board list)`` (ground truth, camera model).
    """
    from kinema4d_core.trajectory import IKSolver

    rng = rng if rng is not None else np.random.default_rng(0)
    ik = IKSolver(robot)
    Q, poses = [], []
    tries = 0
    limit = max_tries if max_tries is not None else 20 * n
    T_board_ee = invert(T_ee_board)
    while len(Q) < n and tries < limit:
        tries += 1
        T_base_board = board_poses_facing_camera(camera, 1, distance=distance, spec=spec, rng=rng)[0]
        res = ik.solve(T_base_board @ T_board_ee, robot.home())
        if not res.converged:
            continue
        T_camera_board = camera.T_camera_base @ robot.ee_pose(res.q) @ T_ee_board
        det = observe_board(camera, spec, T_camera_board)
        if det.n_corners < min_visible * spec.n_corners:
            continue
        Q.append(res.q)
        poses.append(T_camera_board)
    if len(Q) < n:
        raise RuntimeError(f"found only {len(Q)} of {n} visible board poses in {tries} tries")
    return np.asarray(Q), poses
