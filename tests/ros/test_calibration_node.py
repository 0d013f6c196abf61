"""calibration_node as a real process over loopback DDS (own domain id via the ros_env fixture).

Specification:
- publishes the calibration file's camera pose on /tf_static (latched: a late subscriber gets it);
- calibration/reload re-reads the file and republishes; calibration/save rewrites the file
  atomically and keeps the previous one as .bak;
- capture / solve without data fail with a reason and change nothing;
- a missing calibration file stops the node with exit code 2 and a message naming the parameter;
- with camera/image_raw + joint_states + sim/robot_mask it publishes calibration/overlay and a
  status with the IoU of the rendered mask against the given mask.
"""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from kinema4d_ros.conversions import transform_to_matrix
from tests.ros.rosproc import NodeProcess, RosClient, wait_for

pytestmark = pytest.mark.ros


def _call(client: RosClient, name: str, timeout: float = 30.0):
    from std_srvs.srv import Trigger

    cli = client.node.create_client(Trigger, name)
    assert cli.wait_for_service(timeout_sec=15.0), f"service {name} not available"
    future = cli.call_async(Trigger.Request())
    wait_for(future.done, timeout, f"reply of {name}")
    return future.result()


@pytest.fixture
def calib_file(tmp_path, repo_root):
    path = tmp_path / "camera.yaml"
    shutil.copy(repo_root / "calibration" / "sim_camera.yaml", path)
    return path


def test_static_tf_reload_and_save(ros_env, tmp_path, calib_file):
    from tf2_msgs.msg import TFMessage

    from kinema4d_core.camera import load_calibration, look_at, save_calibration
    from kinema4d_ros import qos

    cam = load_calibration(calib_file)
    node = NodeProcess("calibration_node", ros_env, tmp_path / "node.log",
                       ros_args=["-p", f"calibration_file:={calib_file}", "-p", "overlay_period_s:=0.0"])
    client = RosClient(ros_env)
    try:
        received: list = []
        client.node.create_subscription(TFMessage, "/tf_static", received.append, qos.LATCHED)
        wait_for(lambda: received, 20.0, "the latched /tf_static message\n" + node.output())
        tf = received[-1].transforms[0]
        assert tf.header.frame_id == cam.parent_frame and tf.child_frame_id == cam.child_frame
        np.testing.assert_allclose(transform_to_matrix(tf), cam.T_base_camera, atol=1e-9)

        # Nothing captured: capture and solve refuse with a reason.
        reply = _call(client, "calibration/capture")
        assert not reply.success and "image" in reply.message
        reply = _call(client, "calibration/solve")
        assert not reply.success and "views" in reply.message

        # Another pose written to the file -> reload publishes it.
        new_pose = look_at((1.1, -0.6, 0.8), (0.3, 0.0, 0.3))
        save_calibration(cam.with_pose(new_pose), calib_file)
        n_before = len(received)
        reply = _call(client, "calibration/reload")
        assert reply.success, reply.message
        wait_for(lambda: len(received) > n_before, 10.0, "/tf_static after reload")
        np.testing.assert_allclose(transform_to_matrix(received[-1].transforms[0]), new_pose, atol=1e-9)

        # save: the file is rewritten with the node's pose; the previous bytes are kept as .bak.
        (calib_file.parent / (calib_file.name + ".bak")).unlink()
        previous = calib_file.read_bytes()
        reply = _call(client, "calibration/save")
        assert reply.success, reply.message
        assert (calib_file.parent / (calib_file.name + ".bak")).read_bytes() == previous
        np.testing.assert_allclose(load_calibration(calib_file).T_base_camera, new_pose, atol=1e-9)
        assert node.alive(), node.output()
    finally:
        client.close()
        node.stop()


def test_missing_calibration_file_exits_with_reason(ros_env, tmp_path):
    node = NodeProcess("calibration_node", ros_env, tmp_path / "node.log",
                       ros_args=["-p", f"calibration_file:={tmp_path / 'nope.yaml'}"])
    try:
        node.proc.wait(30)
    finally:
        code = node.stop()
    log = (tmp_path / "node.log").read_text()
    assert code == 2, log
    assert "calibration_file" in log and "does not exist" in log


