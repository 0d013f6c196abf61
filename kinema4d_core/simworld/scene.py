"""The simulated lab's configuration and its MuJoCo model: Panda on a table, a 5 cm cube, a
target region and a fixed oblique top-down camera.

Frames: MuJoCo's world has z up with the floor at z = 0. The robot base frame (``panda_link0``)
sits on the table top at ``T_world_base`` (translation only). Every pose this package reports is
in the base frame; the camera pose is the ROS optical frame (x right, y down, z forward).
"""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

from kinema4d_core.camera import look_at
from kinema4d_core.errors import ConfigError
from kinema4d_core.simworld.meshes import load_material_meshes
from kinema4d_core.simworld.urdf import Urdf, read_urdf

# Panda "ready" pose (rad) and open fingers (m): the start of every episode.
READY_Q = (0.0, -0.785398, 0.0, -2.356194, 0.0, 1.570796, 0.785398, 0.04)
# Position-servo stiffness per actuated joint (N m/rad, last: N/m for the finger).
SERVO_KP = (4500.0, 4500.0, 3500.0, 3500.0, 2000.0, 2000.0, 2000.0, 1000.0)
ROBOT_PREFIX = "panda_"


def default_panda_urdf() -> tuple[Path, tuple[Path, ...]]:
    """The Panda URDF of example-robot-data and the package dir its package:// paths need."""
    try:
        from kinema4d_core.robot import load_robot_config  # the project's robot registry

        cfg = load_robot_config("panda")
        return Path(cfg.urdf), tuple(Path(p) for p in cfg.package_dirs)
    except (ImportError, ConfigError):   # registry not available: the pip-installed package
        share = Path(sysconfig.get_paths()["purelib"]) / "cmeel.prefix" / "share"
        return share / "example-robot-data/robots/panda_description/urdf/panda.urdf", (share,)


