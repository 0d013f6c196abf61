"""Camera inputs as real drivers publish them, sent over loopback DDS to real node processes:
compressed (jpeg) colour on ``<topic>/compressed``, 16UC1 depth in millimetres (RealSense),
camera_info; a camera_info whose size differs from the calibration is refused with the
match_stream error while the node keeps running."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.ros.rosproc import NodeProcess, RosClient, publish_until, wait_for
from tests.ros.test_inference_node import small_calibration  # noqa: F401  (fixture)

pytestmark = pytest.mark.ros

DEPTH_MM = 1500          # the published depth: 1.5 m everywhere



def _status(client, topic):
    from std_msgs.msg import String

    from kinema4d_ros import qos

    got: list = []
    client.node.create_subscription(String, topic, lambda m: got.append(json.loads(m.data)), qos.LATCHED)
    return got


def _camera_info(camera, client):
    from kinema4d_ros.conversions import camera_model_to_info

    msg = camera_model_to_info(camera)
    msg.header.stamp = client.node.get_clock().now().to_msg()
    return msg


def _refused_for_its_size(pub_info, client, status: list, camera, wrong) -> None:
    """Publish camera_info of ``wrong`` size until the node counts a rejection, and check its
    reason is camera.match_stream's (names both sizes and the rescale_to_stream fix)."""
    publish_until(pub_info, lambda: _camera_info(wrong, client),
                  lambda: status and status[-1]["rejected"].get("camera_info", 0) > 0, 20,
                  "the mismatched camera_info to be refused")
    reason = status[-1]["last_reason"]
    assert (f"camera/camera_info is {wrong.width}x{wrong.height} but the calibration is "
            f"{camera.width}x{camera.height}") in reason and "rescale_to_stream" in reason


@pytest.mark.slow       # ~35 s on 2 busy cores (node start-up)
def test_inference_accepts_compressed_images_16uc1_depth_and_refuses_a_mismatched_camera_info(
        ros_env, tmp_path, small_calibration):
    from rclpy.action import ActionClient
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from kinema4d_core.robot import load_robot
    from kinema4d_core.rollout import load_rollout
    from kinema4d_interfaces.action import Simulate
    from kinema4d_ros.conversions import numpy_to_compressed, numpy_to_image
    from tests.ros.test_inference_node import _done, _goal

    path, camera = small_calibration
    runs = tmp_path / "runs"
    proc = NodeProcess("inference_node", ros_env, tmp_path / "inference.log", ros_args=[
        "-p", f"calibration_file:={path}", "-p", "backend:=static-scene", "-p", f"output_root:={runs}",
        "-p", "n_frames:=5", "-p", "write_points:=false", "-p", "publish_prediction:=false",
        "-p", "image_transport:=compressed"])
    client = RosClient(ros_env)
    try:
        status = _status(client, "kinema4d/inference/status")
        node = client.node
        pub_img = node.create_publisher(CompressedImage, "camera/image_raw/compressed", 10)
        pub_depth = node.create_publisher(Image, "camera/depth/image_raw", 10)
        pub_info = node.create_publisher(CameraInfo, "camera/camera_info", 10)
        wait_for(lambda: min(p.get_subscription_count() for p in (pub_img, pub_depth, pub_info)) > 0, 20,
                 "inference_node to subscribe to the compressed image, depth and camera_info topics")
        y, x = np.mgrid[0:camera.height, 0:camera.width]
        rgb = np.stack([x, y, x + y], axis=-1).astype(np.uint8)
        depth_mm = np.full((camera.height, camera.width), DEPTH_MM, np.uint16)

        # a camera_info at another size than the calibration: refused with match_stream's error, node alive
        wrong = camera.resized(camera.height * 2, camera.width * 2)
        _refused_for_its_size(pub_info, client, status, camera, wrong)
        assert proc.alive()

        def send():
            stamp = node.get_clock().now().to_msg()
            pub_info.publish(_camera_info(camera, client))
            pub_depth.publish(numpy_to_image(depth_mm, "16UC1", camera.child_frame, stamp))
            return numpy_to_compressed(rgb, "jpeg", camera.child_frame, stamp)

        publish_until(pub_img, send, lambda: status and status[-1]["has_image"]
                      and status[-1]["counts"].get("depth_received", 0) > 0, 20,
                      "the node to hold a compressed frame and a 16UC1 depth")
        assert not {"image", "depth"} & set(status[-1]["rejected"]), status[-1]

        action = ActionClient(node, Simulate, "kinema4d/simulate")
        assert action.wait_for_server(timeout_sec=20), "kinema4d/simulate server not available"
        handle = wait_for(_done(action.send_goal_async(_goal(load_robot("panda")))), 20, "goal response").result()
        assert handle.accepted
        result = wait_for(_done(handle.get_result_async()), 120, "goal result").result().result
        assert result.success, result.message
        rollout = load_rollout(runs / result.output_dir.split("/")[-1])
        assert rollout.metadata.get("first_depth") is True
        # the jpeg arrived as the first frame (within jpeg error) ...
        first = rollout.rgb[0].astype(int)
        assert np.abs(first - rgb).mean() < 20
        # ... and the 16UC1 millimetres became metres: the background scene is 1.5 m deep
        z = rollout.pointmap[0][..., 2]
        assert np.median(z[np.isfinite(z) & (z > 0)]) == pytest.approx(DEPTH_MM / 1000, abs=1e-3)
        assert proc.alive()
    finally:
        client.close()
        proc.stop()


