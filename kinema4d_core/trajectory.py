"""Actions -> joint trajectories: joint positions, joint velocities (integrated), end-effector poses
(damped-least-squares IK), uniform resampling to the model's 49 frames, and the trajectory file.

Units: metres, radians, seconds. EE poses are ``T_base_ee`` (4x4) in the robot config's base frame,
or position + quaternion ``[x, y, z, qx, qy, qz, qw]`` (scalar last, like ROS).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kinema4d_core.errors import InputError, UnreachablePoseError
from kinema4d_core.robot import RobotModel


@dataclass(frozen=True)
class JointTrajectory:
    """Joint positions over time.

    joint_names: the robot's actuated joints (``robot.joint_names``), the column order.
    positions: (T, N) float64 (rad / m). stamps: (T,) strictly increasing seconds, or None
    (then frames are taken as uniformly spaced).
    """

    joint_names: tuple[str, ...]
    positions: np.ndarray
    stamps: np.ndarray | None = None

    def __post_init__(self) -> None:
        pos = np.array(self.positions, dtype=np.float64)
        if pos.ndim != 2 or pos.shape[1] != len(self.joint_names):
            raise InputError(f"expected (T, {len(self.joint_names)}) positions, got {pos.shape}",
                             field="positions", fix="one row per frame, one column per joint")
        pos.flags.writeable = False
        object.__setattr__(self, "joint_names", tuple(self.joint_names))
        object.__setattr__(self, "positions", pos)
        if self.stamps is not None:
            object.__setattr__(self, "stamps", _check_stamps(self.stamps, len(pos)))

    @property
    def n_frames(self) -> int:
        return int(self.positions.shape[0])


def _check_stamps(stamps: Any, n: int, field: str = "stamps") -> np.ndarray:
    try:
        s = np.array(stamps, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"not numeric ({exc})", field=field, fix="give times in seconds") from exc
    if s.shape != (n,):
        raise InputError(f"expected shape ({n},) (one per frame), got {s.shape}", field=field,
                         fix="give one time stamp per frame")
    if not np.all(np.isfinite(s)):
        raise InputError("contains NaN/inf", field=field, fix="give finite times in seconds")
    if n > 1 and not np.all(np.diff(s) > 0):
        bad = int(np.argmin(np.diff(s) > 0)) + 1
        raise InputError(f"not strictly increasing at frame {bad} ({s[bad - 1]} -> {s[bad]})", field=field,
                         fix="sort frames by time and drop duplicates")
    s.flags.writeable = False
    return s


def _named_matrix(robot: RobotModel, joint_names: Sequence[str], values: Any, field: str) -> np.ndarray:
    """(T,K) values named by joint_names -> (T,N) in the robot's order (InputError on bad shapes)."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"not a numeric array ({exc})", field=field, fix="pass numbers") from exc
    names = [str(n) for n in joint_names]
    if arr.ndim != 2 or arr.shape[1] != len(names):
        raise InputError(f"expected (T, {len(names)}) (one column per joint name), got {arr.shape}", field=field,
                         fix="one row per frame, columns in joint_names order")
    return robot.joint_vector(names, arr)


def from_positions(robot: RobotModel, joint_names: Sequence[str], positions: Any,
                   stamps: Any = None) -> JointTrajectory:
    """Trajectory from (T,K) joint positions whose columns are named by ``joint_names``.

    Validates shapes, finiteness and joint limits (InputError naming joint and frame).
    """
    q = _named_matrix(robot, joint_names, positions, "positions")
    q = robot.check_positions(q, field="positions")
    return JointTrajectory(robot.joint_names, q, None if stamps is None else _check_stamps(stamps, len(q)))


