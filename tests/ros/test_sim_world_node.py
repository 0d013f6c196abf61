"""sim_world_node as a real process over loopback DDS: episodes on demand, streams with the right
encodings and frames, camera_info equal to calibration/sim_camera.yaml, sim time on /clock."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.ros.rosproc import NodeProcess, RosClient, wait_for

pytestmark = pytest.mark.ros

H, W, FRAMES = 120, 180, 13


@pytest.fixture
def sim_node(ros_env, tmp_path):
    proc = NodeProcess("sim_world_node", ros_env, tmp_path / "sim_world.log",
                       ros_args=["-p", f"width:={W}", "-p", f"height:={H}", "-p", "publish_clock:=true",
                                 "-p", f"episode_frames:={FRAMES}", "-p", "seed:=2", "-p", "rate_hz:=12.0"])
    client = RosClient(ros_env)
    yield proc, client
    client.close()
    proc.stop()


def _subscribe(client) -> dict[str, list]:
    from geometry_msgs.msg import PoseArray
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image, JointState

    from kinema4d_ros import qos

    got: dict[str, list] = {k: [] for k in ("joints", "rgb", "depth", "mask", "info", "poses", "clock")}
    node = client.node
    node.create_subscription(JointState, "joint_states", got["joints"].append, 50)
    node.create_subscription(Image, "camera/image_raw", got["rgb"].append, qos.stream_in(50))
    node.create_subscription(Image, "camera/depth/image_raw", got["depth"].append, qos.stream_in(50))
    node.create_subscription(Image, "sim/robot_mask", got["mask"].append, qos.stream_in(50))
    node.create_subscription(CameraInfo, "camera/camera_info", got["info"].append, qos.stream_in(50))
    node.create_subscription(PoseArray, "sim/object_poses", got["poses"].append, qos.stream_in(50))
    node.create_subscription(Clock, "/clock", got["clock"].append, 50)
    return got


def test_run_episode_publishes_consistent_streams(sim_node, repo_root):
    from std_srvs.srv import Trigger

    from kinema4d_core.camera import load_calibration
    from kinema4d_core.robot import load_robot_config
    from kinema4d_ros.conversions import image_to_numpy

    proc, client = sim_node
    got = _subscribe(client)
    # idle publishing at rate_hz starts as soon as the node is up
    wait_for(lambda: len(got["rgb"]) >= 2 and got["joints"] and got["info"], 60,
             f"idle frames from sim_world_node (log: {proc.output()[-2000:]})")

    cli = client.node.create_client(Trigger, "sim_world/run_episode")
    assert cli.wait_for_service(timeout_sec=20.0)
    for v in got.values():
        v.clear()
    future = cli.call_async(Trigger.Request())
    wait_for(future.done, 120, "run_episode to return")
    response = future.result()
    assert response.success, response.message
    summary = json.loads(response.message)
    assert summary["task"] == "push" and summary["seed"] == 2 and summary["frames"] == FRAMES
    assert isinstance(summary["success"], bool) and summary["cube_displacement_m"] >= 0.0
    wait_for(lambda: len(got["rgb"]) >= FRAMES and len(got["joints"]) >= FRAMES, 20, "the episode's frames")

    joints = got["joints"][-1]
    assert list(joints.name) == list(load_robot_config("panda").joint_names)
    assert joints.header.frame_id == "panda_link0" and len(joints.position) == 8

    calib = load_calibration(repo_root / "calibration" / "sim_camera.yaml")
    optical = calib.child_frame
    rgb, depth, mask = got["rgb"][-1], got["depth"][-1], got["mask"][-1]
    assert (rgb.encoding, depth.encoding, mask.encoding) == ("rgb8", "32FC1", "mono8")
    for img in (rgb, depth, mask):
        assert img.header.frame_id == optical and (img.height, img.width) == (H, W)
    m = image_to_numpy(mask)
    assert set(np.unique(m)) <= {0, 255} and (m == 255).any()
    d = image_to_numpy(depth)
    assert np.isfinite(d).all() and 0.3 < np.median(d[d > 0]) < 5.0      # metres to the table

    info = got["info"][-1]
    small = calib.resized(H, W)
    assert info.header.frame_id == optical and (info.height, info.width) == (H, W)
    assert np.allclose(np.reshape(info.k, (3, 3)), small.K, atol=1e-6)
    assert np.allclose(info.d, 0.0)

    poses = got["poses"][-1]
    assert poses.header.frame_id == "panda_link0" and len(poses.poses) == 1
    assert abs(poses.poses[0].position.z - 0.025) < 0.02                  # the cube rests on the table

    # sim time: /clock advances with the frames, message stamps follow it
    clock = [c.clock.sec + 1e-9 * c.clock.nanosec for c in got["clock"]]
    assert len(clock) >= FRAMES and np.all(np.diff(clock) > 0)
    stamps = [j.header.stamp.sec + 1e-9 * j.header.stamp.nanosec for j in got["joints"][-FRAMES:]]
    assert np.allclose(np.diff(stamps), 1 / 12, atol=2e-3)


def test_invalid_parameter_is_rejected(sim_node):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    proc, client = sim_node
    cli = client.node.create_client(SetParameters, "sim_world_node/set_parameters")
    assert cli.wait_for_service(timeout_sec=60.0), proc.output()[-2000:]
    req = SetParameters.Request(parameters=[Parameter("task", value="juggle").to_parameter_msg()])
    future = cli.call_async(req)
    wait_for(future.done, 20, "set_parameters to answer")
    result = future.result().results[0]
    assert not result.successful and "task" in result.reason


def test_an_episode_that_raises_is_answered_and_the_worker_survives():
    """Any exception in an episode (not only Kinema4DError) is reported in the service response;
    it must not kill the worker thread (which would leave every later service call hanging)."""
    import threading
    from types import SimpleNamespace

    from kinema4d_ros.nodes.sim_world_node import SimWorldNode

    class World:
        config = SimpleNamespace(rate_hz=12.0)

        def run_episode(self, *args, **kwargs):
            raise RuntimeError("physics exploded")

    logged: list[str] = []
    fake = SimpleNamespace(world=World(), params={"rate_hz": 12.0}, _clock_offset=0.0, _stop=threading.Event(),
                           context=SimpleNamespace(ok=lambda: True),
                           get_logger=lambda: SimpleNamespace(error=logged.append, info=logged.append))
    fake._set_rate = lambda: None
    fake._shutting_down = lambda: SimWorldNode._shutting_down(fake)
    done, box = threading.Event(), {}
    SimWorldNode._run(fake, "push", 5, 0, done, box)
    assert done.is_set()
    assert box["error"] == "RuntimeError: physics exploded"
    assert logged and "physics exploded" in logged[-1]


def test_ctrl_c_during_an_episode_exits_cleanly(sim_node):
    """SIGINT while an episode runs: exit 0 at once, no thread dying on a publisher of a shut-down context."""
    import time

    from std_srvs.srv import Trigger

    proc, client = sim_node
    got = _subscribe(client)
    cli = client.node.create_client(Trigger, "sim_world/run_episode")
    assert cli.wait_for_service(timeout_sec=60.0), proc.output()[-2000:]
    cli.call_async(Trigger.Request())
    n = len(got["rgb"])
    wait_for(lambda: len(got["rgb"]) >= n + 3, 30, "episode frames")
    t0 = time.monotonic()
    code = proc.stop()
    assert time.monotonic() - t0 < 8.0
    out = proc.output()
    assert code == 0, out
    assert "Traceback" not in out, out
