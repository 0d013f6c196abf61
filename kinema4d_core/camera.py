"""Calibrated pinhole camera with OpenCV lens distortion, and the calibration YAML file.

Frames and units: the camera frame is the ROS optical frame (= OpenCV: x right, y down,
z forward), metres. Pixel centres are at integer coordinates (OpenCV). ``T_base_camera`` is the
pose of the camera optical frame in the robot base frame.

Distortion models (OpenCV order, as in ROS ``CameraInfo.D``):
- ``plumb_bob``: k1 k2 p1 p2 k3
- ``rational_polynomial``: k1 k2 p1 p2 k3 k4 k5 k6

Calibration file: the ROS ``camera_info`` YAML (``image_width``, ``image_height``,
``camera_name``, ``camera_matrix``, ``distortion_model``, ``distortion_coefficients``,
``rectification_matrix``, ``projection_matrix``; matrices as ``{rows, cols, data}``) plus::

    extrinsics:
      parent_frame: panda_link0          # robot base frame
      child_frame: camera_optical_frame  # camera optical frame
      translation: [x, y, z]             # metres, camera origin in the base frame
      rotation: [qx, qy, qz, qw]         # unit quaternion, R_base_camera
      T_mount_optical:                   # optional: optical frame in the camera's mount frame
        translation: [x, y, z]           # (e.g. camera_link); absent: OPTICAL_IN_MOUNT
        rotation: [qx, qy, qz, qw]

``OPTICAL_IN_MOUNT`` is the REP-103 axis change from a body frame (x forward, y left, z up) to
the optical frame (x right, y down, z forward), no offset: quaternion [-0.5, 0.5, -0.5, 0.5].
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kinema4d_core.errors import ConfigError, InputError
from kinema4d_core.io import atomic_path, read_yaml

DISTORTION_MODELS: dict[str, int] = {"plumb_bob": 5, "rational_polynomial": 8}
"""Supported distortion models and their coefficient counts."""

QUATERNION_NORM_TOL = 1e-6
#: (4,4) T_mount_optical of the REP-103 convention: optical z = body x, optical x = -body y,
#: optical y = -body z, same origin.
OPTICAL_IN_MOUNT = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0],
                             [0.0, 0.0, 0.0, 1.0]])
"""A rotation quaternion whose norm differs from 1 by more than this is rejected."""


def distortion8(distortion_model: str, D: np.ndarray) -> np.ndarray:
    """The 8 rational-model coefficients (k1 k2 p1 p2 k3 k4 k5 k6) equivalent to ``D``.

    plumb_bob is the rational model with k4 = k5 = k6 = 0 (denominator 1).
    """
    out = np.zeros(8, dtype=np.float64)
    D = np.asarray(D, dtype=np.float64).ravel()
    out[: D.size] = D
    return out


def distort_normalized(x: np.ndarray, y: np.ndarray, d8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply OpenCV distortion to undistorted normalized coordinates (x = X/Z, y = Y/Z)."""
    k1, k2, p1, p2, k3, k4, k5, k6 = (float(v) for v in d8)
    r2 = x * x + y * y
    r4 = r2 * r2
    r6 = r4 * r2
    radial = (1.0 + k1 * r2 + k2 * r4 + k3 * r6) / (1.0 + k4 * r2 + k5 * r4 + k6 * r6)
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return xd, yd


def _distort_jacobian(x: np.ndarray, y: np.ndarray, d8: np.ndarray):
    """Partial derivatives of ``distort_normalized`` (dxd/dx, dxd/dy, dyd/dx, dyd/dy)."""
    k1, k2, p1, p2, k3, k4, k5, k6 = (float(v) for v in d8)
    r2 = x * x + y * y
    r4 = r2 * r2
    r6 = r4 * r2
    num = 1.0 + k1 * r2 + k2 * r4 + k3 * r6
    den = 1.0 + k4 * r2 + k5 * r4 + k6 * r6
    dnum = k1 + 2.0 * k2 * r2 + 3.0 * k3 * r4          # d num / d r2
    dden = k4 + 2.0 * k5 * r2 + 3.0 * k6 * r4
    radial = num / den
    drad = (dnum * den - num * dden) / (den * den)     # d radial / d r2
    # d r2/dx = 2x, d r2/dy = 2y
    a = radial + x * drad * 2.0 * x + 2.0 * p1 * y + p2 * 6.0 * x
    b = x * drad * 2.0 * y + 2.0 * p1 * x + p2 * 2.0 * y
    c = y * drad * 2.0 * x + p1 * 2.0 * x + 2.0 * p2 * y
    d = radial + y * drad * 2.0 * y + p1 * 6.0 * y + 2.0 * p2 * x
    return a, b, c, d