def from_velocities(robot: RobotModel, joint_names: Sequence[str], velocities: Any, dt: float,
                    q0: Any = None) -> JointTrajectory:
    """Integrate (T,K) joint velocities (rad/s, m/s) over ``dt`` seconds from ``q0`` (N,).

    Explicit Euler: ``q[0] = q0`` and ``q[t+1] = q[t] + dt * v[t]``; the result has T+1 frames with
    stamps ``dt * arange(T+1)``. q0 defaults to ``robot.home()``. A result outside the joint limits
    raises InputError naming the joint and the frame (no clamping).
    """
    v = _named_matrix(robot, joint_names, velocities, "velocities")
    if not np.all(np.isfinite(v)):
        t, j = np.argwhere(~np.isfinite(v))[0]
        raise InputError(f"joint '{robot.joint_names[j]}' velocity is {v[t, j]} at frame {t}", field="velocities",
                         fix="remove NaN/inf values")
    try:
        dt = float(dt)
    except (TypeError, ValueError) as exc:
        raise InputError(f"expected a number of seconds, got {dt!r}", field="dt", fix="e.g. dt=0.1") from exc
    if not np.isfinite(dt) or dt <= 0:
        raise InputError(f"must be a positive number of seconds, got {dt}", field="dt", fix="e.g. dt=0.1")
    start = robot.home() if q0 is None else robot.check_positions(q0, field="q0")
    if start.ndim != 1:
        raise InputError(f"expected ({robot.n_joints},), got {start.shape}", field="q0",
                         fix="give one start configuration in the robot's joint order")
    positions = np.vstack([start, start + dt * np.cumsum(v, axis=0)])
    positions = robot.check_positions(positions, field="velocities")
    return JointTrajectory(robot.joint_names, positions, dt * np.arange(len(positions)))


# --------------------------------------------------------------------------------------------
# poses
# --------------------------------------------------------------------------------------------

def pose_from_position_quaternion(p: Any, q_xyzw: Any) -> np.ndarray:
    """(4,4) or (T,4,4) pose from position(s) (3,)/(T,3) and unit quaternion(s) ``[qx, qy, qz, qw]``."""
    from scipy.spatial.transform import Rotation

    p = np.asarray(p, dtype=np.float64)
    quat = np.asarray(q_xyzw, dtype=np.float64)
    if p.shape[-1:] != (3,) or quat.shape[-1:] != (4,) or p.shape[:-1] != quat.shape[:-1] or p.ndim > 2:
        raise InputError(f"expected positions (3,)/(T,3) and quaternions (4,)/(T,4), got {p.shape} and {quat.shape}",
                         field="ee_poses", fix="give [x, y, z] and [qx, qy, qz, qw] per frame")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(quat))):
        raise InputError("contains NaN/inf", field="ee_poses", fix="remove non-finite values")
    norms = np.linalg.norm(quat, axis=-1)
    if np.any(np.abs(norms - 1.0) > 1e-3):
        bad = int(np.argmax(np.abs(np.atleast_1d(norms) - 1.0)))
        raise InputError(f"quaternion of frame {bad} has norm {np.atleast_1d(norms)[bad]:.6g}, not 1",
                         field="ee_poses", fix="normalize quaternions (order x, y, z, w)")
    T = np.zeros(p.shape[:-1] + (4, 4))
    T[..., :3, :3] = Rotation.from_quat(quat.reshape(-1, 4)).as_matrix().reshape(p.shape[:-1] + (3, 3))
    T[..., :3, 3] = p
    T[..., 3, 3] = 1.0
    return T


def _check_poses(ee_poses: Any, field: str = "ee_poses") -> np.ndarray:
    """(T,4,4) rigid poses from (T,4,4) or (T,7) [x y z qx qy qz qw]; InputError naming the frame."""
    try:
        arr = np.asarray(ee_poses, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"not a numeric array ({exc})", field=field, fix="pass (T,4,4) poses") from exc
    if arr.ndim == 2 and arr.shape[1] == 7 and len(arr):
        return pose_from_position_quaternion(arr[:, :3], arr[:, 3:])
    if arr.ndim != 3 or arr.shape[1:] != (4, 4) or len(arr) == 0:
        raise InputError(f"expected (T,4,4) poses or (T,7) [x y z qx qy qz qw], got {arr.shape}", field=field,
                         fix="give T_base_ee per frame")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"frame {int(np.argwhere(~np.isfinite(arr))[0, 0])} contains NaN/inf", field=field,
                         fix="remove non-finite values")
    R = arr[:, :3, :3]
    ortho = np.abs(np.einsum("tji,tjk->tik", R, R) - np.eye(3)).max(axis=(1, 2))
    bad = np.flatnonzero((ortho > 1e-6) | (np.linalg.det(R) < 0) | (np.abs(arr[:, 3] - [0, 0, 0, 1]).max(axis=1) > 0))
    if len(bad):
        raise InputError(f"frame {bad[0]} is not a rigid transform (rotation not orthonormal or last row not "
                         f"[0 0 0 1]); {len(bad)} bad frame(s)", field=field,
                         fix="give proper homogeneous transforms T_base_ee")
    return arr