@pytest.mark.slow
def test_overlay_scores_against_robot_mask(ros_env, tmp_path, calib_file):
    """The node renders the mask for the published joints; against that same mask IoU is 1, and a
    mask shifted by 6 px scores lower with a boundary distance of a few pixels."""
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String

    from kinema4d_core.calibration.overlay import render_robot_mask
    from kinema4d_core.camera import load_calibration
    from kinema4d_core.robot import load_robot
    from kinema4d_ros import qos
    from kinema4d_ros.conversions import numpy_to_image

    cam = load_calibration(calib_file)
    robot = load_robot("panda")
    q = robot.home()
    mask = render_robot_mask(robot, cam, q)
    assert mask.sum() > 1000
    rgb = np.full((cam.height, cam.width, 3), 90, np.uint8)

    node = NodeProcess("calibration_node", ros_env, tmp_path / "node.log",
                       ros_args=["-p", f"calibration_file:={calib_file}", "-p", "overlay_period_s:=0.2"])
    client = RosClient(ros_env)
    try:
        status: list = []
        overlays: list = []
        client.node.create_subscription(String, "calibration/status", lambda m: status.append(json.loads(m.data)),
                                        qos.LATCHED)
        client.node.create_subscription(Image, "calibration/overlay", overlays.append, qos.stream_in())
        pub_img = client.node.create_publisher(Image, "camera/image_raw", qos.STREAM_OUT)
        pub_js = client.node.create_publisher(JointState, "joint_states", qos.STREAM_OUT)
        pub_mask = client.node.create_publisher(Image, "sim/robot_mask", qos.STREAM_OUT)

        def publish(gt: np.ndarray) -> None:
            stamp = client.node.get_clock().now().to_msg()
            pub_js.publish(JointState(name=list(robot.joint_names), position=[float(v) for v in q]))
            pub_mask.publish(numpy_to_image(gt.astype(np.uint8) * 255, "mono8", cam.child_frame, stamp))
            pub_img.publish(numpy_to_image(rgb, "rgb8", cam.child_frame, stamp))

        def scored(pred) -> bool:
            publish(current[0])
            time.sleep(0.2)
            return any(s.get("overlay") and pred(s["overlay"]) for s in status)

        current = [mask]
        wait_for(lambda: scored(lambda o: o["iou"] > 0.999), 90.0, "an overlay score with IoU 1\n" + node.output())
        assert overlays and overlays[-1].encoding == "rgb8"
        assert (overlays[-1].height, overlays[-1].width) == (cam.height, cam.width)

        current[0] = np.roll(mask, 6, axis=1)
        wait_for(lambda: scored(lambda o: o["iou"] < 0.97), 30.0, "a lower IoU for a shifted mask")
        last = [s["overlay"] for s in status if s.get("overlay")][-1]
        assert 2.0 < last["boundary_px"] < 8.0
    finally:
        client.close()
        node.stop()


def test_capture_refuses_non_finite_joint_states(ros_env, tmp_path, calib_file):
    """A NaN joint position must be refused with the reason, never stored as a hand-eye view."""
    from sensor_msgs.msg import Image, JointState

    from kinema4d_core.camera import load_calibration
    from kinema4d_core.robot import load_robot
    from kinema4d_ros import qos
    from kinema4d_ros.conversions import numpy_to_image

    cam = load_calibration(calib_file)
    robot = load_robot("panda")
    position = [float("nan")] + [float(v) for v in robot.home()[1:]]
    rgb = np.full((cam.height, cam.width, 3), 90, np.uint8)
    node = NodeProcess("calibration_node", ros_env, tmp_path / "node.log",
                       ros_args=["-p", f"calibration_file:={calib_file}", "-p", "overlay_period_s:=0.0"])
    client = RosClient(ros_env)
    try:
        pub_img = client.node.create_publisher(Image, "camera/image_raw", qos.STREAM_OUT)
        pub_js = client.node.create_publisher(JointState, "joint_states", qos.STREAM_OUT)

        def capture():
            pub_js.publish(JointState(name=list(robot.joint_names), position=position))
            pub_img.publish(numpy_to_image(rgb, "rgb8", cam.child_frame))
            time.sleep(0.3)
            reply = _call(client, "calibration/capture")
            return reply if "received yet" not in reply.message else None

        reply = wait_for(capture, 60.0, "the node to hold an image and a joint state\n" + node.output())
        assert not reply.success and "non-finite" in reply.message, reply.message
        assert node.alive(), node.output()
    finally:
        client.close()
        node.stop()
