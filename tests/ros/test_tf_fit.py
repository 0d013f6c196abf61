"""Fitting a lab's TF tree, with real processes on loopback DDS (issue 9, TF).

- a "robot computer" process (tests/ros/robot_computer.py) owns the robot's frames and the camera
  driver's camera_link -> camera_color_optical_frame; ``bringup real`` on the same domain adds
  base -> camera_link only: every frame has one parent and one publisher, robot_state_node is not
  started, and the projector with calibration_source:=tf renders what the file calibration gives;
- calibration_node alone: camera_mount_source file publishes base -> mount -> optical composing to
  the file's pose; a runtime calibration_file change republishes it; save never writes a file the
  user did not name.
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

from tests.ros.rosproc import NodeProcess, RosClient, executable, stop_group, wait_for
from tests.ros.test_projector_node import _set_params

pytestmark = pytest.mark.ros

OPTICAL = "camera_color_optical_frame"


def _lab_calibration(repo_root: Path, path: Path, shift: float = 0.0) -> Path:
    """sim_camera.yaml with a RealSense-style optical frame name, 144x96 (a light render)."""
    from kinema4d_core.camera import calibration_to_dict, load_calibration

    cam = load_calibration(repo_root / "calibration/sim_camera.yaml").resized(96, 144)
    doc = calibration_to_dict(cam)
    doc["extrinsics"]["child_frame"] = OPTICAL
    doc["extrinsics"]["translation"][0] += shift
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class TfRecorder:
    """Collects /tf and /tf_static with each message's publisher gid."""

    def __init__(self, client: RosClient) -> None:
        from tf2_msgs.msg import TFMessage

        from kinema4d_ros.camera_tf import TF_STATIC_SUB_QOS, TF_SUB_QOS

        self.edges: list[tuple[str, str, str, str, np.ndarray]] = []   # topic, publisher, parent, child, T
        for topic, qos in (("/tf", TF_SUB_QOS), ("/tf_static", TF_STATIC_SUB_QOS)):
            client.node.create_subscription(TFMessage, topic, self._cb(topic), qos)

    def _cb(self, topic: str):
        from kinema4d_ros.conversions import transform_to_matrix

        def cb(msg, info) -> None:
            gid = bytes((info.get("publisher_gid") or {}).get("data", b"")).hex()
            for tr in msg.transforms:
                self.edges.append((topic, gid, tr.header.frame_id, tr.child_frame_id, transform_to_matrix(tr)))
        return cb

    def parents(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for _t, _g, parent, child, _T in list(self.edges):
            out.setdefault(child, set()).add(parent)
        return out

    def publishers(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for _t, gid, _p, child, _T in list(self.edges):
            out.setdefault(child, set()).add(gid)
        return out

    def latest(self, parent: str, child: str) -> np.ndarray | None:
        for _t, _g, p, c, T in reversed(list(self.edges)):
            if (p, c) == (parent, child):
                return T
        return None


@pytest.mark.slow
def test_bringup_real_fits_the_robot_computers_tf_tree(ros_env, tmp_path, repo_root):
    from sensor_msgs.msg import Image

    from kinema4d_core.camera import OPTICAL_IN_MOUNT, load_calibration
    from kinema4d_core.render import RobotRenderer
    from kinema4d_core.robot import load_robot
    from kinema4d_ros import qos
    from kinema4d_ros.conversions import image_to_numpy

    cal_path = _lab_calibration(repo_root, tmp_path / "lab_camera.yaml")
    camera = load_calibration(cal_path)
    robot = load_robot("panda")
    q = np.clip(robot.home() + 0.1, robot.lower, robot.upper)
    T_link_optical = OPTICAL_IN_MOUNT.copy()
    T_link_optical[:3, 3] = [0.0, 0.015, 0.0]          # RealSense: colour imager 15 mm left of camera_link
    cfg = {"base": camera.parent_frame, "q": q.tolist(), "T_link_optical": T_link_optical.tolist()}
    robot_log = open(tmp_path / "robot_computer.log", "wb")
    robot_pc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("robot_computer.py")), json.dumps(cfg)],
                                env=ros_env, stdout=robot_log, stderr=subprocess.STDOUT, start_new_session=True)
    out = tmp_path / "runner.out"
    with open(out, "wb") as f:
        runner = subprocess.Popen([executable("kinema4d-ros"), "bringup", "real", "--calibration", str(cal_path),
                                   "--calibration-source", "tf", "--log-dir", str(tmp_path / "logs"),
                                   "--run-dir", str(tmp_path / "runs")],
                                  env=ros_env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    client = None
    try:
        text = wait_for(lambda: (lambda t: t if "nodes up" in t or runner.poll() is not None else "")(
            out.read_text(errors="replace")), 150, "the real bring-up to report its nodes up")
        assert "nodes up" in text and "robot_state_node" not in text, text
        client = RosClient(ros_env, "tf_check")
        rec = TfRecorder(client)
        points: list = []
        masks: list = []
        client.node.create_subscription(Image, "kinema4d/robot_pointmap", points.append, qos.stream_in(5))
        client.node.create_subscription(Image, "kinema4d/robot_mask", masks.append, qos.stream_in(5))
        wait_for(lambda: rec.latest(camera.parent_frame, "camera_link") is not None, 30,
                 f"{camera.parent_frame} -> camera_link on /tf_static")
        wait_for(lambda: points and masks, 120, "a robot pointmap rendered with the TF calibration")
        time.sleep(3.0)                                   # collect /tf for a few seconds more

        parents = rec.parents()
        assert all(len(p) == 1 for p in parents.values()), parents
        publishers = rec.publishers()
        assert all(len(g) == 1 for g in publishers.values()), {c: len(g) for c, g in publishers.items()}
        assert parents["camera_link"] == {camera.parent_frame}
        assert parents[OPTICAL] == {"camera_link"}
        ours = {c for _t, g, _p, c, _T in rec.edges if g in publishers["camera_link"]}
        assert ours == {"camera_link"}, ours              # bring-up adds exactly one transform
        assert "robot_state_node" not in client.node.get_node_names()
        T_base_optical = rec.latest(camera.parent_frame, "camera_link") @ T_link_optical
        np.testing.assert_allclose(T_base_optical, camera.T_base_camera, atol=1e-9)

        pm, mk = points[-1], next((m for m in reversed(masks) if m.header.stamp == points[-1].header.stamp), masks[-1])
        assert pm.header.frame_id == OPTICAL and OPTICAL in parents     # outputs are in a frame of the tree
        expected = RobotRenderer(camera, robot.meshes).render_base(robot.mesh_poses(q))
        mask = image_to_numpy(mk) > 0
        assert expected.mask.sum() > 50, "the test pose must put the robot in view"
        assert (mask != expected.mask).sum() <= 2
        both = mask & expected.mask
        np.testing.assert_allclose(image_to_numpy(pm)[both], expected.pointmap[both], atol=1e-4)
        assert runner.poll() is None and robot_pc.poll() is None
    finally:
        if client is not None:
            client.close()
        for proc in (runner, robot_pc):
            stop_group(proc)
        robot_log.close()


def _call(client, name: str):
    from std_srvs.srv import Trigger

    cli = client.node.create_client(Trigger, name)
    assert cli.wait_for_service(timeout_sec=20), name
    future = cli.call_async(Trigger.Request())
    wait_for(future.done, 20, f"{name} reply")
    return future.result()


def _get(client, node: str, name: str):
    from rcl_interfaces.srv import GetParameters

    cli = client.node.create_client(GetParameters, f"/{node}/get_parameters")
    assert cli.wait_for_service(timeout_sec=20)
    future = cli.call_async(GetParameters.Request(names=[name]))
    wait_for(future.done, 20, "get_parameters reply")
    return future.result().values[0].string_value


def test_calibration_node_mount_chain_reload_and_save_target(ros_env, tmp_path, repo_root):
    """Also: a projector_node follows the calibration node's file (calibration/file), so one
    runtime change of calibration_file reloads it everywhere."""
    from kinema4d_core.camera import OPTICAL_IN_MOUNT, load_calibration

    first = _lab_calibration(repo_root, tmp_path / "first.yaml")
    second = _lab_calibration(repo_root, tmp_path / "second.yaml", shift=0.25)
    before = first.read_bytes()
    proc = NodeProcess("calibration_node", ros_env, tmp_path / "calibration.log",
                       ros_args=["-p", f"calibration_file:={first}", "-p", "overlay_period_s:=0.0",
                                 "-p", "camera_mount_frame:=camera_link", "-p", "camera_mount_source:=file",
                                 "-p", "save_to_calibration_file:=false"])
    projector = NodeProcess("projector_node", ros_env, tmp_path / "projector.log",
                            ros_args=["-p", f"calibration_file:={first}"])
    client = RosClient(ros_env)
    try:
        rec = TfRecorder(client)
        cam = load_calibration(first)
        wait_for(lambda: _get(client, "projector_node", "calibration_file") == str(first), 60,
                 "projector_node up with the first calibration")
        base = cam.parent_frame

        def chain():
            a, b = rec.latest(base, "camera_link"), rec.latest("camera_link", OPTICAL)
            return None if a is None or b is None else a @ b

        wait_for(lambda: chain() is not None, 30, "base -> camera_link -> optical on /tf_static")
        np.testing.assert_allclose(chain(), cam.T_base_camera, atol=1e-9)
        np.testing.assert_allclose(rec.latest("camera_link", OPTICAL), OPTICAL_IN_MOUNT, atol=1e-12)

        # runtime change of calibration_file: reloaded, TF republished with the new pose
        _set_params(client, "calibration_node", calibration_file=str(second))     # asserts it was accepted
        cam2 = load_calibration(second)
        wait_for(lambda: np.allclose(chain(), cam2.T_base_camera, atol=1e-9), 20, "the new pose on /tf_static")
        # ... and the projector followed (its own parameter, validated and reloaded like a param set)
        wait_for(lambda: _get(client, "projector_node", "calibration_file") == str(second.resolve()), 20,
                 "projector_node to follow calibration_node's new file")
        assert "reloaded" in projector.output()

        # the user named `second` at runtime -> save may write it; a packaged/unnamed file never
        assert _call(client, "calibration/save").success
        assert first.read_bytes() == before
        _set_params(client, "calibration_node", calibration_file=str(first), save_to_calibration_file=False)
        reply = _call(client, "calibration/save")
        assert not reply.success and "save_file" in reply.message, reply.message
        assert first.read_bytes() == before
        target = tmp_path / "mine.yaml"
        _set_params(client, "calibration_node", save_file=str(target))
        reply = _call(client, "calibration/save")
        assert reply.success and target.is_file(), reply.message
        np.testing.assert_allclose(load_calibration(target).T_base_camera, cam.T_base_camera, atol=1e-9)
        assert first.read_bytes() == before and proc.alive()
        wait_for(lambda: _get(client, "projector_node", "calibration_file") == str(first.resolve()), 20,
                 "projector_node to follow back to the first file")
        assert projector.alive()
    finally:
        client.close()
        proc.stop()
        projector.stop()