# --------------------------------------------------------------------------------------------
# inverse kinematics
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IKResult:
    """q (N,); position_error (m) and rotation_error (rad) of FK(q) against the target; converged."""

    q: np.ndarray
    position_error: float
    rotation_error: float
    converged: bool
    iterations: int = 0


class IKSolver:
    """Damped-least-squares IK for one frame of a robot (the EE frame by default).

    Error: ``log6(T_frame^-1 T_target)`` (a twist in the current frame), Jacobian: the frame's LOCAL
    Jacobian through ``Jlog6``; steps are clamped to the joint limits. ``solve`` first iterates from the
    seed; if that does not converge it restarts from ``robot.home()`` and from random configurations
    (deterministic per solver). Converged means position error <= tol_position (m) and rotation
    error <= tol_rotation (rad).
    """

    def __init__(self, robot: RobotModel, frame: str | None = None, *, tol_position: float = 1e-9,
                 tol_rotation: float = 1e-9, max_iterations: int = 60, damping: float = 1e-8,
                 max_step: float = 0.5, restarts: int = 24, seed: int = 0):
        self.robot = robot
        self.frame = frame or robot.config.ee_frame
        self._fid = robot.frame_id(self.frame)
        self.tol_position, self.tol_rotation = tol_position, tol_rotation
        self.max_iterations, self.damping, self.max_step = max_iterations, damping, max_step
        self.restarts, self.seed = restarts, seed
        self._T_world_base = robot.T_world_base
        gripper = robot.config.gripper
        self._keep = np.zeros(robot.n_joints, dtype=bool)  # joints that restarts leave at the seed value
        if gripper is not None:
            self._keep[robot.joint_names.index(gripper.joint)] = True

    def solve(self, T_base_target: np.ndarray, q_seed: np.ndarray | None = None) -> IKResult:
        """Solve for T_base_target (4,4) from q_seed (N,) (default home), restarting when needed."""
        robot = self.robot
        seed = robot.home() if q_seed is None else np.clip(np.asarray(q_seed, dtype=np.float64),
                                                           robot.lower, robot.upper)
        best = self.solve_local(T_base_target, seed)
        if best.converged:
            return best
        rng = np.random.default_rng(self.seed)
        for k in range(self.restarts + 1):
            if k == 0:
                start = robot.home()
            else:
                # continuous joints (infinite limits) restart within one turn
                start = rng.uniform(np.maximum(robot.lower, -np.pi), np.minimum(robot.upper, np.pi))
            start[self._keep] = seed[self._keep]
            res = self.solve_local(T_base_target, start)
            if res.converged:
                return res
            if res.position_error + 0.1 * res.rotation_error < best.position_error + 0.1 * best.rotation_error:
                best = res
        return best

    def solve_local(self, T_base_target: np.ndarray, q_seed: np.ndarray) -> IKResult:
        """Iterate DLS from q_seed only (no restarts)."""
        import pinocchio as pin
        from scipy.linalg.lapack import dposv

        robot, fid = self.robot, self._fid
        target = pin.SE3(self._T_world_base @ np.asarray(T_base_target, dtype=np.float64))
        q = np.array(q_seed, dtype=np.float64)
        lower, upper = robot.lower, robot.upper
        diag6 = np.diag_indices(6)
        pos_err = rot_err = np.inf
        for it in range(self.max_iterations + 1):
            err_se3 = pin.SE3(robot.frame_placement_world(q, fid)).actInv(target)  # T_frame_target
            pos_err = float(np.linalg.norm(err_se3.translation))  # = |p_target - p_frame|
            err = pin.log6(err_se3).vector
            rot_err = float(np.linalg.norm(err[3:]))
            if pos_err <= self.tol_position and rot_err <= self.tol_rotation:
                return IKResult(q, pos_err, rot_err, True, it)
            if it == self.max_iterations:
                break
            Jl = pin.Jlog6(err_se3.inverse()) @ robot.frame_jacobian_local_only(q, fid)
            lam = self.damping + 1e-3 * min(1.0, float(err @ err))
            A = Jl @ Jl.T
            A[diag6] += lam
            x, info = dposv(A, err)[1:]  # LAPACK Cholesky solve: ~7x faster than np.linalg.solve here
            dq = Jl.T @ (x if info == 0 else np.linalg.lstsq(A, err, rcond=None)[0])
            step = float(np.abs(dq).max())
            if step > self.max_step:
                dq *= self.max_step / step
            q = np.clip(q + dq, lower, upper)
        return IKResult(q, pos_err, rot_err, False, self.max_iterations)


