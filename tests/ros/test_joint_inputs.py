"""Inputs as real drivers publish them, to projector_node as a real process over loopback DDS:
an arm-only /joint_states with prefixed names plus a separate gripper topic, and a future stamp
followed by normal ones (output keeps flowing)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.ros.rosproc import NodeProcess, RosClient, publish_until, wait_for

pytestmark = pytest.mark.ros

CALIBRATION = "calibration/sim_camera.yaml"
GRIPPER_TOPIC = "franka_gripper/joint_states"


def _io(client, topics=("joint_states", GRIPPER_TOPIC)):
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String

    from kinema4d_ros import qos

    got = {"pointmap": [], "mask": [], "status": []}
    node = client.node
    node.create_subscription(Image, "kinema4d/robot_pointmap", got["pointmap"].append, qos.stream_in(5))
    node.create_subscription(Image, "kinema4d/robot_mask", got["mask"].append, qos.stream_in(5))
    node.create_subscription(String, "kinema4d/projector/status", lambda m: got["status"].append(json.loads(m.data)),
                             qos.LATCHED)
    pubs = {t: node.create_publisher(JointState, t, 10) for t in topics}
    wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 20,
             f"projector_node to subscribe to {list(topics)}")
    return got, pubs


def _js(client, names, positions, offset_s: float = 0.0):
    from sensor_msgs.msg import JointState

    from kinema4d_ros.conversions import seconds_to_stamp

    msg = JointState(name=list(names), position=[float(v) for v in positions])
    msg.header.stamp = seconds_to_stamp(client.node.get_clock().now().nanoseconds * 1e-9 + offset_s)
    return msg


def _counter(got, group, kind):
    return got["status"][-1].get(group, {}).get(kind, 0) if got["status"] else 0


@pytest.fixture
def driver_projector(ros_env, tmp_path, repo_root):
    """projector_node configured for a franka_ros2-like driver: fr3_ names, gripper on its own topic."""
    proc = NodeProcess("projector_node", ros_env, tmp_path / "projector.log", ros_args=[
        "-p", f"calibration_file:={repo_root / CALIBRATION}", "-p", "use_camera_info:=false",
        "-p", "max_stamp_age_s:=5.0", "-p", f"joint_state_topics:=[joint_states, {GRIPPER_TOPIC}]",
        "-p", "joint_name_prefix:=fr3_:panda_"])
    client = RosClient(ros_env)
    yield proc, client
    client.close()
    proc.stop()


def test_prefixed_arm_and_separate_gripper_topic_give_the_core_render(driver_projector, repo_root):
    from kinema4d_core.camera import load_calibration
    from kinema4d_core.render import RobotRenderer
    from kinema4d_core.robot import load_robot
    from kinema4d_ros.conversions import image_to_numpy

    proc, client = driver_projector
    got, pubs = _io(client)
    robot = load_robot("panda")
    q = np.clip(robot.home() + 0.1, robot.lower, robot.upper)
    arm_names = [n.replace("panda_", "fr3_") for n in robot.joint_names[:7]]
    grip = ["fr3_finger_joint1", "fr3_finger_joint2"]

    # the arm alone is not a complete state: the error names the gripper joint and the fix
    publish_until(pubs["joint_states"], lambda: _js(client, arm_names, q[:7]),
                  lambda: _counter(got, "rejected", "joint_state") >= 1, 20, "the arm-only state to be refused")
    log = wait_for(lambda: (lambda t: t if "fixed_joint_values" in t else "")(proc.output()), 10, "the log line")
    assert "panda_finger_joint1" in log
    assert not got["pointmap"]

    def send_both():
        pubs[GRIPPER_TOPIC].publish(_js(client, grip, [q[7], q[7]]))
        return _js(client, arm_names, q[:7])

    publish_until(pubs["joint_states"], send_both, lambda: got["pointmap"] and got["mask"], 30,
                  "a pointmap from the merged arm + gripper topics", period=1.0)
    camera = load_calibration(repo_root / CALIBRATION)
    expected = RobotRenderer(camera, robot.meshes).render_base(robot.mesh_poses(q))
    assert expected.mask.sum() > 50
    np.testing.assert_array_equal(image_to_numpy(got["mask"][-1]) > 0, expected.mask)
    np.testing.assert_allclose(image_to_numpy(got["pointmap"][-1]), expected.pointmap, atol=1e-5)
    assert proc.alive()


@pytest.fixture
def fixed_gripper_projector(ros_env, tmp_path, repo_root):
    """A UR-like arm without gripper joints on /joint_states: the gripper gets a fixed value."""
    proc = NodeProcess("projector_node", ros_env, tmp_path / "projector.log", ros_args=[
        "-p", f"calibration_file:={repo_root / CALIBRATION}", "-p", "use_camera_info:=false",
        "-p", "max_stamp_age_s:=5.0", "-p", "fixed_joint_values:=panda_finger_joint1:0.04",
        "-p", "clock_skew_tolerance_s:=0.5"])
    client = RosClient(ros_env)
    yield proc, client
    client.close()
    proc.stop()


def test_fixed_gripper_value_and_a_future_stamp_does_not_block_later_states(fixed_gripper_projector):
    from kinema4d_core.robot import load_robot
    from kinema4d_ros.conversions import stamp_to_seconds

    proc, client = fixed_gripper_projector
    got, pubs = _io(client, ("joint_states",))
    robot = load_robot("panda")
    arm = list(robot.joint_names[:7])
    q = robot.home()[:7]
    publish_until(pubs["joint_states"], lambda: _js(client, arm, q), lambda: got["pointmap"], 30,
                  "a pointmap with the fixed gripper value", period=1.0)

    # a driver whose clock runs an hour ahead sends one state: dropped (counted), nothing blocked
    future = _js(client, arm, q, offset_s=3600.0)
    publish_until(pubs["joint_states"], lambda: future, lambda: _counter(got, "dropped", "future") >= 1, 20,
                  "the future-stamped state to be dropped")
    got["pointmap"].clear()
    sent = []
    publish_until(pubs["joint_states"], lambda: sent.append(_js(client, arm, q)) or sent[-1],
                  lambda: len(got["pointmap"]) >= 2, 30, "pointmaps for normal states after the future one",
                  period=0.5)
    stamps = [stamp_to_seconds(m.header.stamp) for m in got["pointmap"]]
    assert all(s < stamp_to_seconds(future.header.stamp) - 3000 for s in stamps)
    assert stamps == sorted(stamps)
    assert "clock_skew_tolerance_s" in proc.output()
    assert proc.alive()


def test_real_bringup_arguments_reach_every_joint_input_node():
    from kinema4d_ros import graph

    args = {"gripper_joint_states_topic": "/franka_gripper/joint_states", "joint_name_prefix": "fr3_:panda_",
            "fixed_joint_values": "panda_finger_joint1:0.04"}
    specs = {s.name: s for s in graph.nodes_for("real", args)}
    for name in ("projector_node", "inference_node", "calibration_node"):
        p = specs[name].parameters
        assert p["joint_state_topics"] == ["joint_states", "/franka_gripper/joint_states"], name
        assert p["joint_name_prefix"] == "fr3_:panda_" and p["fixed_joint_values"] == "panda_finger_joint1:0.04"
        ros_args = specs[name].ros_args()
        assert "joint_state_topics:=[joint_states, /franka_gripper/joint_states]" in ros_args
    assert "joint_state_topics" not in {k for s in graph.nodes_for("real") for k in s.parameters}


def test_joint_input_parameters_are_described_and_checked():
    from kinema4d_ros.params import JOINT_INPUT_PARAMS, STAMP_PARAMS

    specs = {s.name: s for s in (*JOINT_INPUT_PARAMS, *STAMP_PARAMS)}
    assert all(s.description for s in specs.values())
    assert "fixed_joint_values" in specs["fixed_joint_values"].error("panda_finger_joint1:wide")
    assert specs["fixed_joint_values"].error(["panda_finger_joint1:0.04", "x:1"]) is None
    assert "joint_name_map" in specs["joint_name_map"].error("fr3_joint1")
    assert "at least one" in specs["joint_state_topics"].error([""])
    assert "twice" in specs["joint_state_topics"].error(["a", "a"])
    assert specs["stamp_reset_jump_s"].error(0.0) and specs["clock_skew_tolerance_s"].error(-1.0)
