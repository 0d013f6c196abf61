"""projector_node: live robot pointmap from joint states (FK -> z-buffer render in the calibrated camera).

| kind | name | type | QoS |
|---|---|---|---|
| sub | `joint_states` (each of `joint_state_topics`) | sensor_msgs/JointState, merged by name and stamp | sensor data (best effort, keep last 5) |
| sub | `/tf`, `/tf_static` | tf2_msgs/TFMessage (calibration_source tf) | tf2's |
| sub | `camera/camera_info` | sensor_msgs/CameraInfo | sensor data (only with use_camera_info) |
| pub | `kinema4d/robot_pointmap` | sensor_msgs/Image 32FC3, metres, camera optical frame | reliable, keep last 2 |
| pub | `kinema4d/robot_mask` | sensor_msgs/Image mono8 (255 = robot) | reliable, keep last 2 |
| pub | `kinema4d/robot_points` | sensor_msgs/PointCloud2 x y z float32, metres | reliable, keep last 2 |
| pub | `kinema4d/projector/status` | std_msgs/String JSON (counters, last rejection reason, latency, render_kernels compiling / ready) | reliable, transient local |

| parameter | default | meaning |
|---|---|---|
| robot | panda | robot config name or yaml path (read-only) |
| calibration_file | "" | camera calibration yaml: extrinsics always, intrinsics unless use_camera_info |
| calibration_source | file | T_base_camera from calibration_file (file) or looked up in TF, base frame -> optical frame (tf; kinema4d_ros.camera_tf) |
| follow_calibration_node | true | reload calibration_file when calibration_node announces another file (or a save over it) on `calibration/file` (kinema4d_ros.camera_tf) |
| use_camera_info | true | take intrinsics / size / frame id from camera/camera_info once it arrives (false: the file's) |
| rescale_to_stream | false | a camera_info of another size than the calibration: refused (false) or the calibration rescaled (true) |
| max_stamp_age_s | 0.5 | drop joint states older than this plus clock_skew_tolerance_s (node clock; 0 disables) |
| publish_points | true | publish kinema4d/robot_points |
| points_stride | 1 | keep every n-th robot pixel in the point cloud |
| strict_joint_names | false | reject joint states that name joints the robot does not have |
| status_period_s | 0.5 | status topic period (read-only) |
| joint_state_topics / joint_name_map / joint_name_prefix / fixed_joint_values | [joint_states] / "" / "" / "" | joint inputs (kinema4d_ros.joint_input, docs/ros.md) |
| stamp_reset_jump_s / clock_skew_tolerance_s | 5.0 / 0.5 | stamp order (kinema4d_core.stamps): reset on a larger jump back; future stamps beyond the tolerance are dropped without blocking |

The render worker first compiles the renderer's numba kernels (``render_kernels`` in the status:
compiling, then ready; about a minute with a cold numba cache, a second or two from the cache),
whatever the calibration source, so outputs do not wait for that compile after the camera pose
arrives on TF. Every output carries the joint state's stamp and the camera's optical frame id. Input is
never queued: the subscription callback keeps only the newest joint state and a worker thread
renders it, so when rendering is slower than the input the older states are dropped (counted
as ``superseded``), never processed late. Stale, future-stamped and out-of-order states are dropped
and counted; a bag loop or clock jump back restarts the order (logged once);
malformed messages are rejected with the reason (logged, throttled per kind, counted) and the
node keeps running. Outputs are published as ready CDR bytes (``image_to_cdr``,
``points_to_cloud_cdr``): one copy of the pixels each; the point cloud holds only robot pixels. Frames: pointmap XYZ is in the camera optical frame (x right, y down,
z forward), metres; pixels outside the robot are 0 in the pointmap and 0 in the mask.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import String

from kinema4d_core.errors import ConfigError, Kinema4DError
from kinema4d_ros import qos
from kinema4d_ros.camera_tf import CALIBRATION_SOURCE_PARAMS, CalibrationFollower, CameraPose
from kinema4d_ros.conversions import image_to_cdr, points_to_cloud_cdr, stamp_to_seconds, stream_camera
from kinema4d_ros.diagnostics import OK, WARN, Diagnostics, Health, steady_timer
from kinema4d_ros.joint_input import JointInput
from kinema4d_ros.node_main import run_node
from kinema4d_ros.params import (JOINT_INPUT_PARAMS, RESCALE_TO_STREAM, STAMP_PARAMS, ParamSpec, declare_params,
                                 optional_calibration)

# numba's OpenMP workers otherwise spin-wait after every frame, burning CPU that the executor,
# the publishers and other processes need (measured: 26 -> 16 ms of CPU per frame on 2 cores).
# Read when the thread pool starts (first render), so setting it here is early enough.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _check_calibration(path: str) -> str | None:
    if path and not Path(path).is_file():
        return f"calibration_file '{path}' does not exist"
    return None


PARAMS = (
    ParamSpec("robot", "panda", "Robot config name (urdf/<name>.yaml) or path to a robot yaml.", read_only=True),
    ParamSpec("calibration_file", "", "Camera calibration yaml (extrinsics T_base_camera; intrinsics unless "
              "use_camera_info).", check=_check_calibration),
    *CALIBRATION_SOURCE_PARAMS,
    ParamSpec("use_camera_info", True, "Take intrinsics, image size and optical frame id from camera/camera_info."),
    RESCALE_TO_STREAM,
    ParamSpec("max_stamp_age_s", 0.5, "Drop joint states older than this many seconds (0 disables).",
              min=0.0, max=60.0),
    ParamSpec("publish_points", True, "Publish kinema4d/robot_points (PointCloud2)."),
    ParamSpec("points_stride", 1, "Keep every n-th robot pixel in kinema4d/robot_points.", min=1, max=64),
    ParamSpec("strict_joint_names", False, "Reject joint states naming joints the robot does not have."),
    ParamSpec("status_period_s", 0.5, "Period of kinema4d/projector/status (seconds).", min=0.05, max=60.0,
              read_only=True),
    *JOINT_INPUT_PARAMS,
    *STAMP_PARAMS,
)


class ProjectorNode(Node):
    """Joint states in, robot pointmap / mask / points out (see module docstring)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("projector_node", **kwargs)
        self.health = Health(lambda text: self.get_logger().warning(text))
        self.p = declare_params(self, PARAMS, self._on_params)
        from kinema4d_core.robot import load_robot

        self.robot = load_robot(self.p["robot"])
        self._lock = threading.Condition()
        self._pending: tuple = None           # (MergedJoints, stamp msg, perf_counter at arrival)
        self._stop = False
        self._calibration = optional_calibration(self.p["calibration_file"], self.robot)
        self._camera = self._calibration          # what we render into (may come from camera_info)
        self._camera_key: tuple | None = None
        self._no_camera_reason = "no calibration_file / camera_info yet"
        self._renderer = None
        self._renderer_camera = None
        self._kernels_ready = False            # numba kernels compiled (_warm_up, first thing of the worker)
        self.pose = CameraPose(self, self.p["calibration_source"])
        self.follower = CalibrationFollower(self, self.p)    # calibration_node's file changes

        self.pub_pointmap = self.create_publisher(Image, "kinema4d/robot_pointmap", qos.STREAM_OUT)
        self.pub_mask = self.create_publisher(Image, "kinema4d/robot_mask", qos.STREAM_OUT)
        self.pub_points = self.create_publisher(PointCloud2, "kinema4d/robot_points", qos.STREAM_OUT)
        self.pub_status = self.create_publisher(String, "kinema4d/projector/status", qos.LATCHED)
        self.joints = JointInput(self, self.robot, self.p, self.health, self._on_joints,
                                 strict=self.p["strict_joint_names"])
        self.create_subscription(CameraInfo, "camera/camera_info", self._on_camera_info, qos.SENSOR_IN)
        steady_timer(self, self.p["status_period_s"], self._publish_status)
        self.diagnostics = Diagnostics(self, self.health, self._diagnostic_state)
        self._worker = threading.Thread(target=self._work, name="projector-render", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"projector ready: robot={self.robot.config.name} joints={len(self.robot.joint_names)} "
            f"calibration={self.p['calibration_file'] or '(none: waiting for camera_info + calibration_file)'}")

    # ---- parameters -------------------------------------------------------------------------
    def _on_params(self, changed: dict) -> str | None:
        err = self.joints.update_params(changed)
        if err:
            return err
        if "calibration_file" in changed:
            try:
                cal = optional_calibration(changed["calibration_file"], self.robot)
            except Kinema4DError as exc:
                return str(exc)
            with self._lock:
                from_info = self._camera_key is not None and self._camera is not None and cal is not None
                self._camera = self._camera.with_pose(cal.T_base_camera) if from_info else cal
                if not from_info:
                    self._camera_key = None     # adopt the next camera_info again, even an unchanged one
                self._calibration = cal
        if "calibration_source" in changed:
            self.pose.source = changed["calibration_source"]
        if "rescale_to_stream" in changed:
            with self._lock:
                self._camera_key = None         # judge the next camera_info under the new rule
        if changed.get("use_camera_info") is False:
            with self._lock:                    # back to the calibration file's intrinsics
                self._camera, self._camera_key = self._calibration, None
        self.p.update(changed)
        return None

    # ---- inputs -----------------------------------------------------------------------------
    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.health.count("camera_info_received")
        if not self.p["use_camera_info"]:
            return
        cal = self._calibration
        if cal is None:
            self.health.drop("no_calibration", "camera_info ignored until calibration_file is set")
            return
        key = (msg.width, msg.height, tuple(msg.k), tuple(msg.d), msg.distortion_model, msg.header.frame_id)
        if key == self._camera_key:
            return
        try:   # the one rule: size checked against the calibration (match_stream), intrinsics from camera_info
            camera = stream_camera(cal, msg, rescale=bool(self.p["rescale_to_stream"]), source="camera/camera_info")
        except Kinema4DError as exc:
            self.health.reject("camera_info", str(exc))
            if isinstance(exc, ConfigError):    # the stream does not match the calibration (size): never
                with self._lock:                # render for it, outputs would not align; a malformed
                    self._camera, self._camera_key = None, None     # message just keeps the last camera
                    self._no_camera_reason = f"the last camera/camera_info was refused: {exc}"
            return
        with self._lock:
            self._camera, self._camera_key = camera, key
            self._no_camera_reason = "no calibration_file / camera_info yet"
        self.get_logger().info(f"camera from camera_info: {camera.width}x{camera.height} frame {camera.child_frame}")

    def _on_joints(self, merged, stamp_msg) -> None:
        """A complete merged joint state (JointInput: renamed, stamp-ordered) -> the render worker."""
        with self._lock:
            if self._pending is not None:
                self.health.drop("superseded", "a newer joint state arrived before the previous one was rendered")
            self._pending = (merged, stamp_msg, time.perf_counter())
            self._lock.notify()

    # ---- work -------------------------------------------------------------------------------
    def _warm_up(self) -> None:
        """Compile the renderer's numba kernels at start, whatever the calibration source and camera.

        Without it the first render compiles them (numba JIT: ~70 s on two busy cores with a cold
        cache, i.e. after a fresh setup or a change of kinema4d_core/render.py; ~2 s from the cache).
        With calibration_source tf that first render waits for the camera pose on TF, so the compile
        started only then and the first pointmap came a minute after the pose had arrived, while the
        status still showed the early "no TF" rejections as its last reason."""
        from kinema4d_core.render import warm_up_kernels

        try:
            seconds = warm_up_kernels(self.robot.meshes)
            self.get_logger().info(f"render kernels ready in {seconds:.1f} s")
        except Exception as exc:  # a failed warm-up only moves the compile to the first render
            self.health.reject("internal", f"render warm-up: {type(exc).__name__}: {exc}")
        self._kernels_ready = True

    def _work(self) -> None:
        self._warm_up()
        while True:
            with self._lock:
                while self._pending is None and not self._stop:
                    self._lock.wait(0.5)
                if self._stop:
                    return
                merged, stamp_msg, t_in = self._pending
                self._pending = None
                camera = self._camera
            try:
                self._process(merged.q, stamp_msg, t_in, camera)
            except Kinema4DError as exc:
                self.health.reject("joint_state", str(exc))
            except Exception as exc:  # a bug must not kill the render thread silently
                self.health.reject("internal", f"{type(exc).__name__}: {exc}")

    def _process(self, q: np.ndarray, stamp_msg, t_in: float, camera) -> None:
        stamp = stamp_to_seconds(stamp_msg)
        max_age = float(self.p["max_stamp_age_s"])
        age = self.joints.stale(stamp, max_age)
        if age is not None:
            self.health.drop("stale", f"joint state is {age:.3f} s old (max_stamp_age_s={max_age} + "
                                      f"clock_skew_tolerance_s={self.p['clock_skew_tolerance_s']})")
            return
        clipped = np.clip(q, self.robot.lower, self.robot.upper)   # measured states stray past limits
        if np.any(clipped != q):
            self.health.count("clipped_to_limits")
            q = clipped
        if camera is None:
            self.health.drop("no_camera", self._no_camera_reason)
            return
        camera = self.pose.resolve(camera)      # calibration_source tf: the pose TF has now
        renderer = self._renderer_for(camera)
        result = renderer.render_base(self.robot.mesh_poses(q))
        # outputs go out as ready CDR bytes (one copy of the pixels each; see conversions); one render
        # worker takes inputs in JointInput's stamp order, so outputs stay ordered too
        frame = camera.child_frame
        self.pub_pointmap.publish(image_to_cdr(result.pointmap, "32FC3", frame, stamp_msg))
        self.pub_mask.publish(image_to_cdr(result.mask, "mono8", frame, stamp_msg))
        if self.p["publish_points"]:
            stride = int(self.p["points_stride"])
            pts = result.pointmap[result.mask]
            self.pub_points.publish(points_to_cloud_cdr(pts[::stride] if stride > 1 else pts, frame, stamp_msg))
        self.health.count("published")
        self.health.latency((time.perf_counter() - t_in) * 1e3)

    def _renderer_for(self, camera):
        if self._renderer is None or self._renderer_camera is not camera:
            from kinema4d_core.render import RobotRenderer

            self._renderer = RobotRenderer(camera, self.robot.meshes)
            self._renderer_camera = camera
        return self._renderer

    def _publish_status(self) -> None:
        cam = self._camera
        self.pub_status.publish(String(data=self.health.to_json(
            node=self.get_name(), robot=self.robot.config.name,
            render_kernels="ready" if self._kernels_ready else "compiling",
            camera=None if cam is None else {"width": cam.width, "height": cam.height, "frame_id": cam.child_frame})))

    def _diagnostic_state(self) -> tuple[int, str, dict]:
        cam = self._camera
        if not self._kernels_ready:
            return WARN, "compiling the render kernels (numba; about a minute with a cold cache)", {
                "robot": self.robot.config.name}
        if cam is None:
            return WARN, f"not projecting: {self._no_camera_reason}", {"robot": self.robot.config.name}
        return OK, f"projecting {self.robot.config.name} into {cam.child_frame} ({cam.width}x{cam.height})", {
            "robot": self.robot.config.name, "frame_id": cam.child_frame}

    def close(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        self._worker.join(timeout=2.0)


def main(argv: list[str] | None = None) -> int:
    return run_node(ProjectorNode, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
