"""joint_merge: split topics, renamed joints and fixed values -> one joint vector; errors name the fix."""

from __future__ import annotations

import numpy as np
import pytest

from kinema4d_core.errors import ConfigError, InputError
from kinema4d_core.joint_merge import JointMerger, JointNaming, JointSample, merge_samples, parse_pairs

PANDA = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1"]
ARM = [f"fr3_joint{i}" for i in range(1, 8)]


def test_arm_and_gripper_topics_with_prefixed_names_merge_in_config_order():
    naming = JointNaming.from_params(prefix="fr3_:panda_")
    arm = JointSample(list(reversed(ARM)), list(reversed(np.arange(7) * 0.1)), 10.0, "/joint_states")
    grip = JointSample(["fr3_finger_joint1", "fr3_finger_joint2"], [0.03, 0.03], 9.99, "/franka_gripper/joint_states")
    out = merge_samples(PANDA, [arm, grip], naming=naming, extra_known=["panda_finger_joint2"])
    np.testing.assert_allclose(out.q, [0, .1, .2, .3, .4, .5, .6, .03])
    assert out.stamp == 10.0 and out.fixed == ()


def test_missing_gripper_names_the_joint_and_the_parameters_then_a_fixed_value_fills_it():
    arm = JointSample([f"panda_joint{i}" for i in range(1, 8)], np.zeros(7), 1.0)
    with pytest.raises(InputError) as err:
        merge_samples(PANDA, [arm])
    text = str(err.value)
    assert "panda_finger_joint1" in text and "fixed_joint_values" in text and "joint_state_topics" in text
    out = merge_samples(PANDA, [arm], fixed=parse_pairs("panda_finger_joint1:0.04", "fixed_joint_values",
                                                         numeric=True))
    assert out.q[-1] == 0.04 and out.fixed == ("panda_finger_joint1",)


def test_a_published_value_wins_over_the_fixed_one_and_newer_stamps_win_per_joint():
    m = JointMerger(PANDA, fixed={"panda_finger_joint1": 0.04})
    m.add(JointSample(PANDA, np.full(8, 0.2), 5.0))
    m.add(JointSample(["panda_joint1"], [0.9], 4.0))         # older: ignored for that joint
    m.add(JointSample(["panda_finger_joint1"], [0.01], 6.0))
    out = m.merged()
    assert out.q[0] == 0.2 and out.q[-1] == 0.01 and out.stamp == 6.0 and out.fixed == ()


def test_explicit_map_beats_prefix_and_unknown_names_are_ignored_unless_strict():
    naming = JointNaming.from_params(["fr3_joint1:panda_joint2", "gripper_width=panda_finger_joint1"], "fr3_:panda_")
    assert naming.config_name("fr3_joint1") == "panda_joint2"
    assert naming.config_name("fr3_joint3") == "panda_joint3"
    assert naming.config_name("gripper_width") == "panda_finger_joint1"
    m = JointMerger(PANDA)
    assert m.add(JointSample(PANDA + ["camera_pan"], np.zeros(9))) == ("camera_pan",)
    with pytest.raises(InputError, match="camera_pan"):
        JointMerger(PANDA, strict=True).add(JointSample(PANDA + ["camera_pan"], np.zeros(9)))


def test_a_sample_with_none_of_the_robots_joints_points_at_the_prefix_parameter():
    with pytest.raises(InputError) as err:
        JointMerger(PANDA).add(JointSample(ARM, np.zeros(7), source="/joint_states"))
    assert "fr3_joint1" in str(err.value) and "joint_name_prefix" in str(err.value)
    assert "/joint_states" in str(err.value)


@pytest.mark.parametrize("sample,match", [
    (JointSample(PANDA, np.zeros(7)), "8 names but 7 positions"),
    (JointSample(PANDA[:1] * 2, [0.0, 0.0]), "more than once"),
    (JointSample(PANDA, [np.nan] + [0.0] * 7), "non-finite"),
])
def test_malformed_samples_are_refused_and_store_nothing(sample, match):
    m = JointMerger(PANDA, fixed={n: 0.0 for n in PANDA})
    with pytest.raises(InputError, match=match):
        m.add(sample)
    assert m.merged().fixed == tuple(PANDA)       # nothing stored: every joint still takes its fixed value


def test_bad_configuration_names_the_parameter():
    with pytest.raises(ConfigError, match="fixed_joint_values"):
        JointMerger(PANDA, fixed={"no_such_joint": 0.0})
    with pytest.raises(ConfigError, match="joint_name_map"):
        JointMerger(PANDA, naming=JointNaming({"a": "no_such_joint"}))
    with pytest.raises(ConfigError, match="fixed_joint_values"):
        parse_pairs("panda_finger_joint1:wide", "fixed_joint_values", numeric=True)
    with pytest.raises(ConfigError, match="joint_name_map"):
        JointNaming.from_params("fr3_joint1")


def test_stale_joint_counts_as_missing_when_a_gap_is_set_and_reset_forgets():
    m = JointMerger(PANDA, max_gap_s=0.5)
    m.add(JointSample(PANDA, np.zeros(8), 1.0))
    m.add(JointSample(PANDA[:7], np.ones(7), 2.0))
    with pytest.raises(InputError, match="older than 0.5 s.*panda_finger_joint1"):
        m.merged()
    m.reset()
    with pytest.raises(InputError, match="no value yet"):
        m.merged()
