"""Align a reconstructed robot mesh to the URDF robot: similarity transform + per-link pieces.

Frames: ``recon`` is the frame of the reconstruction (arbitrary units and scale), ``base`` the
robot base frame (metres). ``T_recon_base`` is a similarity (``s R``, ``t``) mapping base-frame
points into the reconstruction; ``T_base_recon`` its inverse.

Pipeline (see docs/calibration.md):
1. ``ransac_similarity``: Umeyama similarity from a few point correspondences, robust to outliers.
2. ``icp_similarity``: point-to-plane ICP (with scale) of the reconstructed vertices against
   points sampled on the URDF surface at the reference joint configuration ``q_ref``.
3. ``segment_mesh``: every reconstructed face goes to the URDF link whose surface is nearest
   after alignment; the per-link pieces (reconstruction frame) feed ``twin.twin_meshes`` so that
   forward kinematics moves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
from scipy.spatial import cKDTree

from kinema4d_core.errors import CalibrationError, InputError
from kinema4d_core.mesh import transform_points

if TYPE_CHECKING:
    from kinema4d_core.robot import RobotModel
    from kinema4d_core.twin import TwinPiece


# ---------------------------------------------------------------------------- similarity fits
def _points(a: np.ndarray, field: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3 or not np.all(np.isfinite(a)):
        raise InputError(f"expected finite (K,3) points, got shape {a.shape}", field=field,
                         fix="pass an array of 3D points, one per row")
    return a


def umeyama(src: np.ndarray, dst: np.ndarray, *, with_scale: bool = True) -> np.ndarray:
    """Least-squares similarity (4x4, ``s R`` in the 3x3 block) with ``dst ~ s R src + t`` (Umeyama 1991)."""
    src, dst = _points(src, "src"), _points(dst, "dst")
    if src.shape != dst.shape or src.shape[0] < 3:
        raise InputError(f"need >= 3 paired points of equal count, got {src.shape} and {dst.shape}",
                         field="correspondences", fix="give at least 3 corresponding points")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / src.shape[0]
    U, S, Vt = np.linalg.svd(cov)
    E = np.diag([1.0, 1.0, np.sign(np.linalg.det(U) * np.linalg.det(Vt))])
    R = U @ E @ Vt
    var_s = np.mean(np.sum(xs ** 2, axis=1))
    s = float(np.trace(np.diag(S) @ E) / var_s) if with_scale else 1.0
    T = np.eye(4)
    T[:3, :3] = s * R
    T[:3, 3] = mu_d - s * R @ mu_s
    return T


def similarity_scale(T: np.ndarray) -> float:
    """Scale factor s of a similarity 4x4 transform."""
    return float(np.cbrt(np.linalg.det(T[:3, :3])))


def similarity_rotation(T: np.ndarray) -> np.ndarray:
    """Rotation R of a similarity 4x4 transform."""
    return T[:3, :3] / similarity_scale(T)


def invert_similarity(T: np.ndarray) -> np.ndarray:
    """Inverse of a similarity 4x4 transform."""
    A_inv = np.linalg.inv(T[:3, :3])
    out = np.eye(4)
    out[:3, :3] = A_inv
    out[:3, 3] = -A_inv @ T[:3, 3]
    return out


@dataclass(frozen=True)
class SimilarityFit:
    """A similarity fitted to correspondences: T maps src into dst; residuals in dst units."""

    T: np.ndarray
    inliers: np.ndarray        # (K,) bool
    residuals: np.ndarray      # (K,) distance |T src - dst|

    @property
    def inlier_rms(self) -> float:
        r = self.residuals[self.inliers]
        return float(np.sqrt(np.mean(r ** 2))) if r.size else float("nan")


def ransac_similarity(src: np.ndarray, dst: np.ndarray, *, threshold: float, iterations: int = 500,
                      min_inliers: int = 4, seed: int = 0, with_scale: bool = True) -> SimilarityFit:
    """Umeyama similarity inside RANSAC (3-point samples), refitted on the largest consensus set.

    threshold: inlier distance in dst units (metres for base-frame points).
    """
    src, dst = _points(src, "src"), _points(dst, "dst")
    if src.shape != dst.shape:
        raise InputError(f"src {src.shape} and dst {dst.shape} differ", field="correspondences",
                         fix="give the same number of points on both sides")
    n = src.shape[0]
    if n < max(3, min_inliers):
        raise CalibrationError(f"{n} correspondences are too few (need >= {max(3, min_inliers)})",
                               field="correspondences", fix="pick more corresponding points")
    rng = np.random.default_rng(seed)
    best = np.zeros(n, bool)
    best_err = np.inf
    extent = np.linalg.norm(src.max(0) - src.min(0)) + 1e-12
    for _ in range(iterations):
        idx = rng.choice(n, 3, replace=False)
        tri = src[idx]
        if np.linalg.norm(np.cross(tri[1] - tri[0], tri[2] - tri[0])) < 1e-4 * extent ** 2:
            continue
        T = umeyama(tri, dst[idx], with_scale=with_scale)
        res = np.linalg.norm(transform_points(T, src) - dst, axis=1)
        inl = res < threshold
        err = np.sum(np.minimum(res, threshold) ** 2)          # MSAC score
        if inl.sum() > best.sum() or (inl.sum() == best.sum() and err < best_err):
            best, best_err = inl, err
    if best.sum() < max(3, min_inliers):
        raise CalibrationError(
            f"no consistent similarity: best consensus has {int(best.sum())} of {n} correspondences within "
            f"{threshold} (need >= {max(3, min_inliers)})", field="correspondences",
            fix="check that recon and robot points really correspond, or raise the RANSAC threshold")
    for _ in range(3):                                          # refit on the consensus set
        T = umeyama(src[best], dst[best], with_scale=with_scale)
        res = np.linalg.norm(transform_points(T, src) - dst, axis=1)
        new = res < threshold
        if new.sum() < 3 or np.array_equal(new, best):
            break
        best = new
    return SimilarityFit(T, best, res)


# ---------------------------------------------------------------------------- surfaces and ICP
def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-weighted uniform samples on a triangle mesh: (points (n,3), unit normals (n,3), face index (n,))."""
    v = np.asarray(vertices, np.float64)
    tri = v[np.asarray(faces)]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = 0.5 * np.linalg.norm(cross, axis=1)
    if area.sum() <= 0:
        raise InputError("mesh has no area", field="mesh", fix="pass a mesh with non-degenerate triangles")
    face = rng.choice(len(area), n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    flip = r1 + r2 > 1
    r1[flip], r2[flip] = 1 - r1[flip], 1 - r2[flip]
    t = tri[face]
    pts = t[:, 0] + r1[:, None] * (t[:, 1] - t[:, 0]) + r2[:, None] * (t[:, 2] - t[:, 0])
    nrm = cross[face] / np.maximum(np.linalg.norm(cross[face], axis=1, keepdims=True), 1e-30)
    return pts, nrm, face


@dataclass(frozen=True)
class RobotSurface:
    """Points sampled on the URDF meshes at one configuration, base frame (metres)."""

    points: np.ndarray     # (P,3)
    normals: np.ndarray    # (P,3) unit
    mesh_index: np.ndarray  # (P,) index into robot.meshes


def robot_surface(robot: "RobotModel", q: np.ndarray, n_points: int = 100_000, seed: int = 0) -> RobotSurface:
    """Sample the robot's render meshes at joint configuration ``q`` (area-weighted, base frame)."""
    rng = np.random.default_rng(seed)
    poses = robot.mesh_poses(np.asarray(q, np.float64))
    verts, faces, owner, offset = [], [], [], 0
    for i, m in enumerate(robot.meshes):
        if m.n_faces == 0:
            continue
        verts.append(transform_points(poses[i], m.vertices.astype(np.float64)))
        faces.append(m.faces + offset)
        owner.append(np.full(m.n_faces, i))
        offset += m.vertices.shape[0]
    if not verts:
        raise InputError("the robot has no meshes", field="robot", fix="use a robot config with visual meshes")
    pts, nrm, face = sample_surface(np.concatenate(verts), np.concatenate(faces), n_points, rng)
    return RobotSurface(pts, nrm, np.concatenate(owner)[face])


@dataclass(frozen=True)
class ICPResult:
    """ICP outcome: T maps source into target; rms / median are point-to-plane distances (target units)."""

    T: np.ndarray
    rms: float
    median: float
    inlier_fraction: float
    iterations: int
    converged: bool


def _skew_free_step(p: np.ndarray, q: np.ndarray, n: np.ndarray, centre: np.ndarray, with_scale: bool
                    ) -> np.ndarray:
    """Linearised point-to-plane similarity step (scale delta, rotation vector, translation)."""
    d = p - centre
    r = np.einsum("ij,ij->i", n, p - q)
    cols = [np.einsum("ij,ij->i", n, d)] if with_scale else []
    J = np.column_stack(cols + [np.cross(d, n), n])
    x, *_ = np.linalg.lstsq(J, -r, rcond=None)
    if not with_scale:
        x = np.concatenate([[0.0], x])
    return x


def icp_similarity(source: np.ndarray, target: RobotSurface | tuple[np.ndarray, np.ndarray], T_init: np.ndarray, *,
                   iterations: int = 60, max_distance: float = 0.02, min_distance: float = 0.002,
                   with_scale: bool = True, tol: float = 1e-7) -> ICPResult:
    """Point-to-plane ICP (optionally with scale) of ``source`` points onto a sampled surface.

    max_distance: initial pair-rejection distance (target units); it shrinks to 3x the median
    point-to-plane distance, but not below ``min_distance``.
    """
    from scipy.spatial.transform import Rotation

    src = _points(source, "source")
    tgt_pts, tgt_nrm = (target.points, target.normals) if isinstance(target, RobotSurface) else target
    tree = cKDTree(tgt_pts)
    T = np.asarray(T_init, np.float64).copy()
    gate = max_distance
    converged = False
    it = 0
    for it in range(1, iterations + 1):
        p = transform_points(T, src)
        dist, idx = tree.query(p, k=1, distance_upper_bound=gate)
        ok = np.isfinite(dist)
        if ok.sum() < 10:
            raise CalibrationError(f"ICP lost the surface: only {int(ok.sum())} points within {gate:.4f}",
                                   field="mesh", fix="improve the initial correspondences")
        n, q = tgt_nrm[idx[ok]], tgt_pts[idx[ok]]
        pp = p[ok]
        centre = pp.mean(0)
        x = _skew_free_step(pp, q, n, centre, with_scale)
        ds, w, tr = x[0], x[1:4], x[4:7]
        step = np.eye(4)
        step[:3, :3] = (1.0 + ds) * Rotation.from_rotvec(w).as_matrix()
        step[:3, 3] = centre - step[:3, :3] @ centre + tr
        T = step @ T
        plane = np.abs(np.einsum("ij,ij->i", n, pp - q))
        gate = max(min_distance, min(gate, 3.0 * float(np.median(plane)) + 3.0 * float(np.median(dist[ok]))))
        if abs(ds) < tol and np.linalg.norm(w) < tol and np.linalg.norm(tr) < tol * max(1.0, np.linalg.norm(centre)):
            converged = True
            break
    p = transform_points(T, src)
    dist, idx = tree.query(p, k=1)
    plane = np.abs(np.einsum("ij,ij->i", tgt_nrm[idx], p - tgt_pts[idx]))
    inl = dist < gate
    return ICPResult(T, float(np.sqrt(np.mean(plane[inl] ** 2))) if inl.any() else float("nan"),
                     float(np.median(plane)), float(inl.mean()), it, converged)


# ---------------------------------------------------------------------------- segmentation
def segment_mesh(recon_vertices: np.ndarray, recon_faces: np.ndarray, T_base_recon: np.ndarray,
                 robot: "RobotModel", q_ref: np.ndarray, *, face_colors: np.ndarray | None = None,
                 surface: RobotSurface | None = None) -> tuple[list["TwinPiece"], np.ndarray]:
    """Split the reconstructed mesh into per-link pieces for twin.py (nearest URDF surface after alignment).

    Each face goes to the link whose URDF surface (sampled at ``q_ref``) is nearest to the face
    centroid mapped into the base frame. Returns ``(pieces, face_link)``: ``pieces`` are
    :class:`kinema4d_core.twin.TwinPiece` in the RECONSTRUCTION frame (``twin_meshes`` moves them
    into link frames so forward kinematics drives them); ``face_link`` (F,) is the index into
    ``robot.meshes`` of each face's owner.
    """
    from kinema4d_core.twin import TwinPiece

    V = _points(recon_vertices, "mesh.vertices")
    F = np.asarray(recon_faces, np.int64)
    if F.ndim != 2 or F.shape[1] != 3 or (F.size and (F.min() < 0 or F.max() >= len(V))):
        raise InputError(f"faces must be (F,3) indices into {len(V)} vertices", field="mesh.faces",
                         fix="pass a valid triangle mesh")
    colors = None if face_colors is None else np.asarray(face_colors, np.uint8).reshape(len(F), 3)
    surface = surface if surface is not None else robot_surface(robot, q_ref, 150_000)
    centroids = transform_points(T_base_recon, V[F].mean(axis=1))
    _, nearest = cKDTree(surface.points).query(centroids, k=1)
    owner = surface.mesh_index[nearest]
    pieces: list[TwinPiece] = []
    links = [m.link for m in robot.meshes]
    for link in dict.fromkeys(links):
        idx = [i for i, name in enumerate(links) if name == link]
        sel = np.flatnonzero(np.isin(owner, idx))
        if sel.size == 0:
            continue
        used, inverse = np.unique(F[sel].ravel(), return_inverse=True)
        pieces.append(TwinPiece(link, V[used].copy(), inverse.reshape(-1, 3).astype(np.int64),
                                None if colors is None else colors[sel]))
    return pieces, owner


def joint_anchors(robot: "RobotModel", q_ref: np.ndarray, T_recon_base: np.ndarray,
                  frames: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Positions of robot frames (default: every link with a mesh) in the reconstruction frame at ``q_ref``."""
    poses = robot.frame_poses(np.asarray(q_ref, np.float64))
    names = list(frames) if frames is not None else sorted({m.link for m in robot.meshes})
    return {name: transform_points(T_recon_base, poses[name][:3, 3][None])[0] for name in names if name in poses}


# ---------------------------------------------------------------------------- whole pipeline
@dataclass(frozen=True)
class Correspondences:
    """Paired points: ``recon`` (K,3) in the reconstruction frame, ``base`` (K,3) in the base frame
    at the reference configuration ``q_ref`` (robot.joint_names order)."""

    recon: np.ndarray
    base: np.ndarray
    q_ref: np.ndarray


def load_correspondences(path, robot: "RobotModel") -> Correspondences:
    """Read a correspondences .npz (format in docs/calibration.md).

    Keys: ``recon_points`` (K,3); ``joint_names`` (N,) and ``q_ref`` (N,); and either
    ``base_points`` (K,3) (base frame at q_ref, metres) or ``link_names`` (K,) with
    ``link_points`` (K,3) (points in those links' frames, metres).
    """
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist", field="correspondences", fix="pass the correspondences .npz")
    try:
        data = dict(np.load(path, allow_pickle=False))
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read {path} as .npz ({exc})", field="correspondences",
                         fix="write it with numpy.savez") from None
    for key in ("recon_points", "joint_names", "q_ref"):
        if key not in data:
            raise InputError(f"missing array '{key}'", field=f"correspondences.{key}",
                             fix="see docs/calibration.md for the correspondences format")
    recon = _points(data["recon_points"], "correspondences.recon_points")
    q_ref = robot.joint_vector([str(n) for n in data["joint_names"]], np.asarray(data["q_ref"], np.float64))
    q_ref = robot.check_positions(q_ref, field="correspondences.q_ref")
    if "base_points" in data:
        base = _points(data["base_points"], "correspondences.base_points")
    elif "link_names" in data and "link_points" in data:
        local = _points(data["link_points"], "correspondences.link_points")
        names = [str(n) for n in data["link_names"]]
        if len(names) != len(local):
            raise InputError(f"{len(names)} link names for {len(local)} link points", field="correspondences.link_names",
                             fix="give one link name per point")
        poses = robot.frame_poses(q_ref)
        unknown = sorted({n for n in names if n not in poses})
        if unknown:
            raise InputError(f"unknown frames {unknown}", field="correspondences.link_names",
                             fix=f"use frames of {robot.config.name}")
        base = np.stack([transform_points(poses[n], p[None])[0] for n, p in zip(names, local)])
    else:
        raise InputError("needs base_points, or link_names + link_points", field="correspondences",
                         fix="see docs/calibration.md for the correspondences format")
    if base.shape != recon.shape:
        raise InputError(f"recon_points {recon.shape} and robot points {base.shape} differ",
                         field="correspondences", fix="give one robot point per recon point")
    return Correspondences(recon, base, q_ref)


@dataclass(frozen=True)
class MeshAlignment:
    """Result of aligning a reconstructed mesh to the robot (see module docstring)."""

    T_recon_base: np.ndarray
    ransac: SimilarityFit        # recon -> base fit of the correspondences (metres)
    icp: ICPResult | None        # recon -> base refinement (metres); None when skipped

    @property
    def T_base_recon(self) -> np.ndarray:
        return invert_similarity(self.T_recon_base)

    @property
    def scale(self) -> float:
        """Reconstruction units per metre."""
        return similarity_scale(self.T_recon_base)


def align_mesh(recon_vertices: np.ndarray, corr: Correspondences, robot: "RobotModel", *,
               ransac_threshold: float = 0.03, icp: bool = True, icp_points: int = 20_000,
               surface_points: int = 150_000, seed: int = 0, surface: RobotSurface | None = None) -> MeshAlignment:
    """T_recon_base from correspondences (Umeyama + RANSAC), refined by ICP against the URDF surface.

    ransac_threshold: inlier distance in metres (base frame).
    """
    fit = ransac_similarity(corr.recon, corr.base, threshold=ransac_threshold, seed=seed)
    result = None
    T_base_recon = fit.T
    if icp:
        V = _points(recon_vertices, "mesh.vertices")
        rng = np.random.default_rng(seed)
        src = V[rng.choice(len(V), icp_points, replace=False)] if len(V) > icp_points else V
        surface = surface if surface is not None else robot_surface(robot, corr.q_ref, surface_points, seed)
        gate = max(3.0 * fit.inlier_rms, 0.01)
        result = icp_similarity(src, surface, fit.T, max_distance=gate)
        T_base_recon = result.T
    return MeshAlignment(invert_similarity(T_base_recon), fit, result)
