"""Digital-twin meshes: a robot surface reconstructed in some "recon" frame (e.g. from an orbit video),
cut into per-link pieces, re-expressed in each link's frame so that the URDF kinematics drive it.

Inputs: pieces (link name, vertices (V,3) in the RECONSTRUCTION frame, faces, optional colours)
captured while the robot stood at a known joint configuration ``q_ref`` (N,), and ``T_recon_base``
(4x4 similarity: ``p_recon = s R p_base + t``; s may differ from 1 when the reconstruction is not
metric). Output: LinkMesh tuple in link frames, metres: ``robot.with_meshes(twin)``.

On disk (format in urdf/README.md): a folder with ``twin.yaml`` (T_recon_base, q_ref, joint_names)
and ``pieces/<link>.ply`` or ``pieces/<link>.obj``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kinema4d_core.errors import ConfigError, InputError
from kinema4d_core.io import read_yaml
from kinema4d_core.mesh import LinkMesh
from kinema4d_core.robot import NEUTRAL_GREY, RobotModel, load_mesh_file


@dataclass(frozen=True)
class TwinPiece:
    """One reconstructed piece of one link: vertices (V,3) in the recon frame (recon units), faces
    (F,3), colors None, (F,3) per-face or (V,3) per-vertex uint8 RGB."""

    link: str
    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None = None


def similarity_inverse(T_recon_base: Any, field: str = "T_recon_base") -> tuple[np.ndarray, float]:
    """Validate a 4x4 similarity and return (T_base_recon, scale).

    Raises InputError if it is not [s R | t; 0 0 0 1] with R a proper rotation and s > 0.
    """
    T = np.asarray(T_recon_base, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise InputError(f"expected a finite 4x4 matrix, got shape {T.shape}", field=field,
                         fix="give the similarity mapping base-frame points into the reconstruction frame")
    A = T[:3, :3]
    scale = float(np.cbrt(np.linalg.det(A)))
    if not scale > 0 or np.abs(A.T @ A - scale**2 * np.eye(3)).max() > 1e-6 * max(scale**2, 1.0) \
            or np.abs(T[3] - [0, 0, 0, 1]).max() > 1e-12:
        raise InputError("not a similarity transform [s R | t; 0 0 0 1] with R a rotation and s > 0", field=field,
                         fix="use a rotation (det +1) times a positive uniform scale, last row 0 0 0 1")
    R = A / scale
    T_inv = np.eye(4)
    T_inv[:3, :3] = R.T / scale
    T_inv[:3, 3] = -(R.T @ T[:3, 3]) / scale
    return T_inv, scale


def _piece_face_colors(piece: TwinPiece, n_verts: int, n_faces: int, faces: np.ndarray, where: str) -> np.ndarray:
    if piece.colors is None:
        return np.tile(np.uint8(NEUTRAL_GREY), (n_faces, 1))
    c = np.asarray(piece.colors)
    if c.ndim == 2 and c.shape[1] == 4:
        c = c[:, :3]
    if c.shape == (n_faces, 3):  # per-face wins when F == V
        return c.astype(np.uint8)
    if c.shape == (n_verts, 3):  # per-vertex: mean over each triangle's corners
        return np.round(c.astype(np.float64)[faces].mean(axis=1)).astype(np.uint8)
    raise InputError(f"colors of shape {c.shape} match neither {n_faces} faces nor {n_verts} vertices",
                     field=f"{where}.colors", fix="give (F,3) face or (V,3) vertex RGB colours")


def twin_meshes(robot: RobotModel, pieces: Sequence[TwinPiece], q_ref: Any, T_recon_base: Any) -> tuple[LinkMesh, ...]:
    """Express reconstructed pieces in their links' frames (metres).

    For a vertex p of link L: ``p_L = T_base_L(q_ref)^-1 @ T_recon_base^-1 @ p``. Pieces of the same
    link are merged; meshes are ordered like the robot's links, ``link_index`` = position.
    """
    q_ref = robot.check_positions(q_ref, field="q_ref")
    if q_ref.ndim != 1:
        raise InputError(f"expected ({robot.n_joints},), got {q_ref.shape}", field="q_ref",
                         fix="give the single configuration the robot had during the reconstruction")
    T_base_recon, _ = similarity_inverse(T_recon_base)
    if not pieces:
        raise InputError("no pieces given", field="pieces", fix="give at least one reconstructed link piece")
    frames = robot.frame_poses(q_ref)
    links = set(robot.link_names())
    merged: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for i, piece in enumerate(pieces):
        where = f"pieces[{i}]({piece.link})"
        if piece.link not in links:
            raise InputError(f"'{piece.link}' is not a link of {robot.config.name}", field=f"{where}.link",
                             fix=f"use one of {robot.link_names()}")
        v = np.asarray(piece.vertices, dtype=np.float64)
        f = np.asarray(piece.faces)
        if v.ndim != 2 or v.shape[1] != 3 or not np.all(np.isfinite(v)):
            raise InputError(f"expected finite (V,3) vertices, got {v.shape}", field=f"{where}.vertices",
                             fix="give vertex positions in the reconstruction frame")
        if (f.ndim != 2 or f.shape[1] != 3 or f.dtype.kind not in "iu"
                or (f.size and (f.min() < 0 or f.max() >= len(v)))):
            raise InputError(f"expected (F,3) integer indices into {len(v)} vertices", field=f"{where}.faces",
                             fix="give triangle vertex indices")
        colors = _piece_face_colors(piece, len(v), len(f), f, where)
        T_link_recon = np.linalg.inv(frames[piece.link]) @ T_base_recon
        merged.setdefault(piece.link, []).append((v @ T_link_recon[:3, :3].T + T_link_recon[:3, 3], f, colors))

    out = []
    for name in [n for n in robot.link_names() if n in merged]:
        vs, fs, cs, offset = [], [], [], 0
        for v, f, c in merged[name]:
            vs.append(v)
            fs.append(f.astype(np.int64) + offset)
            cs.append(c)
            offset += len(v)
        out.append(LinkMesh(link=name, link_index=len(out), vertices=np.concatenate(vs),
                            faces=np.concatenate(fs), face_colors=np.concatenate(cs)))
    return tuple(out)


def load_twin(folder: str | os.PathLike, robot: RobotModel) -> tuple[LinkMesh, ...]:
    """Load a twin folder (``twin.yaml`` + ``pieces/<link>.ply|.obj``) into link-frame meshes."""
    folder = Path(folder)
    spec_path = folder / "twin.yaml"
    spec = read_yaml(spec_path, field="twin", what="twin spec", fix="give a twin folder holding twin.yaml")
    if not isinstance(spec, dict):
        raise ConfigError(f"{spec_path} must hold a mapping", field="twin", fix="see urdf/README.md")
    for key in ("T_recon_base", "q_ref", "joint_names"):
        if key not in spec:
            raise ConfigError(f"missing in {spec_path}", field=key, fix="see urdf/README.md (twin format)")
    unknown = sorted(set(spec) - {"T_recon_base", "q_ref", "joint_names"})
    if unknown:
        raise ConfigError(f"unknown keys {unknown} in {spec_path}", field=unknown[0],
                          fix="keys: T_recon_base, q_ref, joint_names")
    names = spec["joint_names"]
    if not isinstance(names, list) or not isinstance(spec["q_ref"], list) or len(names) != len(spec["q_ref"]):
        raise ConfigError("joint_names and q_ref must be lists of the same length", field="q_ref",
                          fix="one reference position per joint name")
    values = {}
    for key, fix in (("q_ref", "one number per joint name"), ("T_recon_base", "a 4x4 list of numbers")):
        try:
            values[key] = np.asarray(spec[key], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"not numeric ({exc})", field=key, fix=fix) from exc
    q_ref = robot.joint_vector(names, values["q_ref"])
    T = values["T_recon_base"]
    files = sorted(p for p in (folder / "pieces").glob("*") if p.suffix.lower() in (".ply", ".obj"))
    if not files:
        raise ConfigError(f"no .ply/.obj files in {folder / 'pieces'}", field="pieces",
                          fix="save one mesh per link as pieces/<link>.ply")
    pieces = []
    for path in files:
        try:
            v, f, c = load_mesh_file(path)
        except Exception as exc:  # trimesh raises many types for unreadable files
            raise ConfigError(f"cannot read {path} ({type(exc).__name__}: {exc})", field=f"pieces/{path.name}",
                              fix="save each piece as a readable .ply/.obj triangle mesh") from exc
        pieces.append(TwinPiece(link=path.stem, vertices=v, faces=f, colors=c))
    return twin_meshes(robot, pieces, q_ref, T)