@pytest.mark.slow       # ~35 s on 2 busy cores (node start-up)
def test_projector_refuses_a_mismatched_camera_info_keeps_running_and_recovers(ros_env, tmp_path,
                                                                                small_calibration):
    from sensor_msgs.msg import CameraInfo, Image, JointState

    from kinema4d_core.robot import load_robot
    from kinema4d_ros import qos

    path, camera = small_calibration
    proc = NodeProcess("projector_node", ros_env, tmp_path / "projector.log",
                       ros_args=["-p", f"calibration_file:={path}", "-p", "max_stamp_age_s:=5.0"])
    client = RosClient(ros_env)
    try:
        node = client.node
        status = _status(client, "kinema4d/projector/status")
        pointmaps: list = []
        node.create_subscription(Image, "kinema4d/robot_pointmap", pointmaps.append, qos.stream_in(5))
        pub_js = node.create_publisher(JointState, "joint_states", 10)
        pub_info = node.create_publisher(CameraInfo, "camera/camera_info", 10)
        wait_for(lambda: pub_js.get_subscription_count() > 0 and pub_info.get_subscription_count() > 0, 20,
                 "projector_node to subscribe")
        robot = load_robot("panda")

        def joints():
            msg = JointState(name=list(robot.joint_names), position=[float(v) for v in robot.home()])
            msg.header.stamp = node.get_clock().now().to_msg()
            return msg

        wrong = camera.resized(camera.height // 2, camera.width // 2)
        _refused_for_its_size(pub_info, client, status, camera, wrong)
        # joint states meanwhile: dropped (counted, with the reason), never rendered at the wrong size
        publish_until(pub_js, joints, lambda: status[-1]["dropped"].get("no_camera", 0) > 0, 20,
                      "joint states to be dropped while the camera is refused")
        assert not pointmaps and proc.alive()
        assert "camera/camera_info was refused" in proc.output()
        # the right size: accepted, outputs flow at the calibrated size
        publish_until(pub_info, lambda: _camera_info(camera, client),
                      lambda: status[-1].get("camera") and status[-1]["camera"]["width"] == camera.width, 20,
                      "the matching camera_info to be adopted")
        publish_until(pub_js, joints, lambda: pointmaps, 30, "a robot pointmap after recovery", period=1.0)
        assert (pointmaps[-1].width, pointmaps[-1].height) == (camera.width, camera.height)
        assert proc.alive()
    finally:
        client.close()
        proc.stop()


@pytest.mark.parametrize("mode", ["real", "sim"])
def test_real_bringup_passes_the_camera_transport_and_size_rule_to_every_camera_node(mode, repo_root):
    """No ROS graph: the graph description gives calibration/projector/inference the same rule."""
    from kinema4d_ros.graph import nodes_for

    args = {"calibration": str(repo_root / "calibration/sim_camera.yaml"), "image_transport": "compressed",
            "depth_transport": "compressedDepth", "rescale_to_stream": "true"} if mode == "real" else {}
    nodes = {n.name: n.parameters for n in nodes_for(mode, args)}
    if mode == "sim":      # the sim publishes raw images at the calibrated size: node defaults
        assert all("image_transport" not in p and "rescale_to_stream" not in p for p in nodes.values())
        return
    assert nodes["inference_node"]["image_transport"] == nodes["calibration_node"]["image_transport"] == "compressed"
    assert nodes["inference_node"]["depth_transport"] == "compressedDepth"
    assert all(nodes[n]["rescale_to_stream"] is True for n in ("calibration_node", "projector_node", "inference_node"))
