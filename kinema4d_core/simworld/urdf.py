"""Minimal URDF reader for building the MuJoCo scene (links, joints, inertials, geometry).

Only what the simulated lab needs: revolute/prismatic/fixed joints with limits and mimic, inertials,
mesh visuals and mesh/box collisions. Poses are (4, 4) transforms in metres, parent frame first:
``Joint.origin`` is T_parent_child at q = 0, geometry origins are T_link_geometry.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from kinema4d_core.errors import ConfigError


@dataclass(frozen=True)
class Geometry:
    """One <visual> or <collision>: a mesh file or a box (full edge lengths, metres)."""

    origin: np.ndarray
    mesh: Path | None = None
    box: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class Link:
    name: str
    mass: float = 0.0
    com: np.ndarray = field(default_factory=lambda: np.eye(4))   # T_link_inertial
    inertia: tuple[float, ...] = (0.0,) * 6                      # ixx iyy izz ixy ixz iyz, kg m^2
    visuals: tuple[Geometry, ...] = ()
    collisions: tuple[Geometry, ...] = ()


@dataclass(frozen=True)
class Joint:
    name: str
    type: str                      # revolute | prismatic | fixed
    parent: str
    child: str
    origin: np.ndarray             # T_parent_child at q = 0
    axis: np.ndarray               # unit axis in the child frame
    lower: float = 0.0
    upper: float = 0.0
    effort: float = 0.0
    damping: float = 0.0
    mimic: str | None = None       # name of the joint this one follows:
    mimic_multiplier: float = 1.0  # q = multiplier * q[mimic] + offset (URDF <mimic> attributes)
    mimic_offset: float = 0.0


@dataclass(frozen=True)
class Urdf:
    name: str
    links: dict[str, Link]
    joints: tuple[Joint, ...]

    @property
    def root(self) -> str:
        children = {j.child for j in self.joints}
        roots = [n for n in self.links if n not in children]
        return roots[0]

    def children_of(self, link: str) -> list[Joint]:
        return [j for j in self.joints if j.parent == link]


def pose_from_xyz_rpy(xyz: np.ndarray, rpy: np.ndarray) -> np.ndarray:
    """4x4 transform from a URDF origin (rpy = fixed-axis roll, pitch, yaw in radians)."""
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("xyz", rpy).as_matrix()
    T[:3, 3] = xyz
    return T


def _floats(text: str | None, n: int, default: float = 0.0) -> np.ndarray:
    if text is None:
        return np.full(n, default, dtype=float)
    return np.array([float(v) for v in text.split()], dtype=float)


def _origin(elem: ET.Element | None) -> np.ndarray:
    o = elem.find("origin") if elem is not None else None
    if o is None:
        return np.eye(4)
    return pose_from_xyz_rpy(_floats(o.get("xyz"), 3), _floats(o.get("rpy"), 3))


def _resolve(uri: str, urdf_dir: Path, package_dirs: tuple[Path, ...]) -> Path:
    """A mesh filename of the URDF as a path (same rules as ``kinema4d_core.robot.resolve_resource``);
    ConfigError when a ``package://`` mesh is under none of ``package_dirs``."""
    from kinema4d_core.robot import resolve_resource

    path = resolve_resource(uri, package_dirs, urdf_dir, field="urdf")
    if uri.startswith("package://") and not path.exists():
        raise ConfigError(f"mesh {uri} not found under package dirs {[str(p) for p in package_dirs]}",
                          field="urdf", fix="pass the folder that contains the package as package_dirs")
    return path


def _geometry(elem: ET.Element, urdf_dir: Path, package_dirs: tuple[Path, ...]) -> Geometry | None:
    geo = elem.find("geometry")
    if geo is None:
        return None
    mesh, box = geo.find("mesh"), geo.find("box")
    if mesh is not None:
        return Geometry(_origin(elem), mesh=_resolve(mesh.get("filename", ""), urdf_dir, package_dirs))
    if box is not None:
        size = _floats(box.get("size"), 3)
        return Geometry(_origin(elem), box=(float(size[0]), float(size[1]), float(size[2])))
    return None   # other primitives are not used by the robots of this project


def read_urdf(path: str | Path, package_dirs: tuple[Path, ...] = ()) -> Urdf:
    """Parse ``path``; ConfigError when the file is missing or malformed."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ConfigError(f"cannot read URDF {path}: {exc}", field="urdf",
                          fix="point the sim config at a readable URDF file") from exc
    links: dict[str, Link] = {}
    for le in root.findall("link"):
        inertial = le.find("inertial")
        mass, com, inertia = 0.0, np.eye(4), (0.0,) * 6
        if inertial is not None:
            m = inertial.find("mass")
            mass = float(m.get("value", 0.0)) if m is not None else 0.0
            com = _origin(inertial)
            ie = inertial.find("inertia")
            if ie is not None:
                inertia = tuple(float(ie.get(k, 0.0)) for k in ("ixx", "iyy", "izz", "ixy", "ixz", "iyz"))
        visuals = tuple(g for g in (_geometry(v, path.parent, package_dirs) for v in le.findall("visual")) if g)
        collisions = tuple(g for g in (_geometry(c, path.parent, package_dirs) for c in le.findall("collision"))
                           if g)
        links[le.get("name")] = Link(le.get("name"), mass, com, inertia, visuals, collisions)
    joints = []
    for je in root.findall("joint"):
        limit, dyn, mimic = je.find("limit"), je.find("dynamics"), je.find("mimic")
        axis = _floats(je.find("axis").get("xyz") if je.find("axis") is not None else "1 0 0", 3)
        joints.append(Joint(
            name=je.get("name"), type=je.get("type"),
            parent=je.find("parent").get("link"), child=je.find("child").get("link"),
            origin=_origin(je), axis=axis / np.linalg.norm(axis),
            lower=float(limit.get("lower", 0.0)) if limit is not None else 0.0,
            upper=float(limit.get("upper", 0.0)) if limit is not None else 0.0,
            effort=float(limit.get("effort", 0.0)) if limit is not None else 0.0,
            damping=float(dyn.get("damping", 0.0)) if dyn is not None else 0.0,
            mimic=mimic.get("joint") if mimic is not None else None,
            mimic_multiplier=float(mimic.get("multiplier", 1.0)) if mimic is not None else 1.0,
            mimic_offset=float(mimic.get("offset", 0.0)) if mimic is not None else 0.0,
        ))
    return Urdf(root.get("name", path.stem), links, tuple(joints))
