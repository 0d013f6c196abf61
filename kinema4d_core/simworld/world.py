"""SimWorld: step the MuJoCo lab with joint position targets and render camera frames.

Joint vectors follow ``SimWorld.joint_names`` (the Panda's 7 arm joints + ``panda_finger_joint1``,
radians / metres). Poses are in the robot base frame; images come from the fixed sim camera.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")
import mujoco  # noqa: E402  (MUJOCO_GL must be set before the import picks a GL backend)

from kinema4d_core.errors import InputError  # noqa: E402
from kinema4d_core.simworld.scene import READY_Q, ROBOT_PREFIX, SimConfig, build_model  # noqa: E402

if TYPE_CHECKING:
    from kinema4d_core.simworld.episode import Episode


@dataclass(frozen=True)
class SimFrame:
    """One camera frame and the matching state.

    rgb (H,W,3) uint8; depth (H,W) float32 planar z in metres (0 where nothing is hit);
    robot_mask (H,W) bool (robot visual geoms); object_poses (K,7) [x y z qx qy qz qw] in the
    base frame (K = 1: the cube); joint_positions (N,); stamp: sim time in seconds.
    """

    rgb: np.ndarray
    depth: np.ndarray
    robot_mask: np.ndarray
    object_poses: np.ndarray
    joint_positions: np.ndarray
    stamp: float


class SimWorld:
    """The simulated lab. Not thread-safe: use one SimWorld per thread (it owns a GL context)."""

    def __init__(self, config: SimConfig | None = None):
        self.config = config or SimConfig()
        self.model, actuated = build_model(self.config)
        self.data = mujoco.MjData(self.model)
        self.joint_names: tuple[str, ...] = tuple(actuated)
        self._qpos_adr = np.array([self.model.joint(n).qposadr[0] for n in actuated])
        self._dof_adr = np.array([self.model.joint(n).dofadr[0] for n in actuated])
        self._mimic = [(self.model.joint(f"{ROBOT_PREFIX}finger_joint2").qposadr[0],
                        self.model.joint(f"{ROBOT_PREFIX}finger_joint1").qposadr[0])]
        self._cube_body = self.model.body("cube").id
        self._cube_qpos = self.model.joint("cube_free").qposadr[0]
        robot_bodies = {i for i in range(self.model.nbody) if self.model.body(i).name.startswith(ROBOT_PREFIX)}
        self.robot_geom_ids = np.array([g for g in range(self.model.ngeom)
                                        if self.model.geom_bodyid[g] in robot_bodies
                                        and self.model.geom_group[g] == 1], dtype=np.int32)
        self.lower = self.model.jnt_range[[self.model.joint(n).id for n in actuated], 0].copy()
        self.upper = self.model.jnt_range[[self.model.joint(n).id for n in actuated], 1].copy()
        self._renderer: mujoco.Renderer | None = None
        self._ctrl = np.zeros(self.model.nu)
        self.reset(0)

    # ---- state -------------------------------------------------------------------------------
    def reset(self, seed: int | None = 0, cube_xy: tuple[float, float] | None = None) -> np.ndarray:
        """Robot at the ready pose, cube at nominal + seeded noise (or at ``cube_xy``); returns cube xy (base)."""
        cfg = self.config
        mujoco.mj_resetData(self.model, self.data)
        q0 = np.array(READY_Q[: len(self.joint_names)])
        self.data.qpos[self._qpos_adr] = q0
        for dst, src in self._mimic:
            self.data.qpos[dst] = self.data.qpos[src]
        if cube_xy is None:
            rng = np.random.default_rng(seed)
            cube_xy = np.asarray(cfg.cube_nominal_xy) + rng.uniform(-cfg.cube_noise, cfg.cube_noise, 2)
        cube_xy = np.asarray(cube_xy, dtype=float)
        a = self._cube_qpos
        self.data.qpos[a:a + 3] = [cube_xy[0], cube_xy[1], cfg.table_height + cfg.cube_size / 2]
        self.data.qpos[a + 3:a + 7] = [1.0, 0.0, 0.0, 0.0]
        self._ctrl = q0.copy()
        self.data.ctrl[:] = q0
        mujoco.mj_forward(self.model, self.data)
        for _ in range(25):   # let contacts settle (50 ms) before time starts
            mujoco.mj_step(self.model, self.data)
        self.data.time = 0.0
        return cube_xy

    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._qpos_adr].copy()

    def object_poses(self) -> np.ndarray:
        """(1,7) cube pose [x y z qx qy qz qw] in the base frame."""
        a = self._cube_qpos
        pos = self.data.qpos[a:a + 3] - self.config.T_world_base[:3, 3]
        w, x, y, z = self.data.qpos[a + 3:a + 7]
        return np.array([[*pos, x, y, z, w]])

    def step_to(self, q_target: np.ndarray) -> None:
        """Advance one frame period (1 / rate_hz) with position targets ramped linearly to ``q_target``."""
        q_target = np.asarray(q_target, dtype=float)
        if q_target.shape != (len(self.joint_names),) or not np.all(np.isfinite(q_target)):
            raise InputError(f"expected {len(self.joint_names)} finite joint targets, got shape {q_target.shape}",
                             field="q_target", fix=f"pass values for {list(self.joint_names)}")
        q_target = np.clip(q_target, self.lower, self.upper)
        start = self._ctrl
        n = self.config.steps_per_frame
        for k in range(1, n + 1):
            self.data.ctrl[:] = start + (q_target - start) * (k / n)
            mujoco.mj_step(self.model, self.data)
        self._ctrl = q_target.copy()

    # ---- rendering ---------------------------------------------------------------------------
    def _get_renderer(self) -> mujoco.Renderer:
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, height=self.config.height, width=self.config.width)
        return self._renderer

    def _update(self, r: mujoco.Renderer) -> None:
        r.update_scene(self.data, camera=self.config.camera_name)
        r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        r.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False

    def render(self) -> SimFrame:
        """RGB, planar depth (m), robot mask and state at the current sim time."""
        r = self._get_renderer()
        self._update(r)
        rgb = r.render().copy()
        r.enable_depth_rendering()
        try:
            self._update(r)
            depth = r.render().astype(np.float32)
        finally:
            r.disable_depth_rendering()
        seg = self._render_segmentation(r)
        is_geom = seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM)
        mask = is_geom & np.isin(seg[..., 0], self.robot_geom_ids)
        depth[seg[..., 0] < 0] = 0.0   # background: no surface hit
        return SimFrame(rgb=rgb, depth=depth, robot_mask=mask, object_poses=self.object_poses(),
                        joint_positions=self.joint_positions(), stamp=float(self.data.time))

    def _render_segmentation(self, r) -> np.ndarray:
        """(H,W,2) MuJoCo segmentation: (object id, object type) per pixel, -1 where nothing."""
        r.enable_segmentation_rendering()
        try:
            self._update(r)
            return r.render()
        finally:
            r.disable_segmentation_rendering()

    def segmentation(self) -> np.ndarray:
        """(H,W) geom id per pixel (-1 background)."""
        seg = self._render_segmentation(self._get_renderer())
        return np.where(seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), seg[..., 0], -1)

    def camera_model(self):
        """kinema4d_core.camera.CameraModel of the sim camera (pinhole, no distortion, base frame)."""
        from kinema4d_core.simworld.calibration import sim_camera_model

        return sim_camera_model(self.config)

    def run_episode(self, task: str, n_frames: int = 49, seed: int = 0,
                    on_frame: Callable[[int, SimFrame], None] | None = None, *,
                    policy: str = "scripted") -> "Episode":
        """Run one scripted episode (see module function ``run_episode``)."""
        return run_episode(self, task, n_frames, seed, on_frame, policy=policy)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> "SimWorld":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_episode(world: SimWorld, task: str, n_frames: int = 49, seed: int = 0,
                on_frame: Callable[[int, SimFrame], None] | None = None, robot=None, *,
                policy: str = "scripted") -> Episode:
    """Reset with ``seed``, execute ``task`` by the scripted ``policy`` over ``n_frames`` frames,
    judge the outcome.

    Frame 0 is the settled start; each later frame follows one ``step_to`` of the plan.
    on_frame(index, frame) is called as each frame is rendered (e.g. to publish it).
    robot: kinema4d_core RobotModel for the IK (default load_robot("panda")).
    policy: one of ``simworld.tasks.POLICIES`` ("scripted": plan from the nominal cube position;
    "aim-2cm" etc.: plan from a believed position off by that much in a seeded direction).
    """
    from kinema4d_core.errors import ConfigError
    from kinema4d_core.robot import load_robot
    from kinema4d_core.simworld.episode import Episode
    from kinema4d_core.simworld.tasks import TASKS, check_policy, judge, plan

    if task not in TASKS:
        raise InputError(f"unknown task {task!r}", field="task", fix=f"use one of {list(TASKS)}")
    check_policy(policy)
    if not isinstance(n_frames, (int, np.integer)) or n_frames < 2:
        raise InputError(f"n_frames={n_frames!r} must be an integer >= 2", field="n_frames",
                         fix="use e.g. 49 (the Kinema4D clip length)")
    robot = robot or load_robot("panda")
    if tuple(robot.joint_names) != world.joint_names:
        raise ConfigError(f"robot joints {robot.joint_names} differ from the sim's {world.joint_names}",
                          field="robot", fix="use the Panda robot config (urdf/panda.yaml)")
    task_plan = plan(task, world.config, robot, int(n_frames), policy=policy, seed=int(seed))
    world.reset(seed)
    frames: list[SimFrame] = []
    for t in range(n_frames):
        if t > 0:
            world.step_to(task_plan.q[t])
        frame = world.render()
        frames.append(frame)
        if on_frame is not None:
            on_frame(t, frame)
    poses = np.stack([f.object_poses[0] for f in frames])
    metrics = judge(task, world.config, poses[:, :3])
    cam = world.camera_model()
    return Episode(task=task, seed=int(seed), success=metrics["success"],
                   rgb=np.stack([f.rgb for f in frames]), depth=np.stack([f.depth for f in frames]),
                   robot_mask=np.stack([f.robot_mask for f in frames]),
                   joint_positions=np.stack([f.joint_positions for f in frames]),
                   joint_targets=task_plan.q.copy(), joint_names=world.joint_names, object_poses=poses,
                   stamps=np.array([f.stamp for f in frames]), K=np.asarray(cam.K),
                   T_base_camera=np.asarray(cam.T_base_camera), metrics=metrics, policy=policy)
