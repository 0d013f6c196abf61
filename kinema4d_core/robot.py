"""Robot configs (``urdf/*.yaml``) and the Pinocchio robot model: FK, joint limits, link meshes.

Frames: every pose returned here is ``T_base_X`` (4x4), mapping points expressed in frame X into
the config's ``base_frame``. Units: metres, radians (prismatic joints in metres).

The actuated joint vector ``q`` (N,) follows ``RobotConfig.joint_names``. Mimic joints of the URDF
(e.g. the Panda's ``panda_finger_joint2``) are not part of ``q``: they are expanded as
``multiplier * q[leader] + offset`` before Pinocchio sees the configuration.

Meshes: one :class:`~kinema4d_core.mesh.LinkMesh` per rendered link, with vertices expressed in
that link's frame, so ``mesh_poses(q)[i]`` is simply ``T_base_link(q)`` for ``meshes[i].link``.
A :class:`RobotModel` is not thread-safe (it owns one Pinocchio ``Data``).
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

import kinema4d_core
from kinema4d_core.errors import ConfigError, InputError
from kinema4d_core.io import read_yaml
from kinema4d_core.mesh import LinkMesh

log = logging.getLogger(__name__)

#: Placeholder usable in ``package_dirs`` / ``urdf``: the ``share`` folder of the cmeel prefix
#: (``<site-packages>/cmeel.prefix/share``), where ``example-robot-data`` installs its robots.
CMEEL_SHARE = "{cmeel_share}"
NEUTRAL_GREY = (178, 178, 178)
_CONFIG_KEYS = {"name", "urdf", "package_dirs", "base_frame", "ee_frame", "joint_names", "gripper",
                "render_links", "mesh_kind", "home", "camera"}
_CAMERA_KEYS = {"eye", "target", "width", "height", "hfov_deg"}


@dataclass(frozen=True)
class GripperConfig:
    """Gripper joint (one of the actuated joints) and its open/closed positions (metres of finger travel)."""

    joint: str
    open: float
    closed: float


@dataclass(frozen=True)
class RobotConfig:
    """A robot as described by one ``urdf/<name>.yaml`` file (format: ``urdf/README.md``)."""

    name: str
    source: Path
    urdf: Path
    package_dirs: tuple[Path, ...]
    base_frame: str
    ee_frame: str
    joint_names: tuple[str, ...]
    gripper: GripperConfig | None
    render_links: tuple[str, ...] | None
    mesh_kind: str
    home: tuple[float, ...] | None = None
    #: default view: {eye: (3,) m, target: (3,) m, width: px, height: px, hfov_deg: deg}, base frame
    camera: Mapping[str, Any] | None = None


# --------------------------------------------------------------------------------------------
# config files
# --------------------------------------------------------------------------------------------

def robots_dir() -> Path:
    """Folder holding the robot configs: ``$KINEMA4D_ROBOTS_DIR`` or ``<repo>/urdf``."""
    env = os.environ.get("KINEMA4D_ROBOTS_DIR")
    if env:
        return Path(env).expanduser()
    return Path(kinema4d_core.__file__).resolve().parents[1] / "urdf"


def list_robots() -> list[str]:
    """Names of the robot configs available to :func:`load_robot_config`."""
    folder = robots_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.yaml"))


def cmeel_share() -> Path:
    """``<site-packages>/cmeel.prefix/share`` of the running interpreter (example-robot-data)."""
    for entry in sys.path:
        candidate = Path(entry) / "cmeel.prefix" / "share"
        if entry and candidate.is_dir():
            return candidate
    raise ConfigError("the cmeel prefix (site-packages/cmeel.prefix/share) was not found",
                      field="package_dirs",
                      fix="pip install example-robot-data (it installs the robot descriptions there)")


def _expand_placeholders(text: str, field: str) -> str:
    if CMEEL_SHARE in text:
        text = text.replace(CMEEL_SHARE, str(cmeel_share()))
    if "{" in text or "}" in text:
        raise ConfigError(f"unknown placeholder in '{text}'", field=field,
                          fix=f"the only placeholder is {CMEEL_SHARE}")
    return text


def resource_candidates(uri: str, package_dirs: Sequence[Path], base_dir: Path) -> list[Path]:
    """Every path a URDF/config resource may name, in the order they are tried.

    * ``package://pkg/rel``: ``<dir>/pkg/rel`` for each of ``package_dirs``, then ``<a>/rel`` for each
      ancestor ``a`` of ``base_dir`` named ``pkg`` (a description package checked out as a folder),
      then ``<p>/pkg/rel`` and ``<p>/share/pkg/rel`` for each entry of ``$ROS_PACKAGE_PATH`` /
      ``$AMENT_PREFIX_PATH``;
    * ``file:///abs`` and absolute paths: that path;
    * anything else (``meshes/x.stl``, ``./meshes/x.stl``, ``../meshes/x.stl``): relative to ``base_dir``
      (for meshes: the folder of the URDF file).
    """
    if uri.startswith("package://"):
        rel = uri[len("package://"):]
        pkg, _, rest = rel.partition("/")
        cands = [Path(d) / rel for d in package_dirs]
        cands += [a / rest for a in (base_dir, *base_dir.parents) if a.name == pkg and rest]
        for var, subs in (("ROS_PACKAGE_PATH", ("",)), ("AMENT_PREFIX_PATH", ("share",))):
            for entry in os.environ.get(var, "").split(os.pathsep):
                if entry:
                    cands += [Path(entry, sub, rel) for sub in subs]
        return list(dict.fromkeys(cands))
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    path = Path(uri).expanduser()
    return [path if path.is_absolute() else base_dir / path]


def resolve_resource(uri: str, package_dirs: Sequence[Path], base_dir: Path, *, field: str) -> Path:
    """Resolve a URDF/config resource (rules: :func:`resource_candidates`).

    Returns the first existing candidate, else the first candidate.
    """
    cands = resource_candidates(uri, package_dirs, base_dir)
    if not cands:
        raise ConfigError(f"'{uri}' needs package_dirs to resolve", field=field,
                          fix="list the folder that contains the package in package_dirs")
    for cand in cands:
        if cand.exists():
            return cand
    return cands[0]


def _require(raw: Mapping[str, Any], key: str, kind: type, source: Path) -> Any:
    if key not in raw:
        raise ConfigError(f"missing key in {source}", field=key, fix=f"add '{key}:' (see urdf/README.md)")
    value = raw[key]
    if not isinstance(value, kind):
        raise ConfigError(f"expected {kind.__name__}, got {type(value).__name__} ({value!r}) in {source}",
                          field=key, fix="see urdf/README.md for the format")
    return value


def _str_list(raw: Any, key: str, source: Path) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(x, str) for x in raw):
        raise ConfigError(f"expected a non-empty list of names in {source}, got {raw!r}", field=key,
                          fix="write a YAML list of strings")
    if len(set(raw)) != len(raw):
        raise ConfigError(f"duplicate names in {raw}", field=key, fix="list each name once")
    return tuple(raw)


def load_robot_config(name_or_path: str | os.PathLike) -> RobotConfig:
    """Read and validate a robot config by name (``urdf/<name>.yaml``) or by path to a yaml.

    Only the file format is checked here; names of joints/frames are checked against the URDF
    when the :class:`RobotModel` is built.
    """
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or os.sep in text or "/" in text:
        path = Path(text).expanduser()
    else:
        path = robots_dir() / f"{text}.yaml"
        if not path.is_file():
            raise ConfigError(f"no robot config named '{text}' in {robots_dir()}", field="robot",
                              fix=f"use one of {list_robots()} or a path to a robot yaml")
    raw = read_yaml(path, field="robot", what="robot config file",
                    fix=f"use one of {list_robots()} or an existing yaml path")
    path = path.resolve()
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of keys", field="robot", fix="see urdf/README.md")
    unknown = sorted(set(raw) - _CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"unknown keys {unknown} in {path}", field=unknown[0],
                          fix=f"valid keys: {sorted(_CONFIG_KEYS)}")

    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"expected a non-empty string, got {name!r}", field="name", fix="name: my_robot")
    pkg_raw = raw.get("package_dirs", [])
    if not isinstance(pkg_raw, list) or not all(isinstance(x, str) for x in pkg_raw):
        raise ConfigError(f"expected a list of folders, got {pkg_raw!r}", field="package_dirs",
                          fix=f"e.g. package_dirs: ['{CMEEL_SHARE}']")
    package_dirs = []
    for entry in pkg_raw:
        p = Path(_expand_placeholders(entry, "package_dirs")).expanduser()
        package_dirs.append(p if p.is_absolute() else path.parent / p)
    urdf_text = _expand_placeholders(_require(raw, "urdf", str, path), "urdf")
    urdf = resolve_resource(urdf_text, package_dirs, path.parent, field="urdf")
    if not urdf.is_file():
        raise ConfigError(f"URDF file {urdf} does not exist", field="urdf",
                          fix="give a path relative to the yaml, an absolute path, or package://... "
                              "resolvable through package_dirs")

    gripper = None
    if raw.get("gripper") is not None:
        g = raw["gripper"]
        if (not isinstance(g, dict) or set(g) != {"joint", "open", "closed"} or not isinstance(g["joint"], str)
                or not all(isinstance(g[k], (int, float)) for k in ("open", "closed"))):
            raise ConfigError(f"expected {{joint: <name>, open: <m>, closed: <m>}}, got {g!r}", field="gripper",
                              fix="e.g. gripper: {joint: panda_finger_joint1, open: 0.04, closed: 0.0}")
        gripper = GripperConfig(joint=g["joint"], open=float(g["open"]), closed=float(g["closed"]))

    render_links = raw.get("render_links")
    if render_links is not None:
        render_links = _str_list(render_links, "render_links", path)
    mesh_kind = raw.get("mesh_kind", "visual")
    if mesh_kind not in ("visual", "collision"):
        raise ConfigError(f"expected 'visual' or 'collision', got {mesh_kind!r}", field="mesh_kind",
                          fix="mesh_kind: visual")
    joint_names = _str_list(_require(raw, "joint_names", list, path), "joint_names", path)
    if gripper is not None and gripper.joint not in joint_names:
        raise ConfigError(f"gripper joint '{gripper.joint}' is not one of joint_names {list(joint_names)}",
                          field="gripper.joint", fix="add the gripper joint to joint_names")
    home = raw.get("home")
    if home is not None:
        if (not isinstance(home, list) or len(home) != len(joint_names)
                or not all(isinstance(x, (int, float)) for x in home)):
            raise ConfigError(f"expected {len(joint_names)} numbers (one per joint_names entry), got {home!r}",
                              field="home", fix="list one position per joint, in joint_names order")
        home = tuple(float(x) for x in home)
    camera = raw.get("camera")
    if camera is not None:
        camera = _camera_spec(camera, path)
    return RobotConfig(name=name, source=path, urdf=urdf, package_dirs=tuple(package_dirs),
                       base_frame=_require(raw, "base_frame", str, path),
                       ee_frame=_require(raw, "ee_frame", str, path),
                       joint_names=joint_names, gripper=gripper, render_links=render_links,
                       mesh_kind=mesh_kind, home=home, camera=camera)


def _camera_spec(raw: Any, path: Path) -> dict[str, Any]:
    example = "camera: {eye: [1.5, 0.8, 0.9], target: [0.0, 0.0, 0.4], width: 640, height: 480, hfov_deg: 60}"
    if not isinstance(raw, dict) or set(raw) != _CAMERA_KEYS:
        raise ConfigError(f"expected the keys {sorted(_CAMERA_KEYS)} in {path}, got {raw!r}", field="camera",
                          fix=example)
    out: dict[str, Any] = {}
    for key in ("eye", "target"):
        v = raw[key]
        if not isinstance(v, list) or len(v) != 3 or not all(isinstance(x, (int, float)) for x in v):
            raise ConfigError(f"expected 3 numbers (metres, base frame), got {v!r}", field=f"camera.{key}",
                              fix=example)
        out[key] = tuple(float(x) for x in v)
    for key in ("width", "height"):
        if not isinstance(raw[key], int) or raw[key] <= 0:
            raise ConfigError(f"expected a positive integer, got {raw[key]!r}", field=f"camera.{key}", fix=example)
        out[key] = raw[key]
    fov = raw["hfov_deg"]
    if not isinstance(fov, (int, float)) or not 1.0 <= fov <= 170.0:
        raise ConfigError(f"expected a horizontal field of view in degrees (1..170), got {fov!r}",
                          field="camera.hfov_deg", fix=example)
    out["hfov_deg"] = float(fov)
    return out


def default_camera(config: RobotConfig) -> Any:
    """The config's default pinhole ``CameraModel`` (``camera`` key; a 640x480, 60 deg view of the
    base from the front-right when absent). Pose ``T_base_camera`` from ``look_at(eye, target)``."""
    from kinema4d_core.camera import CameraModel, look_at

    spec = config.camera or {"eye": (1.5, 0.8, 0.9), "target": (0.0, 0.0, 0.4), "width": 640, "height": 480,
                             "hfov_deg": 60.0}
    w, h = spec["width"], spec["height"]
    f = 0.5 * w / np.tan(np.radians(spec["hfov_deg"]) / 2.0)
    K = np.array([[f, 0.0, (w - 1) / 2.0], [0.0, f, (h - 1) / 2.0], [0.0, 0.0, 1.0]])
    return CameraModel(width=w, height=h, K=K, D=np.zeros(5), distortion_model="plumb_bob",
                       T_base_camera=look_at(spec["eye"], spec["target"]), parent_frame=config.base_frame)


# --------------------------------------------------------------------------------------------
# mesh files
# --------------------------------------------------------------------------------------------

def _face_colors_of(geom: Any) -> np.ndarray | None:
    """(F,3) uint8 colours of a trimesh geometry from its material/colour visuals, or None."""
    visual = getattr(geom, "visual", None)
    if visual is None:
        return None
    n = len(geom.faces)
    if getattr(visual, "kind", None) == "texture":
        material = getattr(visual, "material", None)
        color = getattr(material, "main_color", None) if material is not None else None
        if color is None:
            return None
        return np.tile(np.asarray(color, dtype=np.uint8)[:3], (n, 1))
    if getattr(visual, "kind", None) in ("face", "vertex"):
        return np.asarray(visual.face_colors, dtype=np.uint8)[:, :3]
    return None


@functools.lru_cache(maxsize=256)
def _load_mesh_file_cached(path: str, mtime_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    import trimesh

    scene = trimesh.load(path, force="scene")
    verts, faces, colors, offset, any_color = [], [], [], 0, False
    for node in scene.graph.nodes_geometry:
        transform, geom_name = scene.graph[node]
        geom = scene.geometry[geom_name]
        if not hasattr(geom, "faces") or len(geom.faces) == 0:
            continue
        v = np.asarray(geom.vertices, dtype=np.float64) @ transform[:3, :3].T + transform[:3, 3]
        verts.append(v)
        faces.append(np.asarray(geom.faces, dtype=np.int64) + offset)
        offset += len(v)
        c = _face_colors_of(geom)
        any_color |= c is not None
        colors.append(c)
    if not verts:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int32), None
    face_colors = None
    if any_color:
        face_colors = np.concatenate([c if c is not None else np.tile(np.uint8(NEUTRAL_GREY), (len(f), 1))
                                      for c, f in zip(colors, faces)])
    return np.concatenate(verts), np.concatenate(faces).astype(np.int32), face_colors


def load_mesh_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Load a mesh file (.dae/.stl/.obj/.ply) with its scene-graph transforms applied.

    Returns ``(vertices (V,3) float64 in file units, faces (F,3) int32, face_colors (F,3) uint8 or
    None when the file has no colour information)``. Cached per process by path and mtime; do not
    modify the returned arrays.
    """
    p = Path(path)
    return _load_mesh_file_cached(str(p.resolve()), p.stat().st_mtime_ns)