def undistort_normalized(xd: np.ndarray, yd: np.ndarray, d8: np.ndarray, *, tol: float = 1e-14,
                         max_iter: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Invert ``distort_normalized`` by Newton iteration (exact to ``tol`` in normalized units)."""
    x = np.array(xd, dtype=np.float64, copy=True)
    y = np.array(yd, dtype=np.float64, copy=True)
    if not np.any(d8):
        return x, y
    for _ in range(max_iter):
        fx, fy = distort_normalized(x, y, d8)
        ex, ey = fx - xd, fy - yd
        if float(np.max(np.abs(ex), initial=0.0)) < tol and float(np.max(np.abs(ey), initial=0.0)) < tol:
            break
        a, b, c, d = _distort_jacobian(x, y, d8)
        det = a * d - b * c
        det = np.where(np.abs(det) < 1e-12, 1e-12, det)
        x = x - (d * ex - b * ey) / det
        y = y - (-c * ex + a * ey) / det
    return x, y


def _rotation_from_quaternion(q_xyzw: Sequence[float]) -> np.ndarray:
    """3x3 rotation matrix of a unit quaternion (x, y, z, w)."""
    qx, qy, qz, qw = (float(v) for v in q_xyzw)
    return np.array([
        [1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qz * qw), 2 * (qx * qz + qy * qw)],
        [2 * (qx * qy + qz * qw), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qx * qw)],
        [2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx * qx + qy * qy)],
    ])


def _quaternion_from_rotation(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) with w >= 0 of a rotation matrix."""
    from scipy.spatial.transform import Rotation

    q = Rotation.from_matrix(R).as_quat()  # x y z w
    return -q if q[3] < 0 else q


def _check_rigid(T: np.ndarray, field_name: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ConfigError(f"must be a finite 4x4 matrix, got shape {T.shape}", field=field_name,
                          fix="give the homogeneous pose of the camera optical frame in the base frame")
    R = T[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0 or \
            not np.allclose(T[3], [0, 0, 0, 1]):
        raise ConfigError("rotation part is not orthonormal (or bottom row is not 0 0 0 1)",
                          field=field_name, fix="use a proper rigid transform")
    return T


@dataclass(frozen=True, eq=False)
class CameraModel:
    """A calibrated camera: intrinsics, OpenCV distortion, image size and pose in the robot base.

    K: (3,3) intrinsics in pixels (pixel centres at integer coordinates).
    D: (k,) distortion coefficients of ``distortion_model`` (OpenCV order).
    T_base_camera: (4,4) pose of the camera optical frame in the robot base frame (metres).
    R, P: ROS rectification (3,3) and projection (3,4) matrices, kept for CameraInfo; defaults I, [K|0].
    T_mount_optical: (4,4) pose of the optical frame in the camera's mount frame (e.g. camera_link,
        REP-103 body axes x forward, z up), metres; None: not given in the file (callers use
        ``mount_to_optical()``, the pure axis change OPTICAL_IN_MOUNT).
    """

    width: int
    height: int
    K: np.ndarray
    D: np.ndarray
    distortion_model: str
    T_base_camera: np.ndarray
    camera_name: str = "camera"
    parent_frame: str = "base"
    child_frame: str = "camera_optical_frame"
    R: np.ndarray | None = None
    P: np.ndarray | None = None
    T_mount_optical: np.ndarray | None = None
    _rays: list = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if int(self.width) <= 0 or int(self.height) <= 0 or int(self.width) != self.width or \
                int(self.height) != self.height:
            raise ConfigError(f"image size must be positive integers, got {self.width}x{self.height}",
                              field="image_width/image_height", fix="give the camera resolution in pixels")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        K = np.asarray(self.K, dtype=np.float64)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)):
            raise ConfigError(f"must be a finite 3x3 matrix, got shape {K.shape}", field="camera_matrix",
                              fix="give K = [fx 0 cx; 0 fy cy; 0 0 1] (9 numbers)")
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ConfigError(f"focal lengths must be positive, got fx={K[0, 0]} fy={K[1, 1]}",
                              field="camera_matrix", fix="check the calibration (fx = K[0,0], fy = K[1,1])")
        if not np.allclose(K[2], [0, 0, 1]) or K[1, 0] != 0:
            raise ConfigError("last row must be 0 0 1 and K[1,0] must be 0", field="camera_matrix",
                              fix="give an upper-triangular pinhole matrix")
        if not isinstance(self.distortion_model, str) or self.distortion_model not in DISTORTION_MODELS:
            raise ConfigError(f"unsupported distortion model {self.distortion_model!r}",
                              field="distortion_model",
                              fix=f"use one of {sorted(DISTORTION_MODELS)} (OpenCV coefficient order)")
        D = np.asarray(self.D, dtype=np.float64).ravel()
        n = DISTORTION_MODELS[self.distortion_model]
        if D.size == 0:
            D = np.zeros(n)
        if D.size != n or not np.all(np.isfinite(D)):
            raise ConfigError(f"{self.distortion_model} needs {n} finite coefficients, got {D.size}",
                              field="distortion_coefficients",
                              fix="give k1 k2 p1 p2 k3" + (" k4 k5 k6" if n == 8 else ""))
        T = _check_rigid(self.T_base_camera, "extrinsics")
        Rr = np.eye(3) if self.R is None else np.asarray(self.R, dtype=np.float64)
        if Rr.shape != (3, 3):
            raise ConfigError(f"must be 3x3, got {Rr.shape}", field="rectification_matrix",
                              fix="use the identity for a monocular camera")
        P = np.hstack([K, np.zeros((3, 1))]) if self.P is None else np.asarray(self.P, dtype=np.float64)
        if P.shape != (3, 4):
            raise ConfigError(f"must be 3x4, got {P.shape}", field="projection_matrix",
                              fix="use [K | 0] for a monocular camera")
        if self.T_mount_optical is not None:
            object.__setattr__(self, "T_mount_optical",
                               _check_rigid(self.T_mount_optical, "extrinsics.T_mount_optical").copy())
            self.T_mount_optical.setflags(write=False)
        for name, value in (("K", K), ("D", D), ("T_base_camera", T), ("R", Rr), ("P", P)):
            value = value.copy()
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ geometry
    @property
    def T_camera_base(self) -> np.ndarray:
        """(4,4) maps base-frame points into the camera optical frame."""
        T = np.eye(4)
        R = self.T_base_camera[:3, :3]
        T[:3, :3] = R.T
        T[:3, 3] = -R.T @ self.T_base_camera[:3, 3]
        return T

    @property
    def d8(self) -> np.ndarray:
        """Distortion as the 8 rational-model coefficients (plumb_bob padded with zeros)."""
        return distortion8(self.distortion_model, self.D)

    @property
    def has_distortion(self) -> bool:
        return bool(np.any(self.D != 0))

    def mount_to_optical(self) -> np.ndarray:
        """(4,4) T_mount_optical: the file's value, else OPTICAL_IN_MOUNT (axis change only)."""
        return OPTICAL_IN_MOUNT.copy() if self.T_mount_optical is None else np.array(self.T_mount_optical)

    def with_pose(self, T_base_camera: np.ndarray) -> "CameraModel":
        """Same intrinsics, another pose."""
        return replace(self, T_base_camera=np.asarray(T_base_camera, dtype=np.float64))

    def resized(self, height: int, width: int) -> "CameraModel":
        """The same camera at another resolution: K and P scaled about pixel centres, D unchanged.

        A pixel centre u maps to (u + 0.5) * s - 0.5 (pixel centres at integer coordinates).
        """
        sx, sy = width / self.width, height / self.height
        S = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])
        return replace(self, width=int(width), height=int(height), K=S @ self.K, P=S @ self.P)

    def project(self, points_camera: np.ndarray) -> np.ndarray:
        """Project (N,3) camera-frame points (metres) to (N,2) pixels with distortion applied.

        Points with z <= 0 (behind the camera) project to NaN.
        """
        p = np.asarray(points_camera, dtype=np.float64).reshape(-1, 3)
        z = p[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            x, y = p[:, 0] / z, p[:, 1] / z
        xd, yd = distort_normalized(x, y, self.d8)
        K = self.K
        uv = np.stack([K[0, 0] * xd + K[0, 1] * yd + K[0, 2], K[1, 1] * yd + K[1, 2]], axis=-1)
        uv[z <= 0] = np.nan
        return uv

    def project_normalized(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates of undistorted normalized coordinates (x = X/Z, y = Y/Z)."""
        xd, yd = distort_normalized(np.asarray(x, np.float64), np.asarray(y, np.float64), self.d8)
        K = self.K
        return K[0, 0] * xd + K[0, 1] * yd + K[0, 2], K[1, 1] * yd + K[1, 2]

    def pixel_rays(self) -> np.ndarray:
        """(H,W,2) float64 undistorted normalized coordinates (x/z, y/z) of every pixel centre.

        Computed once per camera by Newton inversion of the distortion (re-projection error
        below 1e-6 px inside the image); the returned array is read-only and cached.
        """
        if self._rays:
            return self._rays[0]
        K = self.K
        v, u = np.mgrid[0:self.height, 0:self.width].astype(np.float64)
        yd = (v - K[1, 2]) / K[1, 1]
        xd = (u - K[0, 2] - K[0, 1] * yd) / K[0, 0]
        x, y = undistort_normalized(xd, yd, self.d8)
        rays = np.stack([x, y], axis=-1)
        rays.setflags(write=False)
        self._rays.append(rays)
        return rays


# ---------------------------------------------------------------------- look_at
def match_stream(camera: CameraModel, width: int, height: int, K: np.ndarray | None = None, *,
                 rescale: bool = False, source: str = "camera_info",
                 k_rel_tol: float = 0.01, k_abs_tol_px: float = 2.0) -> CameraModel:
    """The calibration to use for a stream of ``width`` x ``height`` images (and its ``K`` if known).

    The one rule every node, replay and evaluation follow: an image size different from the
    calibration is refused (ConfigError naming both sizes and the fix) unless ``rescale`` is asked
    for, in which case the calibration is resized with K scaled about pixel centres (the aspect
    ratio must still agree to 1%). When the stream's own intrinsics ``K`` are given they must agree
    with the (possibly rescaled) calibration: focal lengths within ``k_rel_tol`` (relative) and the
    principal point within ``k_abs_tol_px`` pixels. Nothing is ever silently stretched.
    """
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise InputError(f"image size must be positive, got {width}x{height}", field=source,
                         fix="check the camera driver's width/height")
    cam = camera
    if (width, height) != (camera.width, camera.height):
        if not rescale:
            raise ConfigError(f"{source} is {width}x{height} but the calibration is "
                              f"{camera.width}x{camera.height}", field=source,
                              fix="calibrate at the stream's resolution, set the driver to the calibrated "
                                  "resolution, or allow rescaling (parameter/option rescale_to_stream)")
        if abs((width / height) / (camera.width / camera.height) - 1.0) > 0.01:
            raise ConfigError(f"{source} aspect ratio {width}x{height} differs from the calibration's "
                              f"{camera.width}x{camera.height}; rescaling would stretch the image",
                              field=source, fix="calibrate at the stream's resolution")
        cam = camera.resized(height, width)
    if K is not None:
        K = np.asarray(K, dtype=np.float64).reshape(3, 3)
        if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise InputError("intrinsics are not finite positive focal lengths", field=f"{source}.K",
                             fix="check the camera driver's calibration")
        f_ok = np.all(np.abs(np.diag(K)[:2] / np.diag(cam.K)[:2] - 1.0) <= k_rel_tol)
        c_ok = np.all(np.abs(K[:2, 2] - cam.K[:2, 2]) <= k_abs_tol_px)
        if not (f_ok and c_ok):
            raise ConfigError(f"{source} intrinsics fx={K[0, 0]:.1f} fy={K[1, 1]:.1f} cx={K[0, 2]:.1f} "
                              f"cy={K[1, 2]:.1f} disagree with the calibration's fx={cam.K[0, 0]:.1f} "
                              f"fy={cam.K[1, 1]:.1f} cx={cam.K[0, 2]:.1f} cy={cam.K[1, 2]:.1f}",
                              field=source, fix="use the calibration file made for this camera and mode")
    return cam


def look_at(eye: Sequence[float], target: Sequence[float], up: Sequence[float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """T_base_camera (4,4) of an optical frame at ``eye`` looking at ``target`` (base frame, metres).

    The optical z axis points at the target, x to the image right, y down (``up`` appears up).
    """
    eye = np.asarray(eye, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    up = np.asarray(up, dtype=np.float64)
    z = target - eye
    if np.linalg.norm(z) < 1e-9:
        raise ConfigError("eye and target coincide", field="look_at.target", fix="move the target away from the eye")
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise ConfigError("viewing direction is parallel to the up vector", field="look_at.up",
                          fix="choose another up vector")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, z, eye
    return T


# ------------------------------------------------------------------ YAML file
_REQUIRED = ("image_width", "image_height", "camera_matrix", "distortion_model", "distortion_coefficients",
             "extrinsics")


def _matrix(doc: dict, key: str, shape: tuple[int, int] | None, path: Path) -> np.ndarray:
    """Read a ROS ``{rows, cols, data}`` matrix; ``shape=None`` accepts any rows x cols."""
    node = doc[key]
    if not isinstance(node, dict) or not {"rows", "cols", "data"} <= set(node):
        raise ConfigError("must be a mapping with rows, cols and data", field=f"{path}: {key}",
                          fix="write it as {rows: R, cols: C, data: [...]} (ROS camera_info layout)")
    try:
        rows, cols = int(node["rows"]), int(node["cols"])
        data = np.asarray(node["data"] if node["data"] is not None else [], dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"rows/cols/data must be numbers ({exc})", field=f"{path}: {key}",
                          fix="write numbers only") from None
    if rows < 0 or cols < 0 or data.size != rows * cols:
        raise ConfigError(f"rows x cols = {rows}x{cols} but data has {data.size} numbers",
                          field=f"{path}: {key}", fix="make rows * cols match the length of data")
    if shape is not None and (rows, cols) != shape:
        raise ConfigError(f"must be {shape[0]}x{shape[1]}, got {rows}x{cols}", field=f"{path}: {key}",
                          fix=f"give a {shape[0]}x{shape[1]} matrix")
    if not np.all(np.isfinite(data)):
        raise ConfigError("contains NaN or infinity", field=f"{path}: {key}", fix="write finite numbers")
    return data.reshape(rows, cols)


def _pose(node: dict, where: str) -> np.ndarray:
    """(4,4) of a {translation: [x,y,z], rotation: [qx,qy,qz,qw]} mapping (metres, scalar-last)."""
    try:
        t = np.asarray(node["translation"], dtype=np.float64)
        q = np.asarray(node["rotation"], dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError("translation and rotation must be lists of numbers", field=where,
                          fix="translation: [x, y, z], rotation: [qx, qy, qz, qw]") from None
    if t.shape != (3,) or not np.all(np.isfinite(t)):
        raise ConfigError(f"must be 3 finite numbers [x, y, z] in metres, got shape {t.shape}",
                          field=f"{where}.translation", fix="write translation: [x, y, z]")
    if q.shape != (4,) or not np.all(np.isfinite(q)):
        raise ConfigError(f"must be 4 finite numbers [qx, qy, qz, qw], got shape {q.shape}",
                          field=f"{where}.rotation", fix="write rotation: [qx, qy, qz, qw] (scalar last)")
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > QUATERNION_NORM_TOL:
        raise ConfigError(f"quaternion norm is {norm:.9f}, not 1 (tolerance {QUATERNION_NORM_TOL})",
                          field=f"{where}.rotation",
                          fix="write a unit quaternion [qx, qy, qz, qw] (scalar last) with full precision")
    T = np.eye(4)
    T[:3, :3] = _rotation_from_quaternion(q / norm)
    T[:3, 3] = t
    return T


def _mount(node: dict, path: Path) -> np.ndarray | None:
    """The optional ``extrinsics.T_mount_optical`` {translation, rotation} (None when absent)."""
    if "T_mount_optical" not in node or node["T_mount_optical"] is None:
        return None
    where = f"{path}: extrinsics.T_mount_optical"
    sub = node["T_mount_optical"]
    if not isinstance(sub, dict) or "translation" not in sub or "rotation" not in sub:
        raise ConfigError("must be a mapping with translation and rotation", field=where,
                          fix="write T_mount_optical: {translation: [x, y, z], rotation: [qx, qy, qz, qw]} "
                              "(the optical frame in the mount frame, e.g. camera_link), or leave it out")
    return _pose(sub, where)


def _extrinsics(node: Any, path: Path) -> tuple[np.ndarray, str, str]:
    where = f"{path}: extrinsics"
    if not isinstance(node, dict):
        raise ConfigError("must be a mapping", field=where,
                          fix="give parent_frame, child_frame, translation [x,y,z] and rotation [qx,qy,qz,qw]")
    for key in ("parent_frame", "child_frame", "translation", "rotation"):
        if key not in node:
            raise ConfigError("missing field", field=f"{where}.{key}",
                              fix="extrinsics needs parent_frame, child_frame, translation [x,y,z] "
                                  "and rotation [qx,qy,qz,qw] (camera optical frame in the base frame)")
    return _pose(node, where), str(node["parent_frame"]), str(node["child_frame"])


def _whole_number(value: Any) -> int:
    """``int(value)``, refusing booleans and fractional numbers (``720.5`` must not become 720)."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not an image size")
    out = int(value)
    if isinstance(value, float) and out != value:
        raise ValueError(f"{value} is not a whole number")
    return out


def calibration_from_dict(doc: Any, source: str | os.PathLike = "<calibration>") -> CameraModel:
    """Build a CameraModel from a parsed calibration YAML document (see module docstring)."""
    path = Path(source)
    if not isinstance(doc, dict):
        raise ConfigError("is not a YAML mapping", field=str(path),
                          fix="write a ROS camera_info YAML with an extrinsics section")
    for key in _REQUIRED:
        if key not in doc:
            raise ConfigError("missing field", field=f"{path}: {key}",
                              fix=f"a calibration file needs {', '.join(_REQUIRED)}")
    try:
        width, height = _whole_number(doc["image_width"]), _whole_number(doc["image_height"])
    except (TypeError, ValueError):
        raise ConfigError(f"must be integers, got {doc['image_width']!r}x{doc['image_height']!r}",
                          field=f"{path}: image_width/image_height",
                          fix="write the image size in pixels") from None
    if width <= 0 or height <= 0:
        raise ConfigError(f"must be positive, got {width}x{height}", field=f"{path}: image_width/image_height",
                          fix="write the image size in pixels")
    K = _matrix(doc, "camera_matrix", (3, 3), path)
    model = doc["distortion_model"]
    if not isinstance(model, str) or model not in DISTORTION_MODELS:
        raise ConfigError(f"unsupported distortion model {model!r}", field=f"{path}: distortion_model",
                          fix=f"use one of {sorted(DISTORTION_MODELS)}")
    D = _matrix(doc, "distortion_coefficients", None, path).ravel()
    R = _matrix(doc, "rectification_matrix", (3, 3), path) if "rectification_matrix" in doc else None
    P = _matrix(doc, "projection_matrix", (3, 4), path) if "projection_matrix" in doc else None
    T, parent, child = _extrinsics(doc["extrinsics"], path)
    T_mount = _mount(doc["extrinsics"], path)
    try:
        return CameraModel(width=width, height=height, K=K, D=D, distortion_model=model, T_base_camera=T,
                           camera_name=str(doc.get("camera_name", "camera")), parent_frame=parent,
                           child_frame=child, R=R, P=P, T_mount_optical=T_mount)
    except ConfigError as exc:
        raise ConfigError(exc.problem, field=f"{path}: {exc.field}", fix=exc.fix) from None


def load_calibration(path: str | os.PathLike) -> CameraModel:
    """Read and validate a calibration YAML file; ConfigError names the offending field."""
    path = Path(path)
    doc = read_yaml(path, field=str(path), what="calibration file", fix="pass the path of a calibration YAML file")
    return calibration_from_dict(doc, path)


def calibration_to_dict(camera: CameraModel) -> dict:
    """The calibration YAML document of ``camera`` (plain Python types)."""
    def mat(a: np.ndarray) -> dict:
        a = np.atleast_2d(a)
        return {"rows": int(a.shape[0]), "cols": int(a.shape[1]), "data": [float(v) for v in a.ravel()]}

    T = camera.T_base_camera
    extra = {}
    if camera.T_mount_optical is not None:
        M = camera.T_mount_optical
        extra = {"T_mount_optical": {"translation": [float(v) for v in M[:3, 3]],
                                     "rotation": [float(v) for v in _quaternion_from_rotation(M[:3, :3])]}}
    return {
        "image_width": camera.width,
        "image_height": camera.height,
        "camera_name": camera.camera_name,
        "camera_matrix": mat(camera.K),
        "distortion_model": camera.distortion_model,
        "distortion_coefficients": mat(camera.D.reshape(1, -1)),
        "rectification_matrix": mat(camera.R),
        "projection_matrix": mat(camera.P),
        "extrinsics": {
            "parent_frame": camera.parent_frame,
            "child_frame": camera.child_frame,
            "translation": [float(v) for v in T[:3, 3]],
            "rotation": [float(v) for v in _quaternion_from_rotation(T[:3, :3])],
            **extra,
        },
    }


def save_calibration(camera: CameraModel, path: str | os.PathLike) -> None:
    """Write ``camera`` as a calibration YAML atomically; a previous file is kept as ``<path>.bak``."""
    import yaml

    text = yaml.safe_dump(calibration_to_dict(camera), sort_keys=False, default_flow_style=None)
    with atomic_path(path, backup=True) as tmp:
        tmp.write_text(text)
