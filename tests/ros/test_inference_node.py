"""inference_node as a real process: Simulate action (feedback, cancel, busy rejection, result files),
recording services, and survival of bad camera images."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tests.ros.rosproc import NodeProcess, RosClient, publish_until, wait_for

pytestmark = pytest.mark.ros


@pytest.fixture
def small_calibration(tmp_path, repo_root):
    """The sim camera at 96x144 (same extrinsics): small images keep the test fast."""
    from kinema4d_core.camera import load_calibration, save_calibration

    camera = load_calibration(repo_root / "calibration/sim_camera.yaml").resized(96, 144)
    path = tmp_path / "camera.yaml"
    save_calibration(camera, path)
    return path, camera


@pytest.fixture
def inference(ros_env, tmp_path, small_calibration):
    path, camera = small_calibration
    runs = tmp_path / "runs"
    proc = NodeProcess("inference_node", ros_env, tmp_path / "inference.log", ros_args=[
        "-p", f"calibration_file:={path}", "-p", "backend:=static-scene", "-p", f"output_root:={runs}",
        "-p", "n_frames:=49", "-p", "write_points:=false"])
    client = RosClient(ros_env)
    yield proc, client, camera, runs
    client.close()
    proc.stop()


def _status_and_image_pub(client, camera):
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from kinema4d_ros import qos

    status, done = [], []
    client.node.create_subscription(String, "kinema4d/inference/status", lambda m: status.append(json.loads(m.data)),
                                    qos.LATCHED)
    client.node.create_subscription(String, "kinema4d/run_done", lambda m: done.append(json.loads(m.data)),
                                    qos.LATCHED)
    pub = client.node.create_publisher(Image, "camera/image_raw", 10)
    wait_for(lambda: pub.get_subscription_count() > 0, 20, "inference_node to subscribe to camera/image_raw")
    return status, done, pub


def _rgb_image(camera):
    from kinema4d_ros.conversions import numpy_to_image

    rng = np.random.default_rng(0)
    return numpy_to_image(rng.integers(0, 255, (camera.height, camera.width, 3), dtype=np.uint8), "rgb8",
                          camera.child_frame)


def _goal(robot):
    from builtin_interfaces.msg import Duration
    from trajectory_msgs.msg import JointTrajectoryPoint

    from kinema4d_interfaces.action import Simulate

    goal = Simulate.Goal()
    goal.trajectory.joint_names = list(robot.joint_names)
    q0 = robot.home()
    for i in range(5):
        q = np.clip(q0 + 0.05 * i, robot.lower, robot.upper)
        goal.trajectory.points.append(JointTrajectoryPoint(positions=[float(v) for v in q],
                                                           time_from_start=Duration(sec=i)))
    return goal


def test_simulate_action_feedback_cancel_busy_rejection_and_result(inference):
    from rclpy.action import ActionClient

    from kinema4d_core.robot import load_robot
    from kinema4d_core.rollout import load_rollout
    from kinema4d_interfaces.action import Simulate

    proc, client, camera, runs = inference
    status, done, pub_img = _status_and_image_pub(client, camera)
    publish_until(pub_img, lambda: _rgb_image(camera), lambda: status and status[-1]["has_image"], 20,
                  "the node to hold a camera frame")
    action = ActionClient(client.node, Simulate, "kinema4d/simulate")
    assert action.wait_for_server(timeout_sec=20), "kinema4d/simulate server not available"
    robot = load_robot("panda")

    # Goal 1: accepted, gives feedback, then cancelled mid-way.
    feedback1: list = []
    handle1 = wait_for(_done(action.send_goal_async(_goal(robot), feedback_callback=feedback1.append)), 20,
                       "goal 1 response").result()
    assert handle1.accepted
    wait_for(lambda: feedback1, 20, "feedback for goal 1")
    # Goal 2 while goal 1 runs: rejected clearly (not queued).
    handle2 = wait_for(_done(action.send_goal_async(_goal(robot))), 20, "goal 2 response").result()
    assert not handle2.accepted
    wait_for(_done(handle1.cancel_goal_async()), 20, "cancel response")
    result1 = wait_for(_done(handle1.get_result_async()), 60, "goal 1 result").result()
    assert result1.result.status == "canceled" and not result1.result.success
    assert "rejected Simulate goal: busy" in proc.output()

    # Goal 3 after the cancel: completes, with feedback and complete result files.
    feedback3: list = []
    handle3 = wait_for(_done(action.send_goal_async(_goal(robot), feedback_callback=feedback3.append)), 20,
                       "goal 3 response").result()
    assert handle3.accepted
    result3 = wait_for(_done(handle3.get_result_async()), 120, "goal 3 result").result().result
    assert result3.success and result3.status == "succeeded", result3.message
    assert result3.frames == 49 and result3.backend == "static-scene" and result3.duration_s > 0
    stages = {f.feedback.stage for f in feedback3}
    assert {"preparing", "projecting", "writing"} <= stages
    out = runs / result3.output_dir.split("/")[-1]
    assert str(out) == result3.output_dir
    for name in ("rollout.npz", "rgb.mp4", "pointmap.mp4", "side_by_side.mp4", "run.json"):
        assert (out / name).is_file(), name
    rollout = load_rollout(out)
    assert rollout.rgb.shape == (49, camera.height, camera.width, 3)
    assert not any(p.name.startswith(".") for p in runs.iterdir()), "no staging folder may be left behind"
    assert len([p for p in runs.iterdir()]) == 1, "the cancelled goal must not leave a run folder"
    wait_for(lambda: any(d["run_id"] in result3.output_dir and d["success"] for d in done), 10, "run_done")
    action.destroy()


def test_bad_images_are_rejected_and_recording_is_simulated(inference):
    from sensor_msgs.msg import Image, JointState
    from std_srvs.srv import Trigger

    from kinema4d_core.robot import load_robot

    proc, client, camera, runs = inference
    status, done, pub_img = _status_and_image_pub(client, camera)
    bad = Image(height=camera.height, width=camera.width, encoding="yuv422", step=camera.width * 2,
                data=bytes(camera.height * camera.width * 2))
    publish_until(pub_img, lambda: bad, lambda: status and status[-1]["rejected"].get("image", 0) >= 1, 20,
                  "the yuv422 image to be rejected")
    assert not status[-1]["has_image"]
    wait_for(lambda: "yuv422" in proc.output(), 10, "the rejection reason in the log")
    publish_until(pub_img, lambda: _rgb_image(camera), lambda: status[-1]["has_image"], 20,
                  "a good rgb8 image to be accepted after the bad one")

    start = client.node.create_client(Trigger, "kinema4d/record/start")
    stop = client.node.create_client(Trigger, "kinema4d/record/stop")
    assert start.wait_for_service(timeout_sec=20) and stop.wait_for_service(timeout_sec=20)
    resp = wait_for(_done(start.call_async(Trigger.Request())), 10, "record/start").result()
    assert resp.success
    robot = load_robot("panda")
    pub_js = client.node.create_publisher(JointState, "joint_states", 10)
    wait_for(lambda: pub_js.get_subscription_count() > 0, 20, "subscription to joint_states")
    for i in range(20):
        q = np.clip(robot.home() + 0.01 * i, robot.lower, robot.upper)
        msg = JointState(name=list(robot.joint_names), position=[float(v) for v in q])
        msg.header.stamp = client.node.get_clock().now().to_msg()
        pub_js.publish(msg)
        time.sleep(0.05)
    wait_for(lambda: (status[-1].get("recording_samples") or 0) >= 10, 10, "joint states to be recorded")
    resp = wait_for(_done(stop.call_async(Trigger.Request())), 10, "record/stop").result()
    assert resp.success, resp.message
    info = json.loads(resp.message)
    summary = wait_for(lambda: next((d for d in done if d["run_id"] == info["run_id"]), None), 120,
                       "run_done for the recording")
    assert summary["success"], summary["message"]
    assert summary["source"] == "recording" and summary["frames"] == 49
    assert (runs / info["run_id"] / "rollout.npz").is_file()
    assert proc.alive()


def _done(future):
    return lambda: future if future.done() else None


def test_prediction_starts_at_the_conditioning_images_stamp_or_now_without_one():
    """Frame 0 of a prediction is stamped with the camera image it was conditioned on; an image
    without a stamp (0) falls back to the node clock (the full node path: test_ros_outputs)."""
    from builtin_interfaces.msg import Time as TimeMsg
    from rclpy.clock import Clock, ClockType

    from kinema4d_ros.nodes.inference_node import prediction_start

    clock = Clock(clock_type=ClockType.ROS_TIME)
    start = prediction_start(TimeMsg(sec=1_600_000_000, nanosec=5), clock)
    assert start.nanoseconds == 1_600_000_000 * 1_000_000_000 + 5 and start.clock_type == ClockType.ROS_TIME
    before = clock.now().nanoseconds
    for missing in (TimeMsg(), None):
        assert before <= prediction_start(missing, clock).nanoseconds <= clock.now().nanoseconds