def _gripper_positions(robot: RobotModel, gripper: Any, n: int) -> np.ndarray | None:
    """(T,) gripper joint positions (metres of finger travel, between ``gripper.closed`` and ``.open``)."""
    if gripper is None:
        return None
    if robot.config.gripper is None:
        raise InputError(f"robot '{robot.config.name}' has no gripper", field="gripper",
                         fix="omit the gripper values or add a gripper to the robot config")
    try:
        g = np.asarray(gripper, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"not numeric ({exc})", field="gripper", fix="one finger position in metres per frame") \
            from exc
    if g.shape != (n,):
        raise InputError(f"expected ({n},) gripper positions (one per pose), got {g.shape}", field="gripper",
                         fix="one finger position in metres per frame")
    cfg = robot.config.gripper
    lo, hi = min(cfg.open, cfg.closed), max(cfg.open, cfg.closed)
    bad = ~np.isfinite(g) | (g < lo - 1e-6) | (g > hi + 1e-6)
    if bad.any():
        t = int(np.flatnonzero(bad)[0])
        raise InputError(f"gripper position {g[t]} m at frame {t} is outside [{lo}, {hi}] "
                         f"(closed {cfg.closed}, open {cfg.open})", field="gripper",
                         fix="give the gripper joint position in metres of finger travel")
    return np.clip(g, lo, hi)


