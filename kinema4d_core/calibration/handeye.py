"""Eye-to-hand calibration: fixed camera, ChArUco board on the robot flange.

Unknowns: ``X = T_base_camera`` and ``Y = T_ee_board`` (board on the end-effector frame).
Each view i gives ``E_i = T_base_ee(q_i)`` (forward kinematics) and ``C_i = T_camera_board``
(PnP of the detected corners), related by ``E_i @ Y = X @ C_i``. For two views i, j this is the
classic ``A Y = Y B`` with ``A = inv(E_j) E_i`` and ``B = inv(C_j) C_i``.

1. Closed form: rotation from the rotation-vector pairs (alpha = R_Y beta, solved by SVD as in
   Park & Martin), translation by linear least squares, X averaged over the views.
   (OpenCV 5's Python bindings do not expose calibrateHandEye / calibrateRobotWorldHandEye,
   so this short solver is written here.)
2. Refinement: X and Y jointly by nonlinear least squares (scipy) of the corner reprojection
   error over all views.
3. Spread: jackknife (leave-one-view-out) standard deviation of X's translation and rotation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from kinema4d_core.calibration.board import BoardSpec, CharucoDetection, board_points, rejection_reason
from kinema4d_core.calibration.geometry import invert, make_pose, pose_from_vec, project
from kinema4d_core.calibration.pnp import estimate_board_pose
from kinema4d_core.errors import CalibrationError, InputError

if TYPE_CHECKING:
    from kinema4d_core.camera import CameraModel


@dataclass(frozen=True)
class HandEyeView:
    """One robot pose: flange pose from FK and the board corners detected in the camera image."""

    name: str
    T_base_ee: np.ndarray          # (4,4) pose of the frame the board is fixed to, base frame
    detection: CharucoDetection


@dataclass(frozen=True)
class ViewReport:
    """What happened to one view: used or rejected (with the reason) and its error in pixels."""

    name: str
    used: bool
    n_corners: int
    rms_px: float = float("nan")         # reprojection RMS with the final X, Y
    max_px: float = float("nan")
    reason: str | None = None


@dataclass(frozen=True)
class HandEyeResult:
    """Refined eye-to-hand solution with its error figures."""

    T_base_camera: np.ndarray
    T_ee_board: np.ndarray
    views: tuple[ViewReport, ...]
    rms_px: float                    # over all corners of all used views
    translation_std_m: float         # jackknife (leave-one-view-out) std of the camera position
    rotation_std_deg: float          # jackknife std of the camera orientation
    T_base_camera_closed_form: np.ndarray = field(repr=False, default=None)

    @property
    def n_used(self) -> int:
        return sum(v.used for v in self.views)

    def summary(self) -> str:
        """Human-readable table of the per-view and overall figures."""
        lines = [f"{'view':<24} {'used':<5} {'corners':>7} {'rms_px':>8} {'max_px':>8}  reason"]
        for v in self.views:
            lines.append(f"{v.name:<24} {'yes' if v.used else 'no':<5} {v.n_corners:>7d} {v.rms_px:>8.3f} "
                         f"{v.max_px:>8.3f}  {v.reason or ''}")
        t = self.T_base_camera[:3, 3]
        lines.append(f"views used: {self.n_used}/{len(self.views)}; reprojection rms {self.rms_px:.3f} px")
        lines.append(f"T_base_camera translation [m]: {t[0]:+.4f} {t[1]:+.4f} {t[2]:+.4f}; "
                     f"spread (jackknife std): {self.translation_std_m * 1000:.2f} mm, "
                     f"{self.rotation_std_deg:.3f} deg")
        return "\n".join(lines)


def _check_motion(E: Sequence[np.ndarray], min_rotation_deg: float, min_axis_angle_deg: float) -> None:
    """Reject degenerate motions: hand-eye needs rotations about at least two distinct axes."""
    axes = []
    n = len(E)
    for i in range(n):
        for j in range(i + 1, n):
            rv = Rotation.from_matrix(E[j][:3, :3].T @ E[i][:3, :3]).as_rotvec()
            angle = np.linalg.norm(rv)
            if np.degrees(angle) >= min_rotation_deg:
                axes.append(rv / angle)
    if not axes:
        raise CalibrationError(
            f"degenerate robot motion: no two views differ by more than {min_rotation_deg} deg of flange "
            "rotation (pure translations leave the camera position unobservable)",
            field="views", fix="capture views that also rotate the flange, about at least two different axes")
    A = np.asarray(axes)
    cos = np.abs(A @ A.T)
    best = float(np.degrees(np.arccos(np.clip(cos.min(), 0.0, 1.0))))
    if best < min_axis_angle_deg:
        raise CalibrationError(
            f"degenerate robot motion: all flange rotations share one axis (largest angle between rotation "
            f"axes {best:.1f} deg < {min_axis_angle_deg} deg)",
            field="views", fix="rotate the flange about at least two clearly different axes between views")


def _closed_form(E: list[np.ndarray], C: list[np.ndarray], min_rotation_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form (X, Y) from AY = YB over all view pairs."""
    alphas, betas, A_list, B_list = [], [], [], []
    for i in range(len(E)):
        for j in range(i + 1, len(E)):
            A = invert(E[j]) @ E[i]
            B = invert(C[j]) @ C[i]
            a = Rotation.from_matrix(A[:3, :3]).as_rotvec()
            if np.degrees(np.linalg.norm(a)) < min_rotation_deg:
                continue
            alphas.append(a)
            betas.append(Rotation.from_matrix(B[:3, :3]).as_rotvec())
            A_list.append(A)
            B_list.append(B)
    alphas, betas = np.asarray(alphas), np.asarray(betas)
    # R_Y = argmin sum |alpha - R beta|^2 (orthogonal Procrustes).
    U, _, Vt = np.linalg.svd(alphas.T @ betas)
    S = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    R_Y = U @ S @ Vt
    # (R_A - I) t_Y = R_Y t_B - t_A
    M = np.concatenate([A[:3, :3] - np.eye(3) for A in A_list])
    b = np.concatenate([R_Y @ B[:3, 3] - A[:3, 3] for A, B in zip(A_list, B_list)])
    t_Y = np.linalg.lstsq(M, b, rcond=None)[0]
    Y = make_pose(R_Y, t_Y)
    Xs = [E_i @ Y @ invert(C_i) for E_i, C_i in zip(E, C)]
    U, _, Vt = np.linalg.svd(sum(X[:3, :3] for X in Xs))
    R_X = U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt
    X = make_pose(R_X, np.mean([X[:3, 3] for X in Xs], axis=0))
    return X, Y


