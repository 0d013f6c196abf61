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
