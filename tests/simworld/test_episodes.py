"""Scripted episodes: the push moves the cube, outcomes come from physics, runs are deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from kinema4d_core.errors import InputError
from kinema4d_core.robot import load_robot
from kinema4d_core.simworld import load_episode, save_episode


def test_episode_arrays_have_the_contract_shapes(push_episodes, push_seeds, small_world):
    ep = push_episodes[push_seeds[0]]
    T, H, W = 49, small_world.config.height, small_world.config.width
    assert ep.rgb.shape == (T, H, W, 3) and ep.rgb.dtype == np.uint8
    assert ep.depth.shape == (T, H, W) and ep.robot_mask.shape == (T, H, W) and ep.robot_mask.dtype == bool
    assert ep.joint_positions.shape == (T, 8) and ep.object_poses.shape == (T, 7)
    assert ep.joint_names == load_robot("panda").joint_names
    assert np.allclose(np.diff(ep.stamps), 1 / 12, atol=1e-3)      # one frame per 1/12 s of sim time
    assert all(m.any() for m in ep.robot_mask)                      # the robot is always in view


def test_push_moves_the_cube(push_episodes):
    for ep in push_episodes.values():
        assert ep.metrics["cube_displacement_m"] > 0.05
        moved = np.linalg.norm(ep.object_poses[-1, :2] - ep.object_poses[0, :2])
        assert moved == pytest.approx(ep.metrics["cube_displacement_m"])


def test_success_and_failure_are_judged_from_the_cube(push_episodes, push_seeds, small_world):
    good, bad = push_episodes[push_seeds[0]], push_episodes[push_seeds[1]]
    cfg = small_world.config
    assert good.success and not bad.success
    for ep in (good, bad):
        offset = np.abs(ep.object_poses[-1, :2] - np.array(cfg.target_xy))
        assert ep.success == bool(np.all(offset <= cfg.target_half_size))


def test_robot_follows_the_ik_plan(push_episodes, push_seeds):
    ep = push_episodes[push_seeds[0]]
    robot = load_robot("panda")
    # the arm reaches each commanded pose within a few millimetres by the end of the episode
    planned = robot.ee_pose(ep.joint_targets[-1])[:3, 3]
    reached = robot.ee_pose(ep.joint_positions[-1])[:3, 3]
    assert np.linalg.norm(planned - reached) < 0.01
    assert np.abs(ep.joint_positions - ep.joint_targets).max() < 0.3


def test_same_seed_same_episode(small_world, push_episodes, push_seeds):
    again = small_world.run_episode("push", 49, push_seeds[1])
    first = push_episodes[push_seeds[1]]
    assert np.array_equal(again.joint_positions, first.joint_positions)
    assert np.array_equal(again.object_poses, first.object_poses)
    assert np.array_equal(again.rgb, first.rgb)
    assert again.summary() == first.summary()


def test_pick_place_lifts_the_cube(small_world):
    ep = small_world.run_episode("pick_place", 49, 1)
    assert ep.metrics["max_lift_m"] > 0.05
    assert ep.success == ep.metrics["in_target"]
    assert ep.joint_positions[:, -1].min() < 0.03   # fingers closed on the cube (5 cm wide: ~0.025 each)


def test_episode_round_trips_through_npz(tmp_path, push_episodes, push_seeds):
    ep = push_episodes[push_seeds[0]]
    path = tmp_path / "ep.npz"
    save_episode(ep, path)
    back = load_episode(path)
    assert back.summary() == ep.summary() and back.joint_names == ep.joint_names
    for name in ("rgb", "depth", "robot_mask", "joint_positions", "object_poses", "K", "T_base_camera"):
        assert np.array_equal(getattr(back, name), getattr(ep, name)), name
    assert [p.name for p in tmp_path.iterdir()] == ["ep.npz"]      # no temporary left behind


def test_loading_a_foreign_npz_names_the_problem(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, rgb=np.zeros((1, 2, 2, 3), np.uint8))
    with pytest.raises(InputError, match="lacks") as err:
        load_episode(path)
    # said once, not wrapped again as "cannot read episode file: <path>: episode file lacks ..."
    assert "cannot read" not in str(err.value) and str(err.value).count(str(path)) == 1
