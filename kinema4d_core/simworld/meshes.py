"""Visual meshes for MuJoCo: Collada (.dae) files split into one triangle mesh per material.

MuJoCo cannot decode .dae, so the visual meshes are read with trimesh (+ pycollada), the scene
graph transforms are applied (vertices end up in the mesh file's frame, metres), and the parts
are grouped by material colour. Results are cached as .npz under
``$KINEMA4D_CACHE_DIR/mujoco_panda`` (default ``~/.cache/kinema4d/mujoco_panda``; ``off`` disables,
as for the robot mesh cache), keyed by the source file's name, size and mtime, and written atomically.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kinema4d_core.errors import ConfigError
from kinema4d_core.io import cache_dir as _cache_root
from kinema4d_core.io import save_npz


@dataclass(frozen=True)
class MaterialMesh:
    """Triangles sharing one material. vertices (V,3) float32 metres; faces (F,3) int32; rgba in [0,1]."""

    vertices: np.ndarray
    faces: np.ndarray
    rgba: tuple[float, float, float, float]


def cache_dir() -> Path | None:
    """Folder of the converted-mesh cache, or None when ``KINEMA4D_CACHE_DIR=off`` disables caching."""
    return _cache_root("mujoco_panda")


def _cache_key(source: Path) -> str:
    st = source.stat()
    digest = hashlib.sha1(f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}|v1".encode()).hexdigest()[:16]
    return f"{source.stem}-{digest}.npz"


def _convert(source: Path) -> list[MaterialMesh]:
    import trimesh

    try:
        scene = trimesh.load(str(source), force="scene")
    except Exception as exc:  # trimesh raises many types for unreadable files
        raise ConfigError(f"cannot read visual mesh {source}: {exc}", field="urdf.visual.mesh",
                          fix="install pycollada (for .dae) or use a readable mesh file") from exc
    groups: dict[tuple[int, int, int, int], list[trimesh.Trimesh]] = {}
    for mesh in scene.dump():
        color = (200, 200, 200, 255)
        material = getattr(mesh.visual, "material", None)
        if material is not None and getattr(material, "main_color", None) is not None:
            color = tuple(int(c) for c in material.main_color)
        elif getattr(mesh.visual, "kind", None) == "face":
            color = tuple(int(c) for c in mesh.visual.face_colors[0])
        groups.setdefault(color, []).append(mesh)
    parts = []
    for color, meshes in sorted(groups.items()):
        merged = trimesh.util.concatenate(meshes) if len(meshes) > 1 else meshes[0]
        parts.append(MaterialMesh(np.asarray(merged.vertices, np.float32), np.asarray(merged.faces, np.int32),
                                  tuple(c / 255.0 for c in color)))
    if not parts:
        raise ConfigError(f"visual mesh {source} has no triangles", field="urdf.visual.mesh",
                          fix="check the mesh file (pycollada must be installed for .dae)")
    return parts


def load_material_meshes(source: str | Path) -> list[MaterialMesh]:
    """Per-material meshes of ``source`` (.dae, .stl, .obj), converted once and cached."""
    source = Path(source)
    if not source.exists():
        raise ConfigError(f"visual mesh {source} does not exist", field="urdf.visual.mesh",
                          fix="check the URDF's package:// paths and package_dirs")
    folder = cache_dir()
    if folder is None:
        return _convert(source)
    cached = folder / _cache_key(source)
    if cached.exists():
        try:
            with np.load(cached) as z:
                n = int(z["count"])
                return [MaterialMesh(z[f"v{i}"], z[f"f{i}"], tuple(float(c) for c in z[f"c{i}"])) for i in range(n)]
        except (OSError, KeyError, ValueError):
            pass  # a damaged cache entry is simply rebuilt
    parts = _convert(source)
    arrays: dict[str, np.ndarray] = {"count": np.array(len(parts))}
    for i, p in enumerate(parts):
        arrays[f"v{i}"], arrays[f"f{i}"], arrays[f"c{i}"] = p.vertices, p.faces, np.array(p.rgba)
    try:
        save_npz(cached, arrays)
    except OSError:
        pass  # a read-only home only costs the conversion time next run
    return parts
