"""projector_node as a real process over loopback DDS: pointmap equals the core render; bad input is survived."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tests.ros.rosproc import NodeProcess, RosClient, publish_until, wait_for

pytestmark = pytest.mark.ros

CALIBRATION = "calibration/sim_camera.yaml"


@pytest.fixture
def projector(ros_env, tmp_path, repo_root):
    proc = NodeProcess("projector_node", ros_env, tmp_path / "projector.log",
                       ros_args=["-p", f"calibration_file:={repo_root / CALIBRATION}", "-p", "max_stamp_age_s:=5.0",
                                 # the tests stream a 144x96 camera_info against the 720x480 calibration
                                 # (same aspect): allowed only when rescaling is asked for (match_stream)
                                 "-p", "rescale_to_stream:=true"])
    client = RosClient(ros_env)
    yield proc, client
    client.close()
    proc.stop()


def _small_camera(repo_root):
    from kinema4d_core.camera import load_calibration

    return load_calibration(repo_root / CALIBRATION).resized(96, 144)


def _io(client):
    from sensor_msgs.msg import CameraInfo, Image, JointState
    from std_msgs.msg import String

    from kinema4d_ros import qos

    got = {"pointmap": [], "mask": [], "status": []}
    node = client.node
    node.create_subscription(Image, "kinema4d/robot_pointmap", got["pointmap"].append, qos.stream_in(5))
    node.create_subscription(Image, "kinema4d/robot_mask", got["mask"].append, qos.stream_in(5))
    node.create_subscription(String, "kinema4d/projector/status", lambda m: got["status"].append(json.loads(m.data)),
                             qos.LATCHED)
    pub_js = node.create_publisher(JointState, "joint_states", 10)
    pub_ci = node.create_publisher(CameraInfo, "camera/camera_info", 10)
    wait_for(lambda: pub_js.get_subscription_count() > 0 and pub_ci.get_subscription_count() > 0, 20,
             "projector_node to subscribe to joint_states and camera/camera_info")
    return got, pub_js, pub_ci


def _joint_state(client, names, positions):
    from sensor_msgs.msg import JointState

    msg = JointState(name=list(names), position=[float(v) for v in positions])
    msg.header.stamp = client.node.get_clock().now().to_msg()
    return msg


def _send_camera_info(pub_ci, camera, got, frame_id_wanted):
    from kinema4d_ros.conversions import camera_model_to_info

    publish_until(pub_ci, lambda: camera_model_to_info(camera),
                  lambda: got["status"] and got["status"][-1].get("camera")
                  and got["status"][-1]["camera"]["width"] == camera.width, 15, "projector to adopt the camera_info")


def test_pointmap_equals_core_render_for_published_joints(projector, repo_root):
    from kinema4d_core.render import RobotRenderer
    from kinema4d_core.robot import load_robot
    from kinema4d_ros.conversions import image_to_numpy, stamp_to_seconds

    proc, client = projector
    camera = _small_camera(repo_root)
    got, pub_js, pub_ci = _io(client)
    _send_camera_info(pub_ci, camera, got, camera.child_frame)

    robot = load_robot("panda")
    q = robot.home() + 0.1
    q = np.clip(q, robot.lower, robot.upper)
    sent = []
    publish_until(pub_js, lambda: sent.append(_joint_state(client, robot.joint_names, q)) or sent[-1],
                  lambda: got["pointmap"] and got["mask"], 30, "a robot pointmap and mask", period=2.0)
    msg = next(m for m in sent if m.header.stamp == got["pointmap"][-1].header.stamp)

    out = got["pointmap"][-1]
    assert out.encoding == "32FC3"
    assert out.header.frame_id == camera.child_frame
    assert stamp_to_seconds(out.header.stamp) == pytest.approx(stamp_to_seconds(msg.header.stamp), abs=1e-9)
    assert (out.height, out.width, out.step) == (camera.height, camera.width, camera.width * 12)
    mask_msg = got["mask"][-1]
    assert mask_msg.encoding == "mono8" and mask_msg.header.frame_id == camera.child_frame

    expected = RobotRenderer(camera, robot.meshes).render_base(robot.mesh_poses(q))
    pointmap = image_to_numpy(out)
    mask = image_to_numpy(mask_msg) > 0
    assert expected.mask.sum() > 50, "the test pose must put the robot in view"
    np.testing.assert_array_equal(mask, expected.mask)
    np.testing.assert_allclose(pointmap, expected.pointmap, atol=1e-5)
    assert proc.alive()


def test_bad_messages_are_logged_counted_and_survived(projector, repo_root):
    from kinema4d_core.robot import load_robot
    from kinema4d_ros.conversions import camera_model_to_info

    proc, client = projector
    camera = _small_camera(repo_root)
    got, pub_js, pub_ci = _io(client)
    _send_camera_info(pub_ci, camera, got, camera.child_frame)
    robot = load_robot("panda")
    names, q = list(robot.joint_names), robot.home()

    def rejected(kind):
        return got["status"][-1]["rejected"].get(kind, 0) if got["status"] else 0

    bad_joint_states = [
        (["not_a_joint"] * 1 + ["also_not"], [0.1, 0.2]),          # unknown names
        (names, list(q[:-1])),                                     # mismatched lengths
        (names, [float("nan")] + list(q[1:])),                     # NaN
    ]
    for i, (n, p) in enumerate(bad_joint_states, start=1):
        publish_until(pub_js, lambda: _joint_state(client, n, p), lambda: rejected("joint_state") >= i, 15,
                      f"bad joint state #{i} to be counted", period=1.0)

    info = camera_model_to_info(camera)
    k = list(info.k)
    k[0] = 0.0
    info.k = k
    publish_until(pub_ci, lambda: info, lambda: rejected("camera_info") >= 1, 15,
                  "the zero-focal CameraInfo to be counted", period=1.0)

    log = wait_for(lambda: (lambda t: t if "focal length" in t else "")(proc.output()), 10, "the log line")
    for reason in ("unknown joints", "names but", "non-finite", "focal length"):
        assert reason in log, f"log lacks '{reason}':\n{log}"
    assert proc.alive()

    got["pointmap"].clear()
    time.sleep(0.1)
    publish_until(pub_js, lambda: _joint_state(client, names, q), lambda: got["pointmap"], 30,
                  "a pointmap for a good joint state after the bad ones", period=2.0)
    assert got["pointmap"][-1].width == camera.width
    # the render kernels were compiled at start (status says so, the log says how long it took)
    wait_for(lambda: got["status"] and got["status"][-1].get("render_kernels") == "ready", 10,
             "render_kernels: ready in the status")
    assert "render kernels ready in" in proc.output()


def _set_params(client, node_name: str, **values):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    cli = client.node.create_client(SetParameters, f"{node_name}/set_parameters")
    assert cli.wait_for_service(timeout_sec=20.0)
    future = cli.call_async(SetParameters.Request(
        parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]))
    wait_for(future.done, 20, "set_parameters to answer")
    results = future.result().results
    assert all(r.successful for r in results), [r.reason for r in results]


def test_camera_source_follows_calibration_file_and_use_camera_info_changes(projector, repo_root):
    """camera_info intrinsics are adopted again after calibration_file is cleared and set (even the
    same camera_info as before); use_camera_info:=false goes back to the file's intrinsics."""
    from kinema4d_core.camera import load_calibration

    proc, client = projector
    small = _small_camera(repo_root)
    full = load_calibration(repo_root / CALIBRATION)
    got, pub_js, pub_ci = _io(client)

    def camera_width():
        cam = got["status"][-1].get("camera") if got["status"] else None
        return None if cam is None else cam["width"]

    _send_camera_info(pub_ci, small, got, small.child_frame)
    _set_params(client, "projector_node", calibration_file="")
    wait_for(lambda: got["status"] and got["status"][-1].get("camera") is None, 10, "no camera without calibration")
    _set_params(client, "projector_node", calibration_file=str(repo_root / CALIBRATION))
    wait_for(lambda: camera_width() == full.width, 10, "the calibration file's camera")
    _send_camera_info(pub_ci, small, got, small.child_frame)       # the same camera_info as before
    _set_params(client, "projector_node", use_camera_info=False)
    wait_for(lambda: camera_width() == full.width, 10, "the file's intrinsics after use_camera_info:=false")
    assert proc.alive()
