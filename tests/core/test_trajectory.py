"""Trajectories: positions, velocity integration, EE-pose IK (round trip, smooth path, unreachable
poses), resampling to 49 frames and the trajectory .npz file."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from kinema4d_core.errors import InputError, UnreachablePoseError
from kinema4d_core.robot import load_robot
from kinema4d_core.trajectory import (IKSolver, JointTrajectory, from_ee_poses, from_positions, from_velocities,
                                      load_trajectory_file, pose_from_position_quaternion, resample)


@pytest.fixture(scope="module")
def panda():
    return load_robot("panda")


def pose_errors(T_a: np.ndarray, T_b: np.ndarray) -> tuple[float, float]:
    """(position error m, rotation angle rad) between two poses, computed with scipy."""
    dp = float(np.linalg.norm(T_a[:3, 3] - T_b[:3, 3]))
    dr = float(Rotation.from_matrix(T_a[:3, :3].T @ T_b[:3, :3]).magnitude())
    return dp, dr


def smooth_joint_path(robot, n=49):
    q0 = robot.home()
    span = np.minimum(robot.upper - q0, q0 - robot.lower)
    return q0 + 0.4 * span * np.sin(np.linspace(0, np.pi / 2, n))[:, None]


# ---- positions and velocities ---------------------------------------------------------------

def test_from_positions_reorders_named_columns(panda):
    names = list(reversed(panda.joint_names))
    Q = smooth_joint_path(panda, 5)
    traj = from_positions(panda, names, Q[:, ::-1], stamps=np.arange(5) * 0.1)
    assert traj.joint_names == panda.joint_names
    np.testing.assert_allclose(traj.positions, Q)
    assert not traj.positions.flags.writeable


@pytest.mark.parametrize("stamps, text", [
    ([0.0, 0.1, 0.1, 0.3, 0.4], "not strictly increasing at frame 2"),
    ([0.0, 0.1, 0.2], "expected shape \\(5,\\)"),
    ([0.0, 0.1, np.nan, 0.3, 0.4], "NaN"),
])
def test_from_positions_rejects_bad_stamps(panda, stamps, text):
    with pytest.raises(InputError, match=text) as err:
        from_positions(panda, panda.joint_names, smooth_joint_path(panda, 5), stamps=stamps)
    assert err.value.field == "stamps"


def test_from_positions_rejects_out_of_limit_frames(panda):
    Q = smooth_joint_path(panda, 5)
    Q[3, 0] = 3.5
    with pytest.raises(InputError, match="panda_joint1' = 3.5 at frame 3"):
        from_positions(panda, panda.joint_names, Q)
    with pytest.raises(InputError, match="expected \\(T, 8\\)") as err:
        from_positions(panda, panda.joint_names, Q[:, :7])
    assert err.value.field == "positions"


def test_velocity_integration(panda):
    dt = 0.1
    v = np.zeros((10, 8))
    v[:, 0] = 0.5            # rad/s on joint 1
    v[:5, 7] = -0.02         # closing the gripper for 0.5 s
    traj = from_velocities(panda, panda.joint_names, v, dt)
    home = panda.home()
    assert traj.n_frames == 11
    np.testing.assert_allclose(traj.positions[0], home)
    np.testing.assert_allclose(traj.positions[:, 0], home[0] + 0.05 * np.arange(11), atol=1e-12)
    assert traj.positions[-1, 7] == pytest.approx(home[7] - 0.01)
    np.testing.assert_allclose(traj.stamps, dt * np.arange(11))


def test_velocity_integration_from_q0_and_out_of_limits(panda):
    q0 = panda.home()
    v = np.zeros((4, 8))
    v[:, 3] = 10.0  # joint 4: -2.356 + 1.0 per step passes its upper limit -0.0698 at frame 3
    with pytest.raises(InputError, match="panda_joint4.*at frame 3") as err:
        from_velocities(panda, panda.joint_names, v, 0.1, q0=q0)
    assert err.value.field == "velocities"
    with pytest.raises(InputError) as err:
        from_velocities(panda, panda.joint_names, v, -0.1)
    assert err.value.field == "dt"


# ---- IK -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["panda", "xarm7"])
def test_ik_round_trip_on_random_reachable_poses(name):
    robot = load_robot(name)
    solver = IKSolver(robot)
    rng = np.random.default_rng(11)
    for _ in range(8):
        T = robot.ee_pose(rng.uniform(robot.lower, robot.upper))
        res = solver.solve(T, robot.home())
        assert res.converged
        dp, dr = pose_errors(robot.ee_pose(res.q), T)
        assert dp < 1e-6 and dr < 1e-6
        assert np.all(res.q >= robot.lower) and np.all(res.q <= robot.upper)
        assert res.position_error == pytest.approx(dp, abs=1e-9)


def test_ik_smooth_49_pose_trajectory_with_gripper(panda):
    Q = smooth_joint_path(panda)
    poses = np.stack([panda.ee_pose(q) for q in Q])
    opening = np.linspace(0.04, 0.0, 49)  # finger travel, metres
    traj = from_ee_poses(panda, poses, gripper=opening, q_seed=Q[0])
    assert traj.positions.shape == (49, 8)
    for q, T in zip(traj.positions, poses):
        dp, dr = pose_errors(panda.ee_pose(q), T)
        assert dp < 1e-6 and dr < 1e-6
    np.testing.assert_allclose(traj.positions[:, 7], opening)
    # seeded by the previous solution: the arm moves smoothly, no branch jumps
    assert np.abs(np.diff(traj.positions[:, :7], axis=0)).max() < 0.2


def test_ik_accepts_position_quaternion_rows(panda):
    T = panda.ee_pose(smooth_joint_path(panda, 3)[1])
    quat = Rotation.from_matrix(T[:3, :3]).as_quat()  # x, y, z, w
    np.testing.assert_allclose(pose_from_position_quaternion(T[:3, 3], quat), T, atol=1e-12)
    traj = from_ee_poses(panda, np.concatenate([T[:3, 3], quat])[None])
    dp, dr = pose_errors(panda.ee_pose(traj.positions[0]), T)
    assert dp < 1e-6 and dr < 1e-6


def test_unreachable_pose_reports_every_failed_frame(panda):
    Q = smooth_joint_path(panda, 6)
    poses = np.stack([panda.ee_pose(q) for q in Q])
    poses[2, :3, 3] = [2.0, 0.0, 0.5]   # 2 m away: beyond the Panda's ~0.86 m reach
    poses[4, :3, 3] = [0.0, -1.5, 1.0]
    solver = IKSolver(panda, restarts=3)
    with pytest.raises(UnreachablePoseError) as err:
        from_ee_poses(panda, poses, q_seed=Q[0], solver=solver)
    report = err.value.report
    assert [frame for frame, _, _ in report] == [2, 4]
    assert all(pos_err > 0.5 for _, pos_err, _ in report)
    assert "frames [2, 4]" in str(err.value) and err.value.field == "ee_poses"


@pytest.mark.parametrize("poses, text", [
    (np.zeros((3, 3, 3)), "expected \\(T,4,4\\)"),
    (np.tile(np.eye(4), (2, 1, 1)) * np.array([1, 1, 1, 1.0]) + np.diag([1.0, 0, 0, 0]), "not a rigid transform"),
    (np.full((1, 4, 4), np.nan), "NaN"),
    (np.array([[0, 0, 0.5, 0, 0, 0, 2.0]]), "norm 2"),
    (np.zeros((0, 7)), "expected \\(T,4,4\\)"),     # no poses: rejected like an empty (0,4,4)
])
def test_bad_ee_poses_are_rejected(panda, poses, text):
    with pytest.raises(InputError, match=text) as err:
        from_ee_poses(panda, poses)
    assert err.value.field == "ee_poses"


def test_bad_gripper_values_are_rejected(panda):
    poses = panda.ee_pose(panda.home())[None]
    with pytest.raises(InputError, match="0.05 m at frame 0 is outside \\[0.0, 0.04\\]") as err:
        from_ee_poses(panda, poses, gripper=[0.05])
    assert err.value.field == "gripper"
    with pytest.raises(InputError, match="no gripper"):
        xarm = load_robot("xarm7")
        from_ee_poses(xarm, xarm.ee_pose(xarm.home())[None], gripper=[0.02])


# ---- resampling -----------------------------------------------------------------------------

def test_resample_to_49_keeps_endpoints_and_follows_stamps(panda):
    Q = smooth_joint_path(panda, 120)
    stamps = np.cumsum(np.random.default_rng(0).uniform(0.01, 0.2, 120))
    traj = resample(JointTrajectory(panda.joint_names, Q, stamps), 49)
    assert traj.positions.shape == (49, 8)
    np.testing.assert_allclose(traj.positions[[0, -1]], Q[[0, -1]])
    assert traj.stamps[0] == stamps[0] and traj.stamps[-1] == stamps[-1]
    assert np.all(np.diff(traj.stamps) > 0)
    np.testing.assert_allclose(np.diff(traj.stamps), (stamps[-1] - stamps[0]) / 48)
    # interpolation is in time, not in frame index: check one interior sample
    k = 17
    expected = [np.interp(traj.stamps[k], stamps, Q[:, j]) for j in range(8)]
    np.testing.assert_allclose(traj.positions[k], expected, atol=1e-12)


def test_resample_without_stamps_is_uniform_over_frames(panda):
    Q = np.linspace(panda.home(), panda.home() + 0.1, 2)
    traj = resample(JointTrajectory(panda.joint_names, Q), 49)
    assert traj.stamps is None
    np.testing.assert_allclose(traj.positions, np.linspace(Q[0], Q[1], 49), atol=1e-12)
    with pytest.raises(InputError, match="at least 2 frames"):
        resample(JointTrajectory(panda.joint_names, Q[:1]))


# ---- trajectory file ------------------------------------------------------------------------

def test_trajectory_file_positions_velocities_and_poses(panda, tmp_path):
    Q = smooth_joint_path(panda, 7)
    names = np.array(panda.joint_names)
    np.savez(tmp_path / "pos.npz", joint_names=names, positions=Q, stamps=np.arange(7) * 0.5)
    traj = load_trajectory_file(tmp_path / "pos.npz", panda)
    np.testing.assert_allclose(traj.positions, Q)
    np.testing.assert_allclose(traj.stamps, np.arange(7) * 0.5)

    np.savez(tmp_path / "vel.npz", joint_names=names, velocities=np.diff(Q, axis=0) / 0.5, dt=0.5, q0=Q[0])
    np.testing.assert_allclose(load_trajectory_file(tmp_path / "vel.npz", panda).positions, Q, atol=1e-12)

    poses = np.stack([panda.ee_pose(q) for q in Q])
    np.savez(tmp_path / "ee.npz", ee_poses=poses, gripper=np.full(7, 0.02))
    traj = load_trajectory_file(tmp_path / "ee.npz", panda)
    assert traj.positions.shape == (7, 8) and np.all(traj.positions[:, 7] == 0.02)


@pytest.mark.parametrize("arrays, key", [
    ({"positions": np.zeros((3, 8))}, "joint_names"),
    ({"joint_names": np.array(["a"] * 8), "positions": np.zeros((3, 8))}, "joint_names"),
    ({"joint_names": np.arange(8), "positions": np.zeros((3, 8))}, "joint_names"),
    ({"joint_names": None, "positions": np.zeros((3, 4))}, "positions"),
    ({"joint_names": None, "velocities": np.zeros((3, 8))}, "dt"),
    ({"joint_names": None, "velocities": np.zeros((3, 8)), "dt": np.array([0.1, 0.2])}, "dt"),
    ({"joint_names": None, "velocities": np.zeros((3, 8)), "dt": 0.1, "stamps": np.arange(3.0)}, "stamps"),
    ({"joint_names": None, "positions": np.zeros((3, 8)), "velocities": np.zeros((3, 8))}, "velocities"),
    ({"ee_poses": np.zeros((3, 4))}, "ee_poses"),
    ({"ee_poses": None, "gripper": np.zeros(5)}, "gripper"),
    ({"ee_poses": None, "gripper": np.array(["open"] * 3)}, "gripper"),    # used to raise a bare ValueError
    ({"joint_names": None, "velocities": np.zeros((3, 8)), "dt": np.array("0.1 s")}, "dt"),   # same
    ({"joint_names": None, "positions": None, "colour": np.zeros(3)}, "colour"),
    ({}, "positions"),
])
def test_malformed_trajectory_files_name_the_key(panda, tmp_path, arrays, key):
    defaults = {"joint_names": np.array(panda.joint_names), "positions": np.tile(panda.home(), (3, 1)),
                "ee_poses": np.tile(panda.ee_pose(panda.home()), (3, 1, 1))}
    arrays = {k: (defaults[k] if v is None else v) for k, v in arrays.items()}
    np.savez(tmp_path / "t.npz", **arrays)
    with pytest.raises(InputError) as err:
        load_trajectory_file(tmp_path / "t.npz", panda)
    assert err.value.field == key, str(err.value)


def test_unreadable_trajectory_file(panda, tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable .npz") as err:
        load_trajectory_file(tmp_path / "junk.npz", panda)
    assert err.value.field == "path"
    with pytest.raises(InputError, match="does not exist"):
        load_trajectory_file(tmp_path / "missing.npz", panda)


# ---------------------------------------------------------------- sample_at: robot in step with frames
def test_sample_at_interpolates_at_each_frames_own_stamp():
    from kinema4d_core.trajectory import JointTrajectory, sample_at
    traj = JointTrajectory(("a", "b"), np.array([[0.0, 1.0], [1.0, 3.0], [3.0, 3.0]]), np.array([10.0, 11.0, 12.0]))
    out = sample_at(traj, [10.25, 11.5, 12.0])
    np.testing.assert_allclose(out.positions, [[0.25, 1.5], [2.0, 3.0], [3.0, 3.0]])
    np.testing.assert_allclose(out.stamps, [10.25, 11.5, 12.0])


def test_sample_at_refuses_frames_outside_the_joint_states():
    from kinema4d_core.errors import InputError
    from kinema4d_core.trajectory import JointTrajectory, sample_at
    traj = JointTrajectory(("a",), np.array([[0.0], [1.0]]), np.array([0.0, 1.0]))
    np.testing.assert_allclose(sample_at(traj, [1.01], max_extrapolation=0.02).positions, [[1.0]])
    with pytest.raises(InputError, match="frame 1 .* outside the joint states"):
        sample_at(traj, [0.5, 1.5], max_extrapolation=0.02)
    with pytest.raises(InputError, match="no stamps"):
        sample_at(JointTrajectory(("a",), np.zeros((2, 1))), [0.5])
    with pytest.raises(InputError, match="not strictly increasing"):
        sample_at(traj, [0.5, 0.4])