@dataclass(frozen=True)
class SimConfig:
    """Everything that defines the simulated lab. Lengths in metres, angles in degrees/radians as named.

    camera_eye / camera_target: camera position and aim point in the robot base frame.
    cube_nominal_xy: where the scripted tasks believe the cube is (base frame, on the table).
    cube_noise: the real cube position is nominal + uniform(-noise, +noise) per axis, from the seed.
    target_xy / target_half_size: square target region on the table (base frame).
    """

    width: int = 720
    height: int = 480
    rate_hz: float = 12.0
    timestep: float = 0.002
    fovy_deg: float = 45.0
    # framed on the workspace (cube, target, gripper) rather than the whole table: at the mini
    # model's 64 x 96 the 5 cm cube spans ~6 px instead of ~3 (kinema4d-mini must see it move)
    camera_eye: tuple[float, float, float] = (1.00, 0.45, 0.75)
    camera_target: tuple[float, float, float] = (0.40, 0.0, 0.20)
    camera_name: str = "sim_camera"
    optical_frame: str = "sim_camera_optical_frame"
    base_frame: str = "panda_link0"
    table_height: float = 0.75
    cube_size: float = 0.05
    cube_mass: float = 0.1
    cube_nominal_xy: tuple[float, float] = (0.5, -0.08)
    cube_noise: float = 0.035
    target_xy: tuple[float, float] = (0.5, 0.12)
    target_half_size: float = 0.045
    urdf: Path | None = None
    package_dirs: tuple[Path, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        checks = [
            ("width", 16 <= self.width <= 4096, "an integer in [16, 4096]"),
            ("height", 16 <= self.height <= 4096, "an integer in [16, 4096]"),
            ("rate_hz", 0.5 <= self.rate_hz <= 500.0, "a frame rate in [0.5, 500] Hz"),
            ("timestep", 1e-4 <= self.timestep <= 0.01, "a physics step in [0.0001, 0.01] s"),
            ("fovy_deg", 5.0 <= self.fovy_deg <= 150.0, "a vertical field of view in [5, 150] degrees"),
            ("cube_size", 0.01 <= self.cube_size <= 0.2, "an edge length in [0.01, 0.2] m"),
            ("cube_mass", 0.005 <= self.cube_mass <= 2.0, "a mass in [0.005, 2] kg"),
            ("cube_noise", 0.0 <= self.cube_noise <= 0.2, "a non-negative noise amplitude <= 0.2 m"),
            ("target_half_size", 0.005 <= self.target_half_size <= 0.3, "a half size in [0.005, 0.3] m"),
        ]
        for name, ok, fix in checks:
            if not ok:
                raise ConfigError(f"invalid value {getattr(self, name)!r}", field=f"SimConfig.{name}",
                                  fix=f"use {fix}")
        if 1.0 / self.rate_hz < self.timestep:
            raise ConfigError("frame period shorter than one physics step", field="SimConfig.rate_hz",
                              fix="lower rate_hz or the timestep")

    @property
    def T_world_base(self) -> np.ndarray:
        T = np.eye(4)
        T[2, 3] = self.table_height
        return T

    @property
    def T_base_camera(self) -> np.ndarray:
        return look_at(self.camera_eye, self.camera_target)

    @property
    def steps_per_frame(self) -> int:
        return max(1, int(round(1.0 / (self.rate_hz * self.timestep))))


def _wxyz(R: np.ndarray) -> list[float]:
    x, y, z, w = Rotation.from_matrix(R).as_quat()
    return [w, x, y, z]


def _add_robot(spec: mujoco.MjSpec, urdf: Urdf, T_world_base: np.ndarray) -> list[str]:
    """Add the URDF tree under the world body; return actuated joint names (mimic joints excluded)."""
    actuated: list[str] = []
    mesh_ids = iter(range(10_000))

    def add_link(parent_body, link_name: str, T_parent_link: np.ndarray, joint) -> None:
        link = urdf.links[link_name]
        body = parent_body.add_body(name=link_name, pos=T_parent_link[:3, 3], quat=_wxyz(T_parent_link[:3, :3]))
        body.gravcomp = 1.0
        if link.mass > 0:
            body.mass = link.mass
            body.ipos = link.com[:3, 3]
            body.iquat = _wxyz(link.com[:3, :3])
            body.fullinertia = list(link.inertia)
            body.explicitinertial = True
        if joint is not None and joint.type in ("revolute", "prismatic"):
            j = body.add_joint(name=joint.name, axis=joint.axis,
                               type=mujoco.mjtJoint.mjJNT_HINGE if joint.type == "revolute"
                               else mujoco.mjtJoint.mjJNT_SLIDE)
            j.range = [joint.lower, joint.upper]
            j.limited = mujoco.mjtLimited.mjLIMITED_TRUE
            j.armature = 0.1 if joint.type == "revolute" else 0.01
            j.damping = [max(joint.damping, 1.0 if joint.type == "revolute" else 2.0), 0.0, 0.0]
            if joint.mimic is None:
                actuated.append(joint.name)
            else:
                eq = spec.add_equality(type=mujoco.mjtEq.mjEQ_JOINT, name1=joint.name, name2=joint.mimic)
                # q_joint = offset + multiplier * q_mimic (polynomial coefficients, qpos0 = 0)
                eq.data[:5] = [joint.mimic_offset, joint.mimic_multiplier, 0.0, 0.0, 0.0]
        for vis in link.visuals:
            for part in load_material_meshes(vis.mesh):
                name = f"{link_name}_visual_{next(mesh_ids)}"
                spec.add_mesh(name=name, uservert=part.vertices.ravel().tolist(),
                              userface=part.faces.ravel().tolist())
                body.add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_MESH, meshname=name,
                              pos=vis.origin[:3, 3], quat=_wxyz(vis.origin[:3, :3]), rgba=list(part.rgba),
                              contype=0, conaffinity=0, group=1, mass=0.0, density=0.0)
        for k, col in enumerate(link.collisions):
            name = f"{link_name}_collision_{k}"
            kw = dict(name=name, pos=col.origin[:3, 3], quat=_wxyz(col.origin[:3, :3]), group=3,
                      rgba=[0.5, 0.5, 0.5, 1.0], density=0.0, mass=0.0, friction=[1.0, 0.005, 0.0001])
            if col.box is not None:
                body.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=[s / 2 for s in col.box], **kw)
            elif col.mesh is not None and col.mesh.suffix.lower() in (".stl", ".obj", ".msh"):
                spec.add_mesh(name=name, file=str(col.mesh))
                body.add_geom(type=mujoco.mjtGeom.mjGEOM_MESH, meshname=name, **kw)
        for child in urdf.children_of(link_name):
            add_link(body, child.child, child.origin, child)

    add_link(spec.worldbody, urdf.root, T_world_base, None)
    return actuated