def from_ee_poses(robot: RobotModel, ee_poses: Any, gripper: Any = None, q_seed: Any = None, *,
                  stamps: Any = None, solver: IKSolver | None = None) -> JointTrajectory:
    """Joint trajectory reaching each EE pose (T,4,4) / (T,7), each IK seeded by the previous solution.

    gripper: optional (T,) gripper joint positions (metres of finger travel, between the config's
    ``gripper.closed`` and ``gripper.open``); without it the gripper joint keeps its seed value. q_seed (N,) seeds frame 0
    (default ``robot.home()``). Raises UnreachablePoseError listing every frame whose pose was not
    reached to the solver's tolerance (``report``: (frame, position error m, rotation error rad)).
    """
    poses = _check_poses(ee_poses)
    n = len(poses)
    grip = _gripper_positions(robot, gripper, n)
    solver = solver or IKSolver(robot)
    q = robot.home() if q_seed is None else robot.check_positions(q_seed, field="q_seed")
    if q.ndim != 1:
        raise InputError(f"expected ({robot.n_joints},), got {q.shape}", field="q_seed",
                         fix="give one seed configuration in the robot's joint order")
    gi = robot.joint_names.index(robot.config.gripper.joint) if grip is not None else None
    out = np.empty((n, robot.n_joints))
    failed: list[tuple[int, float, float]] = []
    q_prev: np.ndarray | None = None  # solution of frame t-2 (for extrapolation)
    prev_ok = False  # whether q holds the solution of frame t-1
    for t in range(n):
        if gi is not None:
            q = q.copy()
            q[gi] = grip[t]
        res = None
        if q_prev is not None:  # smooth motion: a linearly extrapolated seed saves an iteration or two
            guess = np.clip(2.0 * q - q_prev, robot.lower, robot.upper)
            if gi is not None:
                guess[gi] = q[gi]
            res = solver.solve_local(poses[t], guess)
        if res is None or not res.converged:
            res = solver.solve(poses[t], q)
        if res.converged:
            q_prev = q if prev_ok else None  # q is frame t-1's solution only if that frame converged
            q, prev_ok = res.q, True
        else:
            failed.append((t, res.position_error, res.rotation_error))
            q_prev, prev_ok = None, False
        out[t] = res.q if res.converged else q
    if failed:
        frames = [f[0] for f in failed]
        worst = max(failed, key=lambda f: f[1])
        raise UnreachablePoseError(
            f"{len(failed)} of {n} end-effector poses are unreachable: frames {frames} (worst: frame {worst[0]}, "
            f"position error {worst[1]:.4g} m, rotation error {worst[2]:.4g} rad)",
            report=failed, field="ee_poses",
            fix="move the targets inside the robot's workspace / joint limits")
    return JointTrajectory(robot.joint_names, out, None if stamps is None else _check_stamps(stamps, n))


# --------------------------------------------------------------------------------------------
# resampling and files
# --------------------------------------------------------------------------------------------

def resample(traj: JointTrajectory, n_frames: int = 49) -> JointTrajectory:
    """Uniformly resample over the episode (linear interpolation over normalized time).

    Normalized time is ``(stamps - stamps[0]) / duration`` when stamps are present, else
    ``arange(T) / (T-1)``. Endpoints are kept exactly; output stamps (when input has stamps) are
    uniform over the same interval.
    """
    if traj.n_frames < 2:
        raise InputError(f"needs at least 2 frames, got {traj.n_frames}", field="trajectory",
                         fix="give an episode with two or more frames")
    if int(n_frames) != n_frames or n_frames < 2:
        raise InputError(f"must be an integer >= 2, got {n_frames}", field="n_frames", fix="e.g. 49")
    n_frames = int(n_frames)
    if traj.stamps is not None:
        s = traj.stamps
        u = (s - s[0]) / (s[-1] - s[0])
    else:
        u = np.linspace(0.0, 1.0, traj.n_frames)
    u_new = np.linspace(0.0, 1.0, n_frames)
    pos = np.stack([np.interp(u_new, u, traj.positions[:, j]) for j in range(traj.positions.shape[1])], axis=1)
    stamps = None
    if traj.stamps is not None:
        stamps = traj.stamps[0] + u_new * (traj.stamps[-1] - traj.stamps[0])
        stamps[-1] = traj.stamps[-1]
    return JointTrajectory(traj.joint_names, pos, stamps)


def sample_at(traj: JointTrajectory, stamps: Any, *, max_extrapolation: float = 0.0,
              field: str = "stamps") -> JointTrajectory:
    """Joint positions at the given absolute times (seconds), linearly interpolated.

    This is the one rule for putting the robot in step with camera frames: replay, the inference
    node's recording and the sim world render the robot at the joint state interpolated at each
    selected camera frame's own stamp (never at evenly spaced times). ``traj`` must carry stamps.
    A time before the first / after the last joint state is held at the end value when it lies
    within ``max_extrapolation`` seconds of it, and refused otherwise (InputError naming the frame).
    """
    if traj.stamps is None:
        raise InputError("the trajectory has no stamps", field="trajectory.stamps",
                         fix="give joint states with their time stamps")
    t = np.asarray(stamps, dtype=np.float64).ravel()
    if t.size == 0:
        raise InputError("is empty", field=field, fix="give one time stamp per frame to render")
    t = _check_stamps(t, t.size, field)
    s = traj.stamps
    tol = float(max_extrapolation)
    outside = (t < s[0] - tol) | (t > s[-1] + tol)
    if np.any(outside):
        i = int(np.argmax(outside))
        raise InputError(f"frame {i} at t={t[i]:.6f} s lies outside the joint states "
                         f"[{s[0]:.6f}, {s[-1]:.6f}] s by more than {tol:g} s", field=field,
                         fix="record joint states for the whole camera interval (or trim the episode)")
    if traj.n_frames == 1:
        pos = np.repeat(traj.positions, t.size, axis=0)
    else:
        pos = np.stack([np.interp(t, s, traj.positions[:, j]) for j in range(traj.positions.shape[1])], axis=1)
    return JointTrajectory(traj.joint_names, pos.reshape(t.size, -1), t)


