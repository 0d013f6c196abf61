"""Scripted tasks: end-effector keyframes -> joint targets through the core IK.

The scripts are open loop: they plan from where the cube is *believed* to be
(``SimConfig.cube_nominal_xy``), while the real cube is displaced by seeded noise. Whether the
cube ends up where it should is decided by physics afterwards (``judge``), so some seeds succeed
and some fail.

Positions are in the robot base frame (metres, z = 0 on the table top); the end effector is the
robot config's ``ee_frame`` (the Panda's ``panda_hand_tcp``, between the fingertips).

Policies (``POLICIES``) are scripts of different quality, for evaluating how well a world model
ranks policies: ``scripted`` plans from the nominal cube position (the default, unchanged);
``aim-2cm``, ``aim-4cm`` and ``aim-8cm`` plan from a believed cube position that is off the
nominal one by 2, 4 or 8 cm in a direction drawn from the episode seed (``believed_cube_xy``;
the same direction for every aim policy of a seed, drawn from its own random stream so the
real cube's seeded noise is unchanged). The larger the aim error, the worse the policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kinema4d_core.errors import InputError
from kinema4d_core.simworld.scene import READY_Q, SimConfig

TASKS = ("push", "pick_place")

# (fraction of the episode, tcp xyz, finger opening per finger in metres)
Keyframe = tuple[float, tuple[float, float, float], float]

LIFT_THRESHOLD = 0.05  # m the cube's centre must rise above its rest height for "lifted"

# policy name -> aim error (m) of the cube position the script plans from
POLICIES: dict[str, float] = {"scripted": 0.0, "aim-2cm": 0.02, "aim-4cm": 0.04, "aim-8cm": 0.08}
DEFAULT_POLICY = "scripted"
_AIM_STREAM = 0x41494D  # second entropy word of the aim direction's generator: independent of the cube noise


def check_policy(policy: str) -> str:
    """``policy`` if it is one of ``POLICIES``; InputError naming the known ones otherwise."""
    if not isinstance(policy, str) or policy not in POLICIES:
        raise InputError(f"unknown policy {policy!r}", field="policy", fix=f"use one of {list(POLICIES)}")
    return policy


def believed_cube_xy(policy: str, cfg: SimConfig, seed: int) -> tuple[float, float]:
    """Where ``policy`` believes the cube is for episode ``seed`` (base frame, metres): the nominal
    position for ``scripted``, else the nominal position moved by the policy's aim error in the
    direction angle ~ uniform[0, 2 pi) drawn from ``default_rng((seed, _AIM_STREAM))``."""
    error = POLICIES[check_policy(policy)]
    cx, cy = cfg.cube_nominal_xy
    if error == 0.0:
        return (cx, cy)
    angle = np.random.default_rng((int(seed), _AIM_STREAM)).uniform(0.0, 2 * np.pi)
    return (float(cx + error * np.cos(angle)), float(cy + error * np.sin(angle)))


@dataclass(frozen=True)
class TaskPlan:
    task: str
    ee_poses: np.ndarray   # (T,4,4) T_base_ee
    gripper: np.ndarray    # (T,) finger position, metres
    q: np.ndarray          # (T,N) joint targets from the IK
    policy: str = DEFAULT_POLICY
    believed_cube_xy: tuple[float, float] | None = None   # where the plan thinks the cube is


def keyframes(task: str, cfg: SimConfig, ee_start: np.ndarray,
              cube_xy: tuple[float, float] | None = None) -> list[Keyframe]:
    """The task's keyframes for a cube believed at ``cube_xy`` (default ``cfg.cube_nominal_xy``)."""
    cx, cy = cfg.cube_nominal_xy if cube_xy is None else cube_xy
    tx, ty = cfg.target_xy
    half = cfg.cube_size / 2
    start = tuple(float(v) for v in ee_start[:3, 3])
    if task == "push":
        behind = cy - np.sign(ty - cy) * (half + 0.05)
        # stop so that the cube's centre lands on the target centre (finger pad ~1 cm thick)
        stop = ty - np.sign(ty - cy) * (half + 0.01)
        return [(0.0, start, 0.04), (0.18, (cx, behind, 0.12), 0.0), (0.32, (cx, behind, 0.025), 0.0),
                (0.80, (cx, stop, 0.025), 0.0), (1.0, (cx, stop, 0.14), 0.0)]
    if task == "pick_place":
        return [(0.0, start, 0.04), (0.20, (cx, cy, 0.12), 0.04), (0.32, (cx, cy, 0.018), 0.04),
                (0.42, (cx, cy, 0.018), 0.0), (0.56, (cx, cy, 0.15), 0.0), (0.74, (tx, ty, 0.15), 0.0),
                (0.84, (tx, ty, 0.035), 0.0), (0.90, (tx, ty, 0.035), 0.04), (1.0, (tx, ty, 0.14), 0.04)]
    raise InputError(f"unknown task {task!r}", field="task", fix=f"use one of {list(TASKS)}")