def build_spec(cfg: SimConfig) -> tuple[mujoco.MjSpec, list[str]]:
    """MjSpec of the whole lab and the robot's actuated joint names in actuator order."""
    urdf_path, package_dirs = (cfg.urdf, cfg.package_dirs) if cfg.urdf else default_panda_urdf()
    urdf = read_urdf(urdf_path, tuple(package_dirs))

    spec = mujoco.MjSpec()
    spec.modelname = "kinema4d_sim_lab"
    spec.compiler.degree = False          # joint ranges in radians (camera fovy stays in degrees)
    spec.option.timestep = cfg.timestep
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.noslip_iterations = 3
    spec.visual.global_.offwidth = cfg.width      # offscreen buffer = image: no wasted pixels
    spec.visual.global_.offheight = cfg.height
    spec.visual.quality.offsamples = 0           # no MSAA: exact depth/segmentation, ~2x faster on llvmpipe
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.45, 0.45, 0.45]
    spec.worldbody.add_light(name="key", type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
                             dir=[-0.3, 0.2, -1.0], diffuse=[0.5, 0.5, 0.5], castshadow=False)

    world = spec.worldbody
    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.1], rgba=[0.35, 0.37, 0.4, 1])
    h = cfg.table_height
    world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.6, 0.55, h / 2],
                   pos=[0.35, 0.0, h / 2], rgba=[0.62, 0.5, 0.38, 1], friction=[0.6, 0.005, 0.0001])
    tx, ty = cfg.target_xy
    world.add_geom(name="target_region", type=mujoco.mjtGeom.mjGEOM_BOX,
                   size=[cfg.target_half_size, cfg.target_half_size, 0.0005], pos=[tx, ty, h + 0.0005],
                   rgba=[0.2, 0.75, 0.3, 1], contype=0, conaffinity=0)

    cube = world.add_body(name="cube", pos=[*cfg.cube_nominal_xy, h + cfg.cube_size / 2])
    cube.add_freejoint(name="cube_free")
    cube.add_geom(name="cube", type=mujoco.mjtGeom.mjGEOM_BOX, size=[cfg.cube_size / 2] * 3,
                  mass=cfg.cube_mass, rgba=[0.85, 0.15, 0.12, 1], friction=[1.0, 0.005, 0.0001],
                  condim=4)

    T_world_cam = cfg.T_world_base @ cfg.T_base_camera
    R_mj = T_world_cam[:3, :3] @ np.diag([1.0, -1.0, -1.0])   # MuJoCo camera: y up, looks along -z
    world.add_camera(name=cfg.camera_name, pos=T_world_cam[:3, 3], quat=_wxyz(R_mj), fovy=cfg.fovy_deg)

    actuated = _add_robot(spec, urdf, cfg.T_world_base)
    for name, kp in zip(actuated, SERVO_KP):
        j = spec.joint(name)
        act = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=kp, dampratio=1.0)
        act.ctrlrange = list(j.range)
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.forcerange = [-87.0, 87.0] if "finger" not in name else [-40.0, 40.0]
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
    return spec, actuated


def build_model(cfg: SimConfig) -> tuple[mujoco.MjModel, list[str]]:
    spec, actuated = build_spec(cfg)
    return spec.compile(), actuated
