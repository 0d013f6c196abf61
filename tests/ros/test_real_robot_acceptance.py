"""Issue 9 acceptance: ``kinema4d-ros bringup real`` on a lab's ROS graph, with real processes.

A "robot computer" process (tests/ros/robot_computer.py) on the user's domain (chosen by the test,
loopback discovery) publishes what an FR3 + RealSense lab publishes: an arm-only ``/joint_states``
with franka_ros2's ``fr3_`` names (mapped to the Panda config by ``--joint-name-prefix fr3_:panda_``;
the TF tree is rooted at the config's base frame ``panda_link0``, which projector and inference require
of the calibration), the gripper on ``/franka_gripper/joint_states``, jpeg colour on
``/camera/color/image_raw/compressed``, 16UC1 depth in millimetres, camera_info, and its own
robot_state_publisher-like TF incl. the driver's ``camera_link -> camera_color_frame ->
camera_color_optical_frame``. ``bringup real`` on that domain, with the matching arguments and the
static-scene backend, must

- honour the user's domain (printed) and not start robot_state_node;
- add exactly one transform (base -> camera_link): no frame with two parents, none published twice;
- render robot pointmaps (calibration from the file here; reading it from TF is
  tests/ros/test_tf_fit.py's job), keep them flowing after a future-stamped
  joint state (dropped, counted), and answer a Simulate goal with a complete run folder whose first
  frame is the camera's jpeg and whose depth is the 16UC1 millimetres in metres.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.ros.rosproc import RosClient, executable, publish_until, stop_group, wait_for
from tests.ros.test_tf_fit import TfRecorder

pytestmark = [pytest.mark.ros, pytest.mark.slow]

BASE = "panda_link0"         # the robot config's base_frame: the calibration's parent frame must be it
OPTICAL = "camera_color_optical_frame"
GRIPPER_TOPIC = "/franka_gripper/joint_states"
IMAGE_TOPIC = "/camera/color/image_raw"
DEPTH_TOPIC = "/camera/aligned_depth_to_color/image_raw"
INFO_TOPIC = "/camera/color/camera_info"
DEPTH_MM = 1500


def _fr3_calibration(repo_root: Path, path: Path) -> Path:
    """sim_camera.yaml at 96x144 (a light render) in the lab's frames: base -> RealSense optical frame."""
    from kinema4d_core.camera import calibration_to_dict, load_calibration

    doc = calibration_to_dict(load_calibration(repo_root / "calibration/sim_camera.yaml").resized(96, 144))
    doc["extrinsics"]["parent_frame"] = BASE
    doc["extrinsics"]["child_frame"] = OPTICAL
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


_stop = stop_group


