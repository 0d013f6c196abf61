"""Triangle meshes attached to robot links (the unit the renderer draws)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kinema4d_core.errors import InputError


@dataclass(frozen=True, eq=False)
class LinkMesh:
    """A triangle mesh rigidly attached to one robot frame.

    vertices: (V, 3) float32, metres, expressed in the mesh frame. The mesh frame's pose in the
        robot base frame is ``T_base_link(q) @ T_link_mesh``; the robot model provides it.
    faces: (F, 3) int32 vertex indices.
    face_colors: (F, 3) uint8 RGB (mesh material colours), used for the robot RGB render.
    link: name of the robot frame (URDF link) the mesh is attached to.
    link_index: integer id written into the renderer's link-id image (>= 0).

    Malformed arrays raise InputError (a ValueError) naming the field.
    """

    link: str
    link_index: int
    vertices: np.ndarray
    faces: np.ndarray
    face_colors: np.ndarray

    def __post_init__(self) -> None:
        v = np.ascontiguousarray(self.vertices, dtype=np.float32)
        f = np.ascontiguousarray(self.faces, dtype=np.int32)
        c = np.ascontiguousarray(self.face_colors, dtype=np.uint8)
        if v.ndim != 2 or v.shape[1] != 3:
            raise InputError(f"LinkMesh {self.link}: vertices must be (V,3), got {v.shape}", field="vertices",
                             fix="give one (x, y, z) row per vertex, metres")
        if f.ndim != 2 or f.shape[1] != 3:
            raise InputError(f"LinkMesh {self.link}: faces must be (F,3), got {f.shape}", field="faces",
                             fix="give one row of three vertex indices per triangle")
        if f.size and (f.min() < 0 or f.max() >= v.shape[0]):
            # negative indices would silently wrap around in numpy indexing
            raise InputError(f"LinkMesh {self.link}: face indices must lie in [0, {v.shape[0]}), got "
                             f"[{f.min()}, {f.max()}]", field="faces", fix="index the mesh's own vertices")
        if c.shape != (f.shape[0], 3):
            raise InputError(f"LinkMesh {self.link}: face_colors must be (F,3)={f.shape[0], 3}, got {c.shape}",
                             field="face_colors", fix="give one RGB row per face")
        object.__setattr__(self, "vertices", v)
        object.__setattr__(self, "faces", f)
        object.__setattr__(self, "face_colors", c)

    @property
    def n_faces(self) -> int:
        return int(self.faces.shape[0])


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 rigid (or similarity) transform ``T_a_b`` to (..., 3) points of frame b -> frame a."""
    T = np.asarray(T)
    return points @ T[:3, :3].T + T[:3, 3]