_FILE_KEYS = {"joint_names", "positions", "velocities", "dt", "q0", "ee_poses", "gripper", "stamps"}


def load_trajectory_file(path: str | os.PathLike, robot: RobotModel) -> JointTrajectory:
    """Load a trajectory .npz. Accepted key sets (format in urdf/README.md):

    - ``joint_names`` (K,) str + ``positions`` (T,K) [+ ``stamps`` (T,)]
    - ``joint_names`` + ``velocities`` (T,K) + ``dt`` () [+ ``q0`` (K,) named by joint_names]
    - ``ee_poses`` (T,4,4) or (T,7) [+ ``gripper`` (T,) joint position, m] [+ ``stamps`` (T,)]

    Every malformed case raises InputError naming the key.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"trajectory file {path} does not exist", field="path", fix="give an existing .npz file")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as exc:
        raise InputError(f"{path} is not a readable .npz without pickled objects ({exc})", field="path",
                         fix="save with numpy.savez and plain arrays") from exc
    unknown = sorted(set(data) - _FILE_KEYS)
    if unknown:
        raise InputError(f"unknown keys {unknown} in {path.name}", field=unknown[0],
                         fix=f"allowed keys: {sorted(_FILE_KEYS)}")
    kinds = [k for k in ("positions", "velocities", "ee_poses") if k in data]
    if len(kinds) != 1:
        raise InputError(f"expected exactly one of positions / velocities / ee_poses, found {kinds or 'none'}",
                         field=kinds[1] if len(kinds) > 1 else "positions",
                         fix="store one kind of action per file")
    kind = kinds[0]
    allowed = {"positions": {"joint_names", "positions", "stamps"},
               "velocities": {"joint_names", "velocities", "dt", "q0"},
               "ee_poses": {"ee_poses", "gripper", "stamps"}}[kind]
    extra = sorted(set(data) - allowed)
    if extra:
        raise InputError(f"key not used with {kind}", field=extra[0], fix=f"with {kind} use only {sorted(allowed)}")
    if kind == "ee_poses":
        return from_ee_poses(robot, data["ee_poses"], gripper=data.get("gripper"), stamps=data.get("stamps"))

    if "joint_names" not in data:
        raise InputError(f"missing (needed with {kind})", field="joint_names",
                         fix="store the joint names, one per column")
    names = data["joint_names"]
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise InputError(f"expected a 1-D array of strings, got {names.dtype} {names.shape}", field="joint_names",
                         fix="np.array(['joint1', ...])")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()]
    if kind == "positions":
        return from_positions(robot, names, data["positions"], stamps=data.get("stamps"))
    if "dt" not in data:
        raise InputError("missing (needed with velocities)", field="dt", fix="store dt in seconds")
    if data["dt"].shape != ():
        raise InputError(f"expected a scalar, got shape {data['dt'].shape}", field="dt", fix="store dt=0.1")
    q0 = None
    if "q0" in data:
        if data["q0"].shape != (len(names),):
            raise InputError(f"expected ({len(names)},) named by joint_names, got {data['q0'].shape}", field="q0",
                             fix="one start position per joint name")
        q0 = robot.joint_vector(names, data["q0"])
    return from_velocities(robot, names, data["velocities"], data["dt"][()], q0=q0)  # converted (and checked) there
