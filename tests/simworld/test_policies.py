"""Scripted policies of different quality: aim-Xcm plans from a cube position off by X in a seeded
direction; scripted is unchanged; unknown names are refused with the known ones."""

from __future__ import annotations

import numpy as np
import pytest

from kinema4d_core.errors import InputError
from kinema4d_core.robot import load_robot
from kinema4d_core.simworld import SimConfig
from kinema4d_core.simworld import tasks as T


@pytest.fixture(scope="module")
def robot():
    return load_robot("panda")


def test_aim_policies_plan_from_a_seeded_believed_cube_position(robot):
    cfg = SimConfig()
    nominal = np.array(cfg.cube_nominal_xy)
    assert T.believed_cube_xy("scripted", cfg, 5) == tuple(cfg.cube_nominal_xy)
    for seed in (0, 1):
        two, four = (np.array(T.believed_cube_xy(p, cfg, seed)) for p in ("aim-2cm", "aim-4cm"))
        assert np.linalg.norm(two - nominal) == pytest.approx(0.02)
        assert np.linalg.norm(four - nominal) == pytest.approx(0.04)
        np.testing.assert_allclose(four - nominal, 2 * (two - nominal))   # one direction per seed
    assert T.believed_cube_xy("aim-4cm", cfg, 0) != T.believed_cube_xy("aim-4cm", cfg, 1)
    # the default is the scripted plan, and a policy's plan is the same every time
    base = T.plan("push", cfg, robot, 8)
    assert base.policy == "scripted" and np.array_equal(base.q, T.plan("push", cfg, robot, 8, "scripted", 3).q)
    aim = T.plan("push", cfg, robot, 8, policy="aim-4cm", seed=1)
    assert np.array_equal(aim.q, T.plan("push", cfg, robot, 8, policy="aim-4cm", seed=1).q)
    assert not np.allclose(aim.q, base.q) and aim.believed_cube_xy == T.believed_cube_xy("aim-4cm", cfg, 1)
    # the push keyframes move with the believed cube (x of the approach = believed x)
    np.testing.assert_allclose(aim.ee_poses[2, 0, 3] - base.ee_poses[2, 0, 3],
                               aim.believed_cube_xy[0] - nominal[0], atol=0.01)


def test_unknown_policies_are_refused_with_the_known_ones(robot, small_world):
    from kinema4d_core.evaluation import sim_jobs

    with pytest.raises(InputError, match="aim-2cm") as err:
        T.plan("push", SimConfig(), robot, 8, policy="aim-3cm")
    assert err.value.field == "policy" and "scripted" in str(err.value)
    with pytest.raises(InputError, match="unknown policy 'sloppy'"):
        small_world.run_episode("push", 4, 0, policy="sloppy")
    with pytest.raises(InputError, match="unknown policy"):
        sim_jobs(1, ["push"], policy=["scripted", "nope"])
    with pytest.raises(InputError, match="once"):
        sim_jobs(1, ["push"], policy=["scripted", "scripted"])
    jobs = sim_jobs(2, ["push", "pick_place"], policy=["scripted", "aim-2cm"], n_frames=4)
    assert len({j.name for j in jobs}) == len(jobs) == 8 and "push_aim-2cm_001" in {j.name for j in jobs}
    assert [j.name for j in sim_jobs(1, ["push"])] == ["push_scripted_000"]   # one policy: names as before
    held_out = sim_jobs(2, ["push"], first_seed=24)
    assert [j.params["seed"] for j in held_out] == [24, 25] and held_out[0].name == "push_scripted_024"
    with pytest.raises(InputError, match="first seed"):
        sim_jobs(1, ["push"], first_seed=-1)


def test_an_aim_episode_records_its_policy_and_differs_from_the_scripted_one(small_world, tmp_path):
    from kinema4d_core.simworld import load_episode, save_episode

    scripted = small_world.run_episode("push", 6, 0)
    aimed = small_world.run_episode("push", 6, 0, policy="aim-8cm")
    assert scripted.policy == "scripted" and aimed.policy == "aim-8cm"
    np.testing.assert_array_equal(aimed.object_poses[0], scripted.object_poses[0])   # same real cube
    assert not np.allclose(aimed.joint_targets, scripted.joint_targets)
    save_episode(aimed, tmp_path / "ep.npz")
    assert load_episode(tmp_path / "ep.npz").policy == "aim-8cm"


def test_the_cli_checks_policies_before_running_anything(tmp_path, capsys):
    from kinema4d_core.cli import main

    out = str(tmp_path / "x")
    assert main(["evaluate", out, "--sim-benchmark", "1", "--backends", "static-scene",
                 "--policies", "scripted,aim-3cm"]) == 2
    assert "--policies" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["evaluate", out, "--sim-benchmark", "1", "--policies", "scripted,scripted"]) == 2
    assert main(["evaluate", out, "--policies", "aim-2cm"]) == 2      # a finished folder runs no policy
    assert "add --sim-benchmark" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["evaluate", out, "--first-seed", "24"]) == 2
    assert "--first-seed" in capsys.readouterr().err and not (tmp_path / "x").exists()
