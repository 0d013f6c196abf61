"""bag_player_node as a real process on loopback DDS with its own domain id: it republishes a
recorded bag (sqlite3 and mcap) with /clock."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from tests.replay.replay_helpers import JOINTS, frame_image, write_recording
from tests.ros.rosproc import NodeProcess, RosClient, wait_for

pytestmark = pytest.mark.ros


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_player_republishes_joint_states_images_and_clock(tmp_path, ros_env, storage):
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String

    bag = write_recording(tmp_path / "rec", storage=storage, episodes=[(100.0, 10)], h=12, w=16)
    client = RosClient(ros_env)
    got: dict[str, list] = {"joints": [], "images": [], "clock": [], "status": []}
    lock = threading.Lock()

    def keep(key):
        def cb(msg):
            with lock:
                got[key].append(msg)
        return cb

    n = client.node
    n.create_subscription(JointState, "/joint_states", keep("joints"), 50)
    n.create_subscription(Image, "/camera/image_raw", keep("images"), 50)
    n.create_subscription(Clock, "/clock", keep("clock"), 200)
    n.create_subscription(String, "bag_player/status", keep("status"),
                          QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    proc = NodeProcess("bag_player_node", ros_env, tmp_path / "player.log",
                       ros_args=["-p", f"bag_path:={bag}", "-p", "rate:=2.0", "-p", "start_delay_s:=0.5",
                                 "-p", "wait_for_subscribers_s:=20.0", "-p", "topics:=[/joint_states,/camera/image_raw]"])
    try:
        def finished():
            with lock:
                return any(json.loads(m.data)["state"] == "finished" for m in got["status"])
        wait_for(finished, 30, f"the player to finish; log:\n{proc.output()}")
        wait_for(lambda: len(got["joints"]) == 20 and len(got["images"]) == 10, 15, "all messages")

        def last_clock() -> float:
            with lock:
                return got["clock"][-1].clock.sec + 1e-9 * got["clock"][-1].clock.nanosec if got["clock"] else 0.0
        # /clock is another topic: its last messages may still be in flight when the others are in
        wait_for(lambda: last_clock() >= 100.954 - 1e-6, 15, "the final /clock")
        with lock:
            names = tuple(got["joints"][0].name)
            stamps = [m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for m in got["images"]]
            img = got["images"][3]
            clock = [c.clock.sec + 1e-9 * c.clock.nanosec for c in got["clock"]]
        assert names == JOINTS
        np.testing.assert_allclose(stamps, 100.0 + np.arange(10) / 10.0, atol=1e-6)
        arr = np.frombuffer(bytes(img.data), np.uint8).reshape(img.height, img.width, 3)
        np.testing.assert_array_equal(arr, frame_image(3, 12, 16))
        # /clock follows the bag's time and never runs backwards without loop
        # the played topics span 100.0 s (first image) to 100.954 s (last joint state)
        assert clock[0] == pytest.approx(100.0, abs=0.01) and clock[-1] == pytest.approx(100.954, abs=1e-6)
        assert all(b >= a for a, b in zip(clock, clock[1:]))
        assert proc.alive()
    finally:
        code = proc.stop()
        client.close()
    assert code == 0, proc.output()


def test_player_refuses_a_missing_bag(tmp_path, ros_env):
    proc = NodeProcess("bag_player_node", ros_env, tmp_path / "player.log",
                       ros_args=["-p", f"bag_path:={tmp_path / 'nope'}"])
    proc.proc.wait(30)
    assert proc.proc.returncode == 2
    assert "bag_path" in proc.output() and "does not exist" in proc.output()
    proc.stop()


def _bag_with(path, connections):
    """A sqlite3 bag with ``connections`` = [(topic, msgtype, msgdef or None, [raw CDR messages])]."""
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    for _topic, msgtype, msgdef, _msgs in connections:
        if msgdef is not None:
            store.register(get_types_from_msg(msgdef, msgtype))
    with Writer(path, version=9) as writer:
        for topic, msgtype, _msgdef, msgs in connections:
            conn = writer.add_connection(topic, msgtype, typestore=store)
            for i, raw in enumerate(msgs):
                writer.write(conn, 1_000_000_000 + i, raw)
    return path


def test_player_finishes_when_the_selected_topics_hold_no_messages_even_looping(tmp_path, ros_env):
    """A loop over no messages must end ("finished"), not spin republishing its status."""
    from std_msgs.msg import String

    from kinema4d_ros import qos

    bag = _bag_with(tmp_path / "bag", [("/empty", "std_msgs/msg/String", None, [])])
    client = RosClient(ros_env)
    states: list[str] = []
    client.node.create_subscription(String, "bag_player/status", lambda m: states.append(json.loads(m.data)["state"]),
                                    qos.LATCHED)
    proc = NodeProcess("bag_player_node", ros_env, tmp_path / "player.log",
                       ros_args=["-p", f"bag_path:={bag}", "-p", "loop:=true", "-p", "start_delay_s:=0.0"])
    try:
        wait_for(lambda: "finished" in states, 30, f"the player to finish; log:\n{proc.output()}")
        assert proc.alive()
        assert "hold no messages" in proc.output()
    finally:
        code = proc.stop()
        client.close()
    assert code == 0, proc.output()


def test_player_refuses_a_bag_with_no_playable_topic(tmp_path, ros_env):
    """Every topic of a type without an installed message package: exit 2 naming `topics`
    (an empty publisher set must not turn into 'play every topic')."""
    bag = _bag_with(tmp_path / "bag", [("/custom", "kinema4d_test_msgs/msg/Nope", "float64 x\n",
                                        [b"\x00\x01\x00\x00" + bytes(8)])])
    proc = NodeProcess("bag_player_node", ros_env, tmp_path / "player.log", ros_args=["-p", f"bag_path:={bag}"])
    try:
        proc.proc.wait(30)
    finally:
        code = proc.stop()
    out = proc.output()
    assert code == 2, out
    assert "topics" in out and "kinema4d_test_msgs/msg/Nope" in out


def test_player_parameters_are_described_and_validated(tmp_path, ros_env):
    bag = write_recording(tmp_path / "rec", episodes=[(100.0, 2)], h=4, w=4)
    proc = NodeProcess("bag_player_node", ros_env, tmp_path / "player.log",
                       ros_args=["-p", f"bag_path:={bag}", "-p", "clock_period_s:=0.0"])
    try:
        proc.proc.wait(30)
    finally:
        code = proc.stop()
    out = proc.output()
    assert code == 2, out
    assert "clock_period_s" in out and "must be > 0" in out