def _refine(X0: np.ndarray, Y0: np.ndarray, E: list[np.ndarray], obj: list[np.ndarray], img: list[np.ndarray],
            K: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimise the corner reprojection error over X (T_base_camera) and Y (T_ee_board)."""

    def unpack(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return X0 @ pose_from_vec(p[:6]), Y0 @ pose_from_vec(p[6:])

    def residuals(p: np.ndarray) -> np.ndarray:
        X, Y = unpack(p)
        X_inv = invert(X)
        return np.concatenate([(project(K, D, X_inv @ E_i @ Y, o) - m).ravel()
                               for E_i, o, m in zip(E, obj, img)])

    sol = least_squares(residuals, np.zeros(12), method="trf", loss="soft_l1", f_scale=1.0,
                        x_scale="jac", xtol=1e-12, ftol=1e-12, max_nfev=200)
    return unpack(sol.x)


def solve_eye_to_hand(views: Sequence[HandEyeView], spec: BoardSpec, camera: "CameraModel", *,
                      min_corners: int = 6, min_views: int = 4, min_rotation_deg: float = 5.0,
                      min_axis_angle_deg: float = 10.0, spread: bool = True) -> HandEyeResult:
    """Estimate T_base_camera (and T_ee_board) from views of a flange-mounted board.

    Views with fewer than ``min_corners`` corners (or no board) are rejected with the reason and
    reported; at least ``min_views`` usable views with rotations about two distinct axes are needed.
    Raises CalibrationError otherwise.
    """
    if not views:
        raise InputError("no views given", field="views", fix="capture at least 4 robot poses with the board visible")
    names_in = [v.name for v in views]
    if len(set(names_in)) != len(names_in):
        raise InputError("view names are not unique", field="views.name", fix="give every view its own name")
    K, D = np.asarray(camera.K, np.float64), np.asarray(camera.D, np.float64).reshape(-1)
    pts = board_points(spec)
    reports: dict[str, ViewReport] = {}
    E, C, obj, img, names = [], [], [], [], []
    for v in views:
        T = np.asarray(v.T_base_ee, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise InputError(f"view {v.name}: T_base_ee must be a finite 4x4 transform", field="views.T_base_ee",
                             fix="pass the flange pose from forward kinematics")
        reason = rejection_reason(v.detection, spec, min_corners)
        if reason is None:
            try:
                pose = estimate_board_pose(v.detection, spec, camera, min_corners=min_corners, field=v.name)
            except CalibrationError as exc:
                reason = exc.problem
        if reason is not None:
            reports[v.name] = ViewReport(v.name, False, v.detection.n_corners, reason=reason)
            continue
        E.append(T)
        C.append(pose.T_camera_board)
        obj.append(pts[v.detection.ids])
        img.append(np.asarray(v.detection.corners, np.float64))
        names.append(v.name)
    if len(E) < min_views:
        rejected = "; ".join(f"{r.name}: {r.reason}" for r in reports.values())
        raise CalibrationError(
            f"only {len(E)} usable views (need >= {min_views})" + (f"; rejected: {rejected}" if rejected else ""),
            field="views", fix="capture more robot poses with the whole board visible")
    _check_motion(E, min_rotation_deg, min_axis_angle_deg)
    X0, Y0 = _closed_form(E, C, min_rotation_deg)
    X, Y = _refine(X0, Y0, E, obj, img, K, D)

    X_inv = invert(X)
    all_res = []
    for name, E_i, o, m in zip(names, E, obj, img):
        r = np.linalg.norm(project(K, D, X_inv @ E_i @ Y, o) - m, axis=1)
        all_res.append(r)
        reports[name] = ViewReport(name, True, len(r), float(np.sqrt(np.mean(r ** 2))), float(r.max()))
    rms = float(np.sqrt(np.mean(np.concatenate(all_res) ** 2)))

    t_std = r_std = float("nan")
    if spread and len(E) > min_views - 1 and len(E) >= 3:
        t_dev, r_dev = [], []
        for k in range(len(E)):
            keep = [i for i in range(len(E)) if i != k]
            Xk, _ = _refine(X, Y, [E[i] for i in keep], [obj[i] for i in keep], [img[i] for i in keep], K, D)
            t_dev.append(Xk[:3, 3])
            r_dev.append(Rotation.from_matrix(X[:3, :3].T @ Xk[:3, :3]).as_rotvec())
        n = len(E)
        t_dev, r_dev = np.asarray(t_dev), np.asarray(r_dev)
        t_std = float(np.sqrt((n - 1) / n * np.sum((t_dev - t_dev.mean(0)) ** 2)))
        r_std = float(np.degrees(np.sqrt((n - 1) / n * np.sum((r_dev - r_dev.mean(0)) ** 2))))
    ordered = tuple(reports[v.name] for v in views)
    return HandEyeResult(X, Y, ordered, rms, t_std, r_std, X0)