def test_bringup_real_on_an_fr3_realsense_lab_graph(ros_env, tmp_path, repo_root):
    from rclpy.action import ActionClient
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String

    from kinema4d_core.camera import OPTICAL_IN_MOUNT, load_calibration
    from kinema4d_core.robot import load_robot
    from kinema4d_core.rollout import load_rollout
    from kinema4d_interfaces.action import Simulate
    from kinema4d_ros import qos
    from kinema4d_ros.conversions import image_to_numpy, seconds_to_stamp, stamp_to_seconds
    from tests.ros.robot_computer import camera_pattern
    from tests.ros.test_inference_node import _done, _goal

    domain = ros_env["ROS_DOMAIN_ID"]
    assert ros_env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"       # the "lab" stays on loopback
    cal_path = _fr3_calibration(repo_root, tmp_path / "fr3_realsense.yaml")
    camera = load_calibration(cal_path)
    robot = load_robot("panda")
    q = np.clip(robot.home() + 0.1, robot.lower, robot.upper)
    T_link_color = np.eye(4)
    T_link_color[:3, 3] = [0.0, 0.015, 0.0]            # RealSense: colour imager 15 mm left of camera_link
    T_link_optical = T_link_color @ OPTICAL_IN_MOUNT
    cfg = {"base": BASE, "q": q.tolist(), "T_link_optical": T_link_optical.tolist(),
           "T_link_color": T_link_color.tolist(), "joint_prefix": "fr3_",
           "gripper_topic": GRIPPER_TOPIC,
           "camera": {"calibration": str(cal_path), "image_topic": IMAGE_TOPIC, "depth_topic": DEPTH_TOPIC,
                      "info_topic": INFO_TOPIC, "depth_mm": DEPTH_MM}}
    robot_log = open(tmp_path / "robot_computer.log", "wb")
    robot_pc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("robot_computer.py")), json.dumps(cfg)],
                                env=ros_env, stdout=robot_log, stderr=subprocess.STDOUT, start_new_session=True)
    runs = tmp_path / "runs"
    out = tmp_path / "runner.out"
    with open(out, "wb") as f:
        runner = subprocess.Popen(
            [executable("kinema4d-ros"), "bringup", "real", "--calibration", str(cal_path),
             "--calibration-source", "file", "--camera-mount-frame", "camera_link",
             "--joint-name-prefix", "fr3_:panda_", "--gripper-joint-states-topic", GRIPPER_TOPIC,
             "--image-topic", IMAGE_TOPIC, "--image-transport", "compressed", "--depth-topic", DEPTH_TOPIC,
             "--camera-info-topic", INFO_TOPIC, "--backend", "static-scene",
             "--log-dir", str(tmp_path / "logs"), "--run-dir", str(runs)],
            env=ros_env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    client = None
    try:
        text = wait_for(lambda: (lambda t: t if "nodes up" in t or runner.poll() is not None else "")(
            out.read_text(errors="replace")), 150, "the real bring-up to report its nodes up")
        assert "nodes up" in text, text
        assert f"ROS_DOMAIN_ID={domain} discovery=LOCALHOST" in text, text     # the user's domain, printed
        assert "robot_state_node" not in text, text
        client = RosClient(ros_env, "acceptance_check")
        node = client.node
        rec = TfRecorder(client)
        points: list = []
        status: list = []
        node.create_subscription(Image, "kinema4d/robot_pointmap", points.append, qos.stream_in(5))
        node.create_subscription(String, "kinema4d/projector/status", lambda m: status.append(json.loads(m.data)),
                                 qos.LATCHED)
        wait_for(lambda: rec.latest(BASE, "camera_link") is not None, 30, f"{BASE} -> camera_link on /tf_static")
        try:
            wait_for(lambda: points, 60, "a robot pointmap from the prefixed arm + gripper topics and the TF calibration")
        except AssertionError as exc:
            seen = {kind: sorted(i.node_name for i in fn("/tf_static")) for kind, fn in (
                ("publishers", node.get_publishers_info_by_topic), ("subscriptions", node.get_subscriptions_info_by_topic))}
            raise AssertionError(f"{exc}; projector status: {status[-1] if status else None}; /tf_static as this "
                                 f"client sees it: {seen}") from None

        # robot pointmaps: in the optical frame of the tree, the robot in view, metres
        pm = image_to_numpy(points[-1])
        assert points[-1].header.frame_id == OPTICAL
        assert (points[-1].width, points[-1].height) == (camera.width, camera.height)
        z = pm[..., 2]
        assert (np.isfinite(z) & (z > 0)).sum() > 50, "the robot must be in view"

        # a future-stamped joint state (a driver clock an hour ahead) is dropped; pointmaps keep flowing
        pub_js = node.create_publisher(JointState, "/joint_states", 10)
        arm = [n.replace("panda_", "fr3_") for n in robot.joint_names[:7]]
        future_s = node.get_clock().now().nanoseconds * 1e-9 + 3600.0
        future = JointState(name=arm, position=[float(v) for v in q[:7]])
        future.header.stamp = seconds_to_stamp(future_s)
        publish_until(pub_js, lambda: future, lambda: status and status[-1].get("dropped", {}).get("future", 0) >= 1,
                      20, "the future-stamped joint state to be dropped")
        points.clear()
        wait_for(lambda: len(points) >= 3, 30, "pointmaps after the future-stamped joint state")
        stamps = [stamp_to_seconds(m.header.stamp) for m in points]
        assert stamps == sorted(stamps) and all(s < future_s - 3000 for s in stamps)

        # TF: one parent and one publisher per frame; bring-up adds exactly base -> camera_link
        time.sleep(2.0)
        parents = rec.parents()
        assert all(len(p) == 1 for p in parents.values()), parents
        publishers = rec.publishers()
        assert all(len(g) == 1 for g in publishers.values()), {c: len(g) for c, g in publishers.items()}
        assert parents["camera_link"] == {BASE} and parents["camera_color_frame"] == {"camera_link"}
        ours = {c for _t, g, _p, c, _T in rec.edges if g in publishers["camera_link"]}
        assert ours == {"camera_link"}, ours
        assert not {"robot_state_node"} & set(node.get_node_names())
        T_base_optical = (rec.latest(BASE, "camera_link") @ rec.latest("camera_link", "camera_color_frame")
                          @ rec.latest("camera_color_frame", OPTICAL))
        np.testing.assert_allclose(T_base_optical, camera.T_base_camera, atol=1e-9)

        # a prediction: Simulate goal -> a complete run folder from the camera's compressed frame + depth
        action = ActionClient(node, Simulate, "kinema4d/simulate")
        assert action.wait_for_server(timeout_sec=20), "kinema4d/simulate server not available"
        handle = wait_for(_done(action.send_goal_async(_goal(robot))), 20, "goal response").result()
        assert handle.accepted
        result = wait_for(_done(handle.get_result_async()), 120, "goal result").result().result
        assert result.success, result.message
        run_dirs = [p for p in runs.iterdir() if not p.name.startswith(".")]
        assert len(run_dirs) == 1 and run_dirs[0].name == Path(result.output_dir).name, (run_dirs, result.output_dir)
        rollout = load_rollout(run_dirs[0])
        assert rollout.rgb.shape[1:3] == (camera.height, camera.width)
        assert rollout.metadata.get("first_depth") is True
        assert np.abs(rollout.rgb[0].astype(int) - camera_pattern(camera.height, camera.width)).mean() < 20
        z0 = rollout.pointmap[0][..., 2]
        assert np.median(z0[np.isfinite(z0) & (z0 > 0)]) == pytest.approx(DEPTH_MM / 1000, abs=1e-3)
        assert (run_dirs[0] / "run.json").is_file()
        assert runner.poll() is None and robot_pc.poll() is None
    finally:
        if client is not None:
            client.close()
        for proc in (runner, robot_pc):
            _stop(proc)
        robot_log.close()