def _primitive_mesh(geometry: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Triangulate a coal primitive (Box, Sphere, Cylinder, Capsule) in its own frame."""
    import coal
    import trimesh

    if isinstance(geometry, coal.Box):
        m = trimesh.creation.box(extents=2.0 * np.asarray(geometry.halfSide))
    elif isinstance(geometry, coal.Sphere):
        m = trimesh.creation.icosphere(subdivisions=2, radius=geometry.radius)
    elif isinstance(geometry, coal.Cylinder):
        m = trimesh.creation.cylinder(radius=geometry.radius, height=2.0 * geometry.halfLength, sections=24)
    elif isinstance(geometry, coal.Capsule):
        m = trimesh.creation.capsule(height=2.0 * geometry.halfLength, radius=geometry.radius, count=[12, 12])
    else:
        return None
    return np.asarray(m.vertices, dtype=np.float64), np.asarray(m.faces, dtype=np.int32)


XACRO_NS = "{http://www.ros.org/wiki/xacro}"


def _xacro_error(urdf: Path, what: str) -> ConfigError:
    name = urdf.name
    out = name[:-len(".xacro")] if name.endswith(".xacro") else "model.urdf"
    if not out.endswith(".urdf"):
        out += ".urdf"
    return ConfigError(f"{urdf} is a xacro file ({what}), not a plain URDF", field="urdf",
                       fix=f"expand it first: `xacro {name} > {out}` (or `ros2 run xacro xacro {name} -o {out}`) "
                           "and point urdf: at the result")


@dataclass(frozen=True)
class PreparedUrdf:
    """A URDF made ready for Pinocchio (see :func:`prepare_urdf`)."""

    xml: str                                    #: URDF text: absolute mesh paths, continuous -> revolute
    root: ET.Element                            #: parsed original tree (mesh filenames rewritten)
    meshes: tuple[tuple[str, str, str, Path | None], ...]  #: (link, kind, URI, resolved file or None)
    continuous: frozenset[str]                  #: names of the URDF's continuous joints


@functools.lru_cache(maxsize=32)
def _prepare_urdf_cached(urdf: str, mtime_ns: int, package_dirs: tuple[str, ...]) -> PreparedUrdf:
    path = Path(urdf)
    if path.name.endswith(".xacro"):
        raise _xacro_error(path, "its name ends in .xacro")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ConfigError(f"{path} is not valid XML: {exc}", field="urdf", fix="check the URDF file") from exc
    for elem in root.iter():
        tag = str(elem.tag)
        if tag.startswith(XACRO_NS) or tag.startswith("xacro:"):
            raise _xacro_error(path, f"it contains <{tag.replace(XACRO_NS, 'xacro:')}> elements")
        for value in elem.attrib.values():
            if "${" in value or "$(" in value:
                raise _xacro_error(path, f"it contains the xacro expression '{value}'")
    if root.tag != "robot":
        raise ConfigError(f"{path} has root <{root.tag}>, not <robot>", field="urdf", fix="give a URDF file")

    dirs = [Path(d) for d in package_dirs]
    meshes = []
    for link in root.findall("link"):
        for kind in ("visual", "collision"):
            for elem in link.findall(kind):
                mesh = elem.find("geometry/mesh")
                if mesh is None or not mesh.get("filename"):
                    continue
                uri = mesh.get("filename")
                found = next((c for c in resource_candidates(uri, dirs, path.parent) if c.is_file()), None)
                if found is not None:
                    mesh.set("filename", str(found.resolve()))
                meshes.append((link.get("name", "?"), kind, uri, found))
    continuous = set()
    for joint in root.findall("joint"):
        if joint.get("type") == "continuous":
            # same kinematics as a revolute joint; RobotModel gives it infinite limits (no clipping,
            # no wrapping), while Pinocchio's continuous joint would need (cos, sin) coordinates
            continuous.add(joint.get("name"))
            joint.set("type", "revolute")
            limit = joint.find("limit")
            if limit is None:
                limit = ET.SubElement(joint, "limit", {"effort": "0", "velocity": "0"})
            limit.set("lower", "-3.141592653589793")
            limit.set("upper", "3.141592653589793")
    xml = ET.tostring(root, encoding="unicode")
    # restore the tree's joint types for readers of .root
    for joint in root.findall("joint"):
        if joint.get("name") in continuous:
            joint.set("type", "continuous")
    return PreparedUrdf(xml=xml, root=root, meshes=tuple(meshes), continuous=frozenset(continuous))


def prepare_urdf(config: RobotConfig) -> PreparedUrdf:
    """Parse the config's URDF once (cached by path and mtime) and make it ready for Pinocchio.

    This is the one place mesh URIs are resolved (rules: :func:`resource_candidates`, relative
    paths from the URDF's folder); found meshes are rewritten to absolute paths. A ``.xacro`` file
    or a URDF with ``xacro:`` elements / ``${...}`` expressions raises ConfigError telling to run
    ``xacro`` first. Continuous joints become revolute joints for Pinocchio (see ``continuous``).
    """
    urdf = Path(config.urdf)
    return _prepare_urdf_cached(str(urdf.resolve()), urdf.stat().st_mtime_ns,
                                tuple(str(d) for d in config.package_dirs))


def _urdf_mesh_refs(config: RobotConfig, kind: str) -> list[tuple[str, str, Path | None]]:
    """(link name, mesh URI, resolved file or None) for every ``<kind>/geometry/mesh`` of the URDF."""
    return [(link, uri, found) for link, k, uri, found in prepare_urdf(config).meshes if k == kind]


def _urdf_mimics(root: ET.Element) -> dict[str, tuple[str, float, float]]:
    """mimic joint name -> (leader joint, multiplier, offset), read from the URDF tree."""
    out = {}
    for joint in root.findall("joint"):
        mimic = joint.find("mimic")
        if mimic is not None:
            out[joint.get("name")] = (mimic.get("joint"), float(mimic.get("multiplier", 1.0)),
                                      float(mimic.get("offset", 0.0)))
    return out


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------

class RobotModel:
    """Pinocchio kinematics + link meshes of one robot config.

    Attributes: ``config``, ``joint_names`` (actuated, action order), ``n_joints`` (N),
    ``lower``/``upper`` (N,) joint limits (rad or m), ``meshes`` (``meshes[i].link_index == i``),
    ``mimic_joints`` (name -> (leader, multiplier, offset)).
    """

    def __init__(self, config: RobotConfig):
        import pinocchio as pin

        self.config = config
        prepared = prepare_urdf(config)
        try:
            self._model = pin.buildModelFromXML(prepared.xml)
        except Exception as exc:  # pinocchio raises ValueError/RuntimeError with its own text
            raise ConfigError(f"Pinocchio could not parse {config.urdf}: {exc}", field="urdf",
                              fix="check the URDF file") from exc
        self._data = self._model.createData()
        model = self._model
        self.joint_names: tuple[str, ...] = tuple(config.joint_names)
        self.n_joints = len(self.joint_names)
        all_mimics = _urdf_mimics(prepared.root)

        joint_ids = {model.names[j]: j for j in range(1, model.njoints)}
        for j in range(1, model.njoints):
            if model.joints[j].nq != 1 or model.joints[j].nv != 1:
                raise ConfigError(f"joint '{model.names[j]}' has {model.joints[j].nq} position coordinates; "
                                  "only 1-DoF revolute/prismatic joints are supported", field="urdf",
                                  fix="use revolute, continuous or prismatic joints (planar/floating "
                                      "joints are not supported)")
        unknown = [n for n in self.joint_names if n not in joint_ids]
        if unknown:
            raise ConfigError(f"joints {unknown} are not movable joints of {config.urdf.name}", field="joint_names",
                              fix=f"movable joints are {sorted(joint_ids)}")
        self.mimic_joints: dict[str, tuple[str, float, float]] = {}
        for name, (leader, mult, off) in all_mimics.items():
            if name in joint_ids:
                if name in self.joint_names or leader not in self.joint_names:
                    raise ConfigError(f"mimic joint '{name}' (follows '{leader}') must not be listed, and its "
                                      "leader must be", field="joint_names",
                                      fix=f"list '{leader}' instead of '{name}'")
                self.mimic_joints[name] = (leader, mult, off)
        unlisted = sorted(set(joint_ids) - set(self.joint_names) - set(self.mimic_joints))
        if unlisted:
            raise ConfigError(f"movable joints {unlisted} of the URDF are neither listed nor mimic joints",
                              field="joint_names", fix="add them to joint_names")

        # full Pinocchio q = q_act[_src] * _mult + _off
        act_index = {n: i for i, n in enumerate(self.joint_names)}
        self._src = np.zeros(model.nq, dtype=np.int64)
        self._mult = np.ones(model.nq)
        self._off = np.zeros(model.nq)
        self._act_idx_q = np.zeros(self.n_joints, dtype=np.int64)
        for name, j in joint_ids.items():
            iq = model.joints[j].idx_q
            if name in act_index:
                self._src[iq] = act_index[name]
                self._act_idx_q[act_index[name]] = iq
            else:
                leader, mult, off = self.mimic_joints[name]
                self._src[iq], self._mult[iq], self._off[iq] = act_index[leader], mult, off
        # actuated-velocity -> full-velocity map (nq == nv here): dq_full = _vel_map @ dq_act
        self._vel_map = np.zeros((model.nv, self.n_joints))
        self._vel_map[np.arange(model.nq), self._src] = self._mult

        self.lower = np.asarray(model.lowerPositionLimit, dtype=np.float64)[self._act_idx_q].copy()
        self.upper = np.asarray(model.upperPositionLimit, dtype=np.float64)[self._act_idx_q].copy()
        #: (N,) True for continuous joints: limits -inf..inf, never clipped nor wrapped (radians)
        self.continuous = np.array([n in prepared.continuous for n in self.joint_names], dtype=bool)
        self.lower[self.continuous], self.upper[self.continuous] = -np.inf, np.inf
        bad = [n for n, lo, hi in zip(self.joint_names, self.lower, self.upper) if not lo < hi]
        if bad:
            raise ConfigError(f"joints {bad} have no usable position limits in the URDF", field="urdf",
                              fix="give every actuated joint <limit lower=.. upper=..>")

        self._frame_ids = {}
        for i, frame in enumerate(model.frames):
            # prefer link (BODY) frames when a joint and a link share a name
            if frame.name not in self._frame_ids or frame.type == pin.FrameType.BODY:
                self._frame_ids[frame.name] = i
        for field, frame in (("base_frame", config.base_frame), ("ee_frame", config.ee_frame)):
            if frame not in self._frame_ids:
                raise ConfigError(f"frame '{frame}' is not in {config.urdf.name}", field=field,
                                  fix=f"use a link name, e.g. one of {self.link_names()[:8]}...")
        base_id = self._frame_ids[config.base_frame]
        if model.frames[base_id].parentJoint != 0:
            raise ConfigError(f"base frame '{config.base_frame}' moves with the joints", field="base_frame",
                              fix="use the fixed root link of the robot")
        self._ee_id = self._frame_ids[config.ee_frame]
        T_world_base = model.frames[base_id].placement.homogeneous
        self._T_base_world = np.linalg.inv(T_world_base)
        self._base_is_world = bool(np.allclose(self._T_base_world, np.eye(4), atol=0.0))

        if config.gripper is not None:
            gi = self.joint_names.index(config.gripper.joint)
            for key in ("open", "closed"):
                val = getattr(config.gripper, key)
                if not self.lower[gi] - 1e-9 <= val <= self.upper[gi] + 1e-9:
                    raise ConfigError(f"{val} is outside the joint's limits [{self.lower[gi]}, {self.upper[gi]}]",
                                      field=f"gripper.{key}", fix="use a position within the URDF limits")
        if config.home is not None:
            self._home = np.asarray(config.home, dtype=np.float64)
            self.check_positions(self._home, field="home")
        else:
            finite = ~self.continuous
            self._home = np.zeros(self.n_joints)  # continuous joints rest at 0
            self._home[finite] = 0.5 * (self.lower[finite] + self.upper[finite])
        _check_mesh_files(config)  # fail early; the meshes themselves load on first use
        self._meshes: tuple[LinkMesh, ...] | None = None
        self._mesh_frame_ids = np.zeros(0, dtype=np.int64)

    # ---- names ---------------------------------------------------------------------------
    def link_names(self) -> list[str]:
        """URDF link (BODY frame) names in kinematic order."""
        import pinocchio as pin

        return [f.name for f in self._model.frames if f.type == pin.FrameType.BODY]

    @property
    def frame_names(self) -> tuple[str, ...]:
        """Every frame name (links, joints, fixed joints) that :meth:`frame_poses` returns."""
        return tuple(self._frame_ids)

    @property
    def pin_model(self) -> Any:
        """The underlying ``pinocchio.Model`` (full configuration incl. mimic joints); read-only use."""
        return self._model

    @property
    def T_world_base(self) -> np.ndarray:
        """(4,4) pose of the config's base frame in Pinocchio's world (the URDF root); constant."""
        return np.linalg.inv(self._T_base_world)

    def frame_id(self, name: str) -> int:
        """Pinocchio frame index of ``name``; InputError if unknown."""
        try:
            return self._frame_ids[name]
        except KeyError:
            raise InputError(f"unknown frame '{name}'", field="frame",
                             fix=f"use one of {sorted(self._frame_ids)}") from None

    # ---- joint vectors ---------------------------------------------------------------------
    def joint_vector(self, names: Sequence[str], values: Any) -> np.ndarray:
        """Reorder named values (e.g. a JointState) into the model's order.

        values: (K,) or (..., K) with K == len(names). Returns (N,) or (..., N) float64.
        Unknown or missing names raise InputError; mimic joints may be present and are ignored.
        """
        names = [str(n) for n in names]
        vals = np.asarray(values, dtype=np.float64)
        if vals.ndim == 0 or vals.shape[-1] != len(names):
            raise InputError(f"got {len(names)} names but values of shape {vals.shape}", field="values",
                             fix="give one value per name (last axis)")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InputError(f"joint names {dupes} appear more than once", field="joint_names",
                             fix="name each joint once")
        unknown = [n for n in names if n not in self.joint_names and n not in self.mimic_joints]
        if unknown:
            raise InputError(f"unknown joints {unknown} for robot '{self.config.name}'", field="joint_names",
                             fix=f"valid names are {list(self.joint_names)}")
        missing = [n for n in self.joint_names if n not in names]
        if missing:
            raise InputError(f"missing joints {missing} for robot '{self.config.name}'", field="joint_names",
                             fix=f"give values for all of {list(self.joint_names)}")
        order = [names.index(n) for n in self.joint_names]
        return vals[..., order].copy()

    def check_positions(self, q: Any, *, field: str = "positions", tol: float = 1e-6) -> np.ndarray:
        """Validate (N,) or (T,N) joint positions; return a float64 copy clipped into the limits.

        Raises InputError for a wrong shape, NaN/inf or a value more than ``tol`` outside the limits,
        naming the joint and the frame index.
        """
        try:
            arr = np.array(q, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(f"not a numeric array ({exc})", field=field, fix="pass numbers") from exc
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.n_joints:
            raise InputError(f"expected shape (N,) or (T,N) with N={self.n_joints} "
                             f"{list(self.joint_names)}, got {arr.shape}", field=field,
                             fix="give one column per joint, in the robot's joint order")
        arr2 = arr.reshape(-1, self.n_joints)
        where = (lambda t: f" at frame {t}") if arr.ndim == 2 else (lambda t: "")
        finite = np.isfinite(arr2)
        if not finite.all():
            t, j = np.argwhere(~finite)[0]
            raise InputError(f"joint '{self.joint_names[j]}' is {arr2[t, j]}{where(t)}", field=field,
                             fix="remove NaN/inf values")
        out_of = (arr2 < self.lower - tol) | (arr2 > self.upper + tol)
        if out_of.any():
            t, j = np.argwhere(out_of)[0]
            raise InputError(f"joint '{self.joint_names[j]}' = {arr2[t, j]:.6g}{where(t)} is outside its limits "
                             f"[{self.lower[j]:.6g}, {self.upper[j]:.6g}] ({int(out_of.sum())} value(s) out of "
                             "limits in total)", field=field, fix="keep positions within the URDF joint limits")
        return np.clip(arr, self.lower, self.upper)

    def home(self) -> np.ndarray:
        """(N,) a valid rest configuration (config ``home``, else the middle of the limits)."""
        return self._home.copy()

    def full_configuration(self, q: np.ndarray) -> np.ndarray:
        """Pinocchio's full q (mimic joints expanded) from the actuated q (N,) or (T,N)."""
        q = np.asarray(q, dtype=np.float64)
        return q[..., self._src] * self._mult + self._off

    # ---- kinematics ------------------------------------------------------------------------
    def _forward(self, q: np.ndarray) -> None:
        import pinocchio as pin

        pin.forwardKinematics(self._model, self._data, self.full_configuration(q))

    def frame_poses(self, q: Any) -> dict[str, np.ndarray]:
        """T_base_frame (4,4) of every frame (links, joints) at q (N,)."""
        import pinocchio as pin

        q = self.check_positions(q, field="q")
        if q.ndim != 1:
            raise InputError(f"expected one configuration (N,), got {q.shape}", field="q",
                             fix="call frame_poses once per configuration")
        self._forward(q)
        pin.updateFramePlacements(self._model, self._data)
        oMf = self._data.oMf
        return {name: self._T_base_world @ oMf[i].homogeneous for name, i in self._frame_ids.items()}

    def frame_pose(self, q: Any, frame: str) -> np.ndarray:
        """T_base_frame (4,4) of one frame at q (N,)."""
        import pinocchio as pin

        fid = self.frame_id(frame)
        q = self.check_positions(q, field="q")
        if q.ndim != 1:
            raise InputError(f"expected one configuration (N,), got {q.shape}", field="q",
                             fix="call once per configuration")
        self._forward(q)
        return self._T_base_world @ pin.updateFramePlacement(self._model, self._data, fid).homogeneous

    def ee_pose(self, q: Any) -> np.ndarray:
        """T_base_ee (4,4) at q (N,)."""
        return self.frame_pose(q, self.config.ee_frame)

    # ---- meshes ----------------------------------------------------------------------------
    @property
    def meshes(self) -> tuple[LinkMesh, ...]:
        """Rendered link meshes (loaded on first access, cached per process)."""
        if self._meshes is None:
            self._set_meshes(_cached_factory_meshes(self))
        assert self._meshes is not None
        return self._meshes

    def _set_meshes(self, meshes: Sequence[LinkMesh]) -> None:
        meshes = tuple(meshes)
        for i, m in enumerate(meshes):
            if not isinstance(m, LinkMesh):
                raise InputError(f"meshes[{i}] is a {type(m).__name__}, not a LinkMesh", field="meshes",
                                 fix="pass kinema4d_core.mesh.LinkMesh objects")
            if m.link_index != i:
                raise InputError(f"meshes[{i}] ({m.link}) has link_index {m.link_index}", field="meshes",
                                 fix="number meshes 0..M-1 in order")
            if m.link not in self._frame_ids:
                raise InputError(f"meshes[{i}] is attached to '{m.link}', which is not a frame of "
                                 f"{self.config.name}", field="meshes", fix=f"use one of {self.link_names()}")
        self._meshes = meshes
        self._mesh_frame_ids = np.array([self._frame_ids[m.link] for m in meshes], dtype=np.int64)

    def with_meshes(self, meshes: Sequence[LinkMesh]) -> "RobotModel":
        """A model with the same kinematics but other meshes (e.g. a digital twin)."""
        other = copy.copy(self)
        other._data = self._model.createData()
        other._set_meshes(meshes)
        return other

    def mesh_poses(self, q: Any) -> np.ndarray:
        """(M,4,4) T_base_mesh for ``self.meshes`` at q (N,)."""
        q = self.check_positions(q, field="q")
        if q.ndim != 1:
            raise InputError(f"expected one configuration (N,), got {q.shape}", field="q",
                             fix="use mesh_poses_batch for (T,N)")
        self.meshes  # noqa: B018 - make sure meshes (and their frame ids) are loaded
        return self._mesh_poses_unchecked(q)

    def _mesh_poses_unchecked(self, q: np.ndarray) -> np.ndarray:
        import pinocchio as pin

        self._forward(q)
        model, data = self._model, self._data
        poses = np.empty((len(self._mesh_frame_ids), 4, 4))
        for k, fid in enumerate(self._mesh_frame_ids):
            poses[k] = pin.updateFramePlacement(model, data, int(fid)).homogeneous
        return poses if self._base_is_world else self._T_base_world @ poses

    def mesh_poses_batch(self, Q: Any) -> np.ndarray:
        """(T,M,4,4) T_base_mesh for each configuration of Q (T,N)."""
        Q = self.check_positions(Q, field="positions")
        if Q.ndim != 2:
            raise InputError(f"expected (T,N) configurations, got {Q.shape}", field="positions",
                             fix="stack configurations along axis 0")
        self.meshes  # noqa: B018
        return np.stack([self._mesh_poses_unchecked(q) for q in Q]) if len(Q) else \
            np.zeros((0, len(self._mesh_frame_ids), 4, 4))

    # ---- hot paths of the IK (no validation) -------------------------------------------------
    def frame_placement_world(self, q: np.ndarray, frame_id: int) -> np.ndarray:
        """T_world_frame (4,4) at actuated q (N,) — Pinocchio world (URDF root), not the base frame."""
        import pinocchio as pin

        pin.forwardKinematics(self._model, self._data, q[self._src] * self._mult + self._off)
        return pin.updateFramePlacement(self._model, self._data, frame_id).homogeneous

    def frame_jacobian_local(self, q: np.ndarray, frame_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(T_world_frame (4,4), J (6,N)): the frame's LOCAL Jacobian w.r.t. the actuated joints.

        J maps dq (N,) to the frame's spatial velocity [v, w] expressed in the frame itself.
        No validation (hot path of the IK).
        """
        import pinocchio as pin

        full = q[self._src] * self._mult + self._off
        # note: computeFrameJacobian(q) does not refresh data.oMi / data.oMf, so run FK explicitly
        pin.forwardKinematics(self._model, self._data, full)
        T = pin.updateFramePlacement(self._model, self._data, frame_id).homogeneous
        J = pin.computeFrameJacobian(self._model, self._data, full, frame_id, pin.ReferenceFrame.LOCAL)
        return T, J @ self._vel_map

    def frame_jacobian_local_only(self, q: np.ndarray, frame_id: int) -> np.ndarray:
        """J (6,N) as in :meth:`frame_jacobian_local`, without the placement (faster)."""
        import pinocchio as pin

        full = q[self._src] * self._mult + self._off
        return pin.computeFrameJacobian(self._model, self._data, full, frame_id, pin.ReferenceFrame.LOCAL) \
            @ self._vel_map


# --------------------------------------------------------------------------------------------
# factory meshes
# --------------------------------------------------------------------------------------------

def _check_mesh_files(config: RobotConfig) -> list[Path]:
    """Resolved mesh files of the config's mesh kind; ConfigError naming the URDF, the mesh URI,
    the paths tried and the fix when one is missing."""
    kind, paths = config.mesh_kind, []
    for link, uri, found in _urdf_mesh_refs(config, kind):
        if found is None:
            tried = resource_candidates(uri, config.package_dirs, config.urdf.parent)
            if uri.startswith("package://"):
                pkg = uri[len("package://"):].split("/", 1)[0]
                fix = (f"add the folder that contains the package folder '{pkg}' to package_dirs in "
                       f"{config.source.name} (or to $ROS_PACKAGE_PATH), or install the package")
            else:
                fix = ("put the mesh file there (relative paths are relative to the URDF's folder) or fix "
                       "the filename in the URDF")
            raise ConfigError(f"mesh '{uri}' of link '{link}' in {config.urdf} was not found; tried "
                              f"{[str(t) for t in tried] or 'nothing (no package_dirs)'}",
                              field=f"{link}.{kind}.mesh", fix=fix)
        paths.append(found)
    return paths


def _factory_meshes(robot: RobotModel) -> tuple[LinkMesh, ...]:
    """Load the config's visual/collision meshes, one LinkMesh per rendered link, in link frames."""
    import pinocchio as pin

    config, model = robot.config, robot.pin_model
    kind = config.mesh_kind
    _check_mesh_files(config)
    gtype = pin.GeometryType.VISUAL if kind == "visual" else pin.GeometryType.COLLISION
    try:
        geom_model = pin.buildGeomFromUrdfString(model, prepare_urdf(config).xml, gtype,
                                                 package_dirs=[str(p) for p in config.package_dirs])
    except Exception as exc:
        raise ConfigError(f"Pinocchio could not load the {kind} geometry of {config.urdf}: {exc}",
                          field="urdf", fix="check the mesh paths and package_dirs") from exc

    pieces: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for go in geom_model.geometryObjects:
        frame = model.frames[go.parentFrame]
        if go.parentJoint != frame.parentJoint:
            raise ConfigError(f"geometry '{go.name}' and its frame '{frame.name}' hang on different joints",
                              field="urdf", fix="report this URDF")
        # go.placement and frame.placement are both relative to the parent joint
        T_link_geom = np.linalg.inv(frame.placement.homogeneous) @ go.placement.homogeneous
        fallback = np.asarray(np.clip(np.asarray(go.meshColor[:3]) * 255.0 + 0.5, 0, 255), dtype=np.uint8)
        if go.meshPath and Path(go.meshPath).is_file():
            v, f, c = load_mesh_file(go.meshPath)
            v = v * np.asarray(go.meshScale, dtype=np.float64)
            if c is None:
                log.debug("mesh %s of link %s has no material colours; using the URDF/default colour %s",
                          go.meshPath, frame.name, fallback.tolist())
                c = np.tile(fallback, (len(f), 1))
        else:
            prim = _primitive_mesh(go.geometry)
            if prim is None:
                raise ConfigError(f"geometry '{go.name}' of link '{frame.name}' is a "
                                  f"{type(go.geometry).__name__}, which cannot be rendered", field=f"{frame.name}.{kind}",
                                  fix="use a mesh, box, sphere, cylinder or capsule")
            v, f = prim
            c = np.tile(fallback, (len(f), 1))
        v = v @ T_link_geom[:3, :3].T + T_link_geom[:3, 3]
        pieces.setdefault(frame.name, []).append((v, f, c))

    links = [name for name in robot.link_names() if name in pieces]
    if config.render_links is not None:
        missing = [n for n in config.render_links if n not in pieces]
        if missing:
            raise ConfigError(f"links {missing} have no {kind} geometry", field="render_links",
                              fix=f"links with {kind} geometry: {links}")
        links = [n for n in links if n in config.render_links]
    meshes = []
    for i, name in enumerate(links):
        vs, fs, cs, offset = [], [], [], 0
        for v, f, c in pieces[name]:
            vs.append(v)
            fs.append(f + offset)
            cs.append(c)
            offset += len(v)
        meshes.append(LinkMesh(link=name, link_index=i, vertices=np.concatenate(vs), faces=np.concatenate(fs),
                               face_colors=np.concatenate(cs)))
    return tuple(meshes)


_MESH_CACHE_VERSION = 1


def mesh_cache_dir() -> Path | None:
    """Disk cache for assembled link meshes: ``$KINEMA4D_CACHE_DIR`` (``off`` disables) or
    ``~/.cache/kinema4d``, sub-folder ``meshes``."""
    from kinema4d_core.io import cache_dir

    return cache_dir("meshes")


def _mesh_cache_key(config: RobotConfig) -> str:
    import hashlib
    import json

    files = [config.urdf, *_check_mesh_files(config)]
    blob = json.dumps([_MESH_CACHE_VERSION, config.mesh_kind, config.render_links,
                       [(str(p.resolve()), p.stat().st_mtime_ns, p.stat().st_size) for p in files]])
    return hashlib.sha1(blob.encode()).hexdigest()[:20]


def _cached_factory_meshes(robot: RobotModel) -> tuple[LinkMesh, ...]:
    """:func:`_factory_meshes` through an npz cache keyed by the URDF and mesh files' mtimes.

    Loading the Panda's .dae meshes takes ~1.5 s; a cache hit ~0.1 s. Cache problems never fail
    the load (they are logged at debug level).
    """
    from kinema4d_core.io import save_npz

    folder = mesh_cache_dir()
    if folder is None:
        return _factory_meshes(robot)
    path = folder / f"{robot.config.name}-{_mesh_cache_key(robot.config)}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                links = [str(x) for x in z["links"]]
                return tuple(LinkMesh(link=name, link_index=i, vertices=z[f"v{i}"], faces=z[f"f{i}"],
                                      face_colors=z[f"c{i}"]) for i, name in enumerate(links))
        except Exception as exc:  # corrupt/old cache: rebuild
            log.debug("ignoring mesh cache %s: %s", path, exc)
    meshes = _factory_meshes(robot)
    arrays: dict[str, np.ndarray] = {"links": np.array([m.link for m in meshes])}
    for i, m in enumerate(meshes):
        arrays.update({f"v{i}": m.vertices, f"f{i}": m.faces, f"c{i}": m.face_colors})
    try:
        save_npz(path, arrays, compressed=False)
    except OSError as exc:
        log.debug("could not write mesh cache %s: %s", path, exc)
    return meshes


@functools.lru_cache(maxsize=16)
def _load_robot_cached(source: str, mtime_ns: int) -> RobotModel:
    return RobotModel(load_robot_config(source))


def load_robot(name_or_path: str | os.PathLike) -> RobotModel:
    """Robot model for a config name or yaml path, cached per process (by yaml path and mtime).

    The cached instance is shared: do not mutate it; use ``with_meshes`` for other meshes. Like every
    RobotModel it is not thread-safe (one Pinocchio ``Data``): a thread that runs FK/IK while another
    may too should use its own copy: ``robot.with_meshes(robot.meshes)`` (same kinematics and meshes,
    its own ``Data``).
    """
    config = load_robot_config(name_or_path)
    return _load_robot_cached(str(config.source), config.source.stat().st_mtime_ns)