def interpolate(keys: list[Keyframe], n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(T,3) positions and (T,) finger openings, smooth-stepped between keyframes."""
    fr = np.array([k[0] for k in keys])
    pos = np.array([k[1] for k in keys], dtype=float)
    grip = np.array([k[2] for k in keys], dtype=float)
    s = np.linspace(0.0, 1.0, n_frames)
    seg = np.clip(np.searchsorted(fr, s, side="right") - 1, 0, len(fr) - 2)
    u = (s - fr[seg]) / (fr[seg + 1] - fr[seg])
    u = u * u * (3 - 2 * u)                                  # ease in/out within each segment
    p = pos[seg] + (pos[seg + 1] - pos[seg]) * u[:, None]
    g = grip[seg] + (grip[seg + 1] - grip[seg]) * u
    return p, g


def plan(task: str, cfg: SimConfig, robot, n_frames: int, policy: str = DEFAULT_POLICY, seed: int = 0) -> TaskPlan:
    """Joint targets (n_frames, N) for ``task`` by ``policy`` (its believed cube position for
    episode ``seed``, see ``believed_cube_xy``) via kinema4d_core.trajectory.from_ee_poses."""
    from kinema4d_core.trajectory import from_ee_poses

    if n_frames < 2:
        raise InputError(f"n_frames={n_frames} is too short", field="n_frames", fix="use at least 2 frames")
    cube_xy = believed_cube_xy(policy, cfg, seed)
    q0 = np.asarray(READY_Q, dtype=float)
    ee0 = robot.ee_pose(q0)
    p, g = interpolate(keyframes(task, cfg, ee0, cube_xy), n_frames)
    poses = np.repeat(ee0[None], n_frames, axis=0)
    poses[:, :3, 3] = p
    traj = from_ee_poses(robot, poses, gripper=g, q_seed=q0)
    return TaskPlan(task, poses, g, np.asarray(traj.positions, dtype=float), policy, cube_xy)


def judge(task: str, cfg: SimConfig, cube_xyz: np.ndarray) -> dict:
    """Success from the cube trajectory (T,3) in the base frame, plus the figures behind it."""
    start, end = cube_xyz[0], cube_xyz[-1]
    offset = end[:2] - np.asarray(cfg.target_xy)
    in_target = bool(np.all(np.abs(offset) <= cfg.target_half_size) and end[2] < cfg.cube_size)
    lift = float(cube_xyz[:, 2].max() - start[2])
    success = in_target and (lift > LIFT_THRESHOLD if task == "pick_place" else True)
    return {"success": bool(success), "in_target": in_target, "max_lift_m": lift,
            "cube_displacement_m": float(np.linalg.norm(end[:2] - start[:2])),
            "distance_to_target_m": float(np.linalg.norm(offset))}
