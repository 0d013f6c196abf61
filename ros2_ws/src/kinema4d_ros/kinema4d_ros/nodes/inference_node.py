"""inference_node: the Simulate action server (trajectory + current camera image -> generated 4D rollout).

| kind | name | type | QoS |
|---|---|---|---|
| action | `kinema4d/simulate` | kinema4d_interfaces/action/Simulate | action defaults |
| sub | `camera/image_raw` | sensor_msgs/Image rgb8 / bgr8 / rgba8 / bgra8 / mono8 (first frame); with image_transport=compressed: `camera/image_raw/compressed` sensor_msgs/CompressedImage jpeg / png | sensor data |
| sub | `camera/depth/image_raw` | sensor_msgs/Image 16UC1 millimetres or 32FC1 metres (optional first depth); with depth_transport=compressedDepth: `.../compressedDepth` png | sensor data |
| sub | `camera/camera_info` | sensor_msgs/CameraInfo: intrinsics of the stream (with use_camera_info) | sensor data |
| sub | `joint_states` (each of `joint_state_topics`) | sensor_msgs/JointState, merged by name and stamp (kinema4d_ros.joint_input), recorded between record/start and record/stop | sensor data |
| srv | `kinema4d/record/start` | std_srvs/Trigger: start collecting joint states (+ the current camera frame) | |
| srv | `kinema4d/record/stop` | std_srvs/Trigger: stop and simulate the recording; message = JSON {run_id, output_dir} | |
| pub | `kinema4d/prediction/image` | sensor_msgs/Image rgb8, one per generated frame, stamped start + frame time (see below) | reliable, keep last 50 |
| pub | `kinema4d/prediction/camera_info` | sensor_msgs/CameraInfo of each generated frame (same stamp, optical frame id, the rollout's K) | reliable, keep last 50 |
| pub | `kinema4d/prediction/points` | sensor_msgs/PointCloud2 x y z rgb, metres, camera optical frame, same stamp | reliable, keep last 50 |
| pub | `/diagnostics` | diagnostic_msgs/DiagnosticArray ~1 Hz: input rates, drops with reasons, model state (kinema4d_ros.diagnostics) | reliable, keep last 10 |
| pub | `kinema4d/run_done` | std_msgs/String JSON: the result of every finished job (goal or recording) | reliable, transient local |
| pub | `kinema4d/inference/status` | std_msgs/String JSON: counters, busy, last rejection reason | reliable, transient local |

| parameter | default | meaning |
|---|---|---|
| robot | panda | robot config name or yaml path (read-only) |
| calibration_file | "" | camera calibration yaml (intrinsics + T_base_camera); required to simulate |
| calibration_source | file | T_base_camera from calibration_file (file) or looked up in TF, base frame -> optical frame (tf; kinema4d_ros.camera_tf) |
| follow_calibration_node | true | reload calibration_file when calibration_node announces another file (or a save over it) on `calibration/file` (kinema4d_ros.camera_tf) |
| backend | static-scene | kinema4d, kinema4d-tiny, kinema4d-mini or static-scene (baseline); loaded once at start (read-only) |
| base_path / checkpoint_path / variant / device / dtype / offload | | backend options ("" = backend default) |
| output_root | runs | run folders are written to <output_root>/<run-id>/ |
| n_frames | 49 | frames to generate with static-scene (model backends use their checkpoint's count) |
| seed / steps / guidance / guidance_mode | 42 / 0 / 5.0 / faithful | defaults for goals that leave them 0 / empty (steps 0: 50 for kinema4d, 10 for kinema4d-mini, 2 for kinema4d-tiny) |
| use_depth | true | pass the latest depth image as first depth |
| use_camera_info | true | intrinsics / frame id from camera/camera_info (size checked against the calibration) |
| image_transport / depth_transport | raw / raw | compressed: `<image topic>/compressed`; compressedDepth: `<depth topic>/compressedDepth` (read-only) |
| rescale_to_stream | false | an image / camera_info of another size than the calibration: refused (false) or the calibration rescaled (true) |
| publish_prediction | true | publish the generated frames on kinema4d/prediction/* |
| prediction_timing | stamped | stamped: all frames at once, frame i stamped start + t_i; realtime: frame i published at start + t_i (wall clock), same stamps |
| points_stride | 2 | pixel stride of the published prediction point clouds |
| write_points | true | also write points/frame_XXX.ply into the run folder |
| max_record_samples | 20000 | joint states kept per recording (later ones are dropped and counted) |
| joint_state_topics / joint_name_map / joint_name_prefix / fixed_joint_values | | joint inputs (docs/ros.md) |
| stamp_reset_jump_s / clock_skew_tolerance_s | 5.0 / 0.5 | stamp order; a reset (bag loop, clock jump) while recording restarts the recording |

Concurrency: one job at a time. Generation runs on an executor thread of a
MultiThreadedExecutor (action callbacks are reentrant), so feedback, cancel requests, image
subscriptions and services keep working while it runs. A goal that arrives while a job runs is
REJECTED (the client sees ``accepted == False`` and the node logs which run is busy);
record/stop while busy answers success=false. Invalid goals are accepted and then aborted with a
result whose ``message`` names the field, the problem and the fix. Run folders appear
atomically: everything is written into ``<output_root>/.<run-id>.partial`` and renamed.

Prediction timing: frame i is stamped ``start + t_i`` where start is the stamp of the camera
image the prediction was conditioned on (its first frame; the node clock when that image has no
stamp) and ``t_i`` the frame's time in the episode (``prediction_times``: the recorded
frame stamps or the trajectory's times, relative to the first; ``i / 12 fps`` when the trajectory
has no times), so RViz, Foxglove and rosbag2 play the prediction back at its real rate. Image,
camera_info and points of one frame share the stamp and the optical frame id.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.duration import Duration
from rclpy.time import Time
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import String
from std_srvs.srv import Trigger

from kinema4d_core.errors import ConfigError, InputError, Kinema4DError
from kinema4d_core.registry import DEFAULT_BACKEND, backend_names, backend_spec, options_from_params
from kinema4d_core.rollout import frame_points
from kinema4d_interfaces.action import Simulate
from kinema4d_ros import qos
from kinema4d_ros.camera_tf import CALIBRATION_SOURCE_PARAMS, CalibrationFollower, CameraPose
from kinema4d_ros.conversions import (image_subscription_topic, image_to_depth, image_to_rgb, intrinsics_to_info,
                                      numpy_to_image, points_to_cloud, stamp_to_seconds, stream_camera)
from kinema4d_ros.diagnostics import OK, WARN, Diagnostics, Health, steady_timer
from kinema4d_ros.joint_input import JointInput
from kinema4d_ros.node_main import run_node
from kinema4d_ros.params import (DEPTH_TRANSPORT, IMAGE_TRANSPORT, JOINT_INPUT_PARAMS, RESCALE_TO_STREAM, STAMP_PARAMS,
                                 ParamSpec, declare_params, optional_calibration)

BACKENDS = backend_names()

#: Prediction streams: reliable and deep enough for one whole prediction published at once
#: (stamped timing), so a recorder (rosbag2) or viewer gets every frame.
PREDICTION_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.VOLATILE)
PREDICTION_FPS = 12.0    # frame rate of a prediction whose trajectory has no times (the videos' rate)


def prediction_times(rollout) -> np.ndarray:
    """(T,) seconds of each generated frame relative to the first: the episode's frame stamps
    (recorded camera frames, or the trajectory's times resampled) when there are T strictly
    increasing ones, else ``i / PREDICTION_FPS``."""
    n = len(rollout.rgb)
    stamps = (rollout.metadata.get("episode") or {}).get("frame_stamps")
    if stamps is not None and len(stamps) == n:
        t = np.asarray(stamps, dtype=np.float64)
        if n < 2 or np.all(np.diff(t) > 0):
            return t - t[0]
    return np.arange(n, dtype=np.float64) / PREDICTION_FPS


def prediction_start(first_stamp, clock) -> Time:
    """Stamp of the predicted frame 0: the conditioning camera image's ``header.stamp``; ``clock``'s
    now only when the image has no stamp (0, a driver that does not stamp)."""
    if first_stamp is not None and (first_stamp.sec or first_stamp.nanosec):
        return Time.from_msg(first_stamp, clock_type=clock.clock_type)
    return clock.now()


PARAMS = (
    ParamSpec("robot", "panda", "Robot config name (urdf/<name>.yaml) or path to a robot yaml.", read_only=True),
    ParamSpec("calibration_file", "", "Camera calibration yaml (intrinsics and T_base_camera).",
              check=lambda p: f"calibration_file '{p}' does not exist" if p and not Path(p).is_file() else None),
    *CALIBRATION_SOURCE_PARAMS,
    ParamSpec("backend", DEFAULT_BACKEND, "Generation backend, loaded once at start.", choices=BACKENDS,
              read_only=True),
    ParamSpec("base_path", "", "Wan2.1 I2V base folder (backend kinema4d).", read_only=True),
    ParamSpec("checkpoint_path", "", "Kinema4D checkpoint folder (kinema4d; optional for kinema4d-tiny).",
              read_only=True),
    ParamSpec("variant", "", "Checkpoint variant (rgb-pm or pm); empty: backend default.", read_only=True),
    ParamSpec("device", "", "cuda, cuda:N or cpu; empty: backend default.", read_only=True),
    ParamSpec("dtype", "", "bf16 or fp32; empty: backend default.", read_only=True),
    ParamSpec("offload", "", "none, model or group (kinema4d on small GPUs); empty: none.", read_only=True),
    ParamSpec("timestep_grid", "", "Sampling grid of the model backends: " + " or ".join(
        backend_spec("kinema4d").option("timestep_grid").choices) + "; empty: backend default (release).",
              read_only=True),
    ParamSpec("output_root", "runs", "Folder that receives one run folder per job."),
    ParamSpec("n_frames", 49, "Frames generated by static-scene (model backends use the checkpoint's).",
              min=2, max=500),
    ParamSpec("seed", 42, "Default seed for goals with seed 0.", min=0, max=2**31 - 1),
    ParamSpec("steps", 0, "Default denoising steps for goals with steps 0 (0: backend default).", min=0, max=1000),
    ParamSpec("guidance", 5.0, "Default guidance scale for goals with guidance 0.", min=0.0, max=50.0),
    ParamSpec("guidance_mode", "faithful", "Default guidance mode.", choices=("faithful", "single")),
    ParamSpec("use_depth", True, "Use the latest camera/depth/image_raw as first-frame depth."),
    ParamSpec("use_camera_info", True, "Take intrinsics and the optical frame id from camera/camera_info (its size "
              "must match the calibration, see rescale_to_stream); false: the calibration file's."),
    IMAGE_TRANSPORT,
    DEPTH_TRANSPORT,
    RESCALE_TO_STREAM,
    ParamSpec("publish_prediction", True, "Publish generated frames on kinema4d/prediction/*."),
    ParamSpec("prediction_timing", "stamped", "stamped: publish all frames at once, stamped start + frame time; "
              "realtime: also publish each frame at that time (wall clock).", choices=("stamped", "realtime")),
    ParamSpec("points_stride", 2, "Pixel stride of the published prediction point clouds.", min=1, max=64),
    ParamSpec("write_points", True, "Write points/frame_XXX.ply into each run folder."),
    ParamSpec("max_record_samples", 20000, "Joint states kept per recording (later ones are dropped).",
              min=2, max=10_000_000),
    *JOINT_INPUT_PARAMS,
    *STAMP_PARAMS,
)


@dataclass
class Job:
    """One simulation: a trajectory, the first frame (and depth) and the generation options."""

    run_id: str
    source: str                         # "goal" | "recording"
    output_dir: Path
    trajectory: Any                     # kinema4d_core.trajectory.JointTrajectory
    first_frame: np.ndarray             # (H, W, 3) uint8 RGB
    first_depth: np.ndarray | None      # (H, W) float32 metres
    frame_id: str
    options: dict = field(default_factory=dict)
    camera: Any = None                  # the stream's CameraModel (camera_info intrinsics); None: the calibration
    first_stamp: Any = None             # builtin_interfaces/Time of the first frame's camera image (header.stamp)


def new_run_id(source: str) -> str:
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{source}-{os.getpid() % 10000:04d}{int(time.time() * 1e3) % 1000:03d}"


class InferenceNode(Node):
    """Simulate action server + recording services (see module docstring)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("inference_node", **kwargs)
        self.health = Health(lambda text: self.get_logger().warning(text))
        self.p = declare_params(self, PARAMS, self._on_params)
        from kinema4d_core.robot import load_robot

        self.robot = load_robot(self.p["robot"])
        self.camera = optional_calibration(self.p["calibration_file"], self.robot)
        self._lock = threading.Lock()
        self._busy: str | None = None          # run id / "goal" while a job runs
        self._image: Image | None = None
        self._depth: Image | None = None
        self._stream_camera = None             # CameraModel from the last accepted camera_info
        self._recording: list[tuple[float, np.ndarray]] | None = None   # (stamp s, q in robot order)
        self._record_image: Image | None = None
        self._threads: list[threading.Thread] = []
        self.backend = self._make_backend()
        self.pose = CameraPose(self, self.p["calibration_source"])
        self.follower = CalibrationFollower(self, self.p)    # calibration_node's file changes

        group = ReentrantCallbackGroup()
        self._image_topic, image_type = image_subscription_topic(self, "camera/image_raw", self.p["image_transport"])
        self._depth_topic, depth_type = image_subscription_topic(self, "camera/depth/image_raw",
                                                                 self.p["depth_transport"])
        self.create_subscription(image_type, self._image_topic, self._on_image, qos.SENSOR_IN, callback_group=group)
        self.create_subscription(depth_type, self._depth_topic, self._on_depth, qos.SENSOR_IN, callback_group=group)
        self.create_subscription(CameraInfo, "camera/camera_info", self._on_camera_info, qos.SENSOR_IN,
                                 callback_group=group)
        self.joints = JointInput(self, self.robot, self.p, self.health, self._on_joints, callback_group=group,
                                 on_reset=self._on_stamp_reset)
        self.pub_image = self.create_publisher(Image, "kinema4d/prediction/image", PREDICTION_QOS)
        self.pub_info = self.create_publisher(CameraInfo, "kinema4d/prediction/camera_info", PREDICTION_QOS)
        self.pub_points = self.create_publisher(PointCloud2, "kinema4d/prediction/points", PREDICTION_QOS)
        self.pub_done = self.create_publisher(String, "kinema4d/run_done", qos.LATCHED)
        self.pub_status = self.create_publisher(String, "kinema4d/inference/status", qos.LATCHED)
        self.create_service(Trigger, "kinema4d/record/start", self._on_record_start, callback_group=group)
        self.create_service(Trigger, "kinema4d/record/stop", self._on_record_stop, callback_group=group)
        self.action = ActionServer(self, Simulate, "kinema4d/simulate", execute_callback=self._execute,
                                   goal_callback=self._on_goal, cancel_callback=lambda _h: CancelResponse.ACCEPT,
                                   callback_group=group)
        steady_timer(self, 0.5, self._publish_status, callback_group=group)
        self._stage = "idle"                    # the running job's stage (feedback), for /diagnostics
        self.diagnostics = Diagnostics(self, self.health, self._diagnostic_state, callback_group=group)
        self.get_logger().info(f"inference ready: backend={self.backend.name} robot={self.robot.config.name} "
                               f"output_root={self.p['output_root']} images={self._image_topic} "
                               f"depth={self._depth_topic}")

    # ---- set-up -----------------------------------------------------------------------------
    def _on_params(self, changed: dict) -> str | None:
        err = self.joints.update_params(changed)
        if err:
            return err
        if "calibration_file" in changed:
            try:
                self.camera = optional_calibration(changed["calibration_file"], self.robot)
            except Kinema4DError as exc:
                return str(exc)
            self._stream_camera = None          # re-judged against the new calibration at the next camera_info
        if "calibration_source" in changed:
            self.pose.source = changed["calibration_source"]
        if "rescale_to_stream" in changed or changed.get("use_camera_info") is False:
            self._stream_camera = None
        self.p.update(changed)
        return None

    def _make_backend(self):
        from kinema4d_core.backends import make_backend

        name = self.p["backend"]
        opts = options_from_params(name, self.p)    # "" parameters: the backend's own default
        started = time.perf_counter()
        backend = make_backend(name, **opts)
        load = getattr(backend, "load", None)
        if callable(load):
            load()                                  # load the model once, now, not on the first goal
        self.get_logger().info(f"backend {name} ready in {time.perf_counter() - started:.1f} s")
        return backend

    # ---- inputs -----------------------------------------------------------------------------
    def _stream_check_camera(self):
        """The camera images are checked against: the accepted camera_info's, else the calibration."""
        return self._stream_camera if self.p["use_camera_info"] and self._stream_camera is not None else self.camera

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.health.count("camera_info_received")
        if not self.p["use_camera_info"] or self.camera is None:
            return
        try:   # the one rule (conversions.stream_camera -> camera.match_stream), as in every node
            self._stream_camera = stream_camera(self.camera, msg, rescale=bool(self.p["rescale_to_stream"]),
                                                source="camera/camera_info")
        except Kinema4DError as exc:
            self._stream_camera = None
            self.health.reject("camera_info", str(exc))

    def _on_image(self, msg) -> None:
        self.health.count("images_received")
        try:
            rgb = image_to_rgb(msg, self._image_topic)
            camera = self._stream_check_camera()
            if camera is not None:
                from kinema4d_core.camera import match_stream

                match_stream(camera, rgb.shape[1], rgb.shape[0], rescale=bool(self.p["rescale_to_stream"]),
                             source=self._image_topic)
        except Kinema4DError as exc:
            self.health.reject("image", str(exc))
            return
        with self._lock:
            self._image = msg
            if self._recording is not None and self._record_image is None:
                self._record_image = msg

    def _on_depth(self, msg) -> None:
        self.health.count("depth_received")
        try:
            image_to_depth(msg, self._depth_topic)
        except Kinema4DError as exc:
            self.health.reject("depth", str(exc))
            return
        self._depth = msg

    def _on_joints(self, merged, stamp_msg) -> None:
        """A complete merged joint state (JointInput) -> the recording, if one runs."""
        with self._lock:
            if self._recording is None:
                return
            if len(self._recording) >= self.p["max_record_samples"]:
                self.health.drop("record_full", f"recording holds max_record_samples={self.p['max_record_samples']}")
                return
            stamp = stamp_to_seconds(stamp_msg) or self.get_clock().now().nanoseconds * 1e-9
            self._recording.append((stamp, merged.q))

    def _on_stamp_reset(self, reason: str) -> None:
        """A bag loop / clock jump: samples of the old timeline must not mix with the new one."""
        with self._lock:
            if self._recording:
                self.get_logger().warning(f"recording restarted ({len(self._recording)} samples dropped): {reason}")
                self._recording = []

    # ---- recording --------------------------------------------------------------------------
    def _on_record_start(self, _req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        with self._lock:
            restarted = self._recording is not None
            self._recording = []
            self._record_image = self._image
        resp.success = True
        resp.message = "recording restarted" if restarted else "recording"
        self.get_logger().info(f"record/start: {resp.message}")
        return resp

    def _on_record_stop(self, _req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        with self._lock:
            if self._recording is None:
                resp.success, resp.message = False, "not recording: call kinema4d/record/start first"
                return resp
            if self._busy is not None:
                resp.success = False
                resp.message = f"busy with run {self._busy}; call record/stop again when it has finished"
                return resp
            samples, image = self._recording, self._record_image
            self._recording, self._record_image = None, None
            run_id = new_run_id("recording")
            try:
                traj = self._trajectory_from_samples(samples)
                job = self._make_job(run_id, "recording", traj, image, "", {})
            except Kinema4DError as exc:
                resp.success, resp.message = False, str(exc)
                self.get_logger().warning(f"record/stop: {exc}")
                return resp
            self._busy = run_id
        thread = threading.Thread(target=self._run_recording_job, args=(job,), name=f"job-{run_id}", daemon=True)
        self._threads.append(thread)
        thread.start()
        resp.success = True
        resp.message = json.dumps({"run_id": run_id, "output_dir": str(job.output_dir), "samples": len(samples)})
        self.get_logger().info(f"record/stop: simulating {len(samples)} joint states as run {run_id}")
        return resp

    def _trajectory_from_samples(self, samples: list[tuple[float, np.ndarray]]):
        from kinema4d_core.trajectory import JointTrajectory

        rows, stamps = [], []
        for stamp, q in sorted(samples, key=lambda s: s[0]):
            if stamps and stamp <= stamps[-1]:
                continue                            # duplicate stamp: keep the first
            rows.append(q)
            stamps.append(stamp)
        if len(rows) < 2:
            raise InputError(f"only {len(rows)} usable joint states were recorded", field="recording",
                             fix="publish joint_states while recording (at least two distinct stamps)")
        # measured states: kinema4d_core.service clips overshoot within LIMIT_SLACK and refuses more
        return JointTrajectory(self.robot.joint_names, np.stack(rows), np.asarray(stamps) - stamps[0])

    def _run_recording_job(self, job: Job) -> None:
        try:
            self._run_and_report(job, lambda *_: None, lambda: False)
        finally:
            with self._lock:
                self._busy = None

    # ---- action -----------------------------------------------------------------------------
    def _on_goal(self, _goal: Simulate.Goal) -> GoalResponse:
        with self._lock:
            if self._busy is not None:
                self.health.count("goals_rejected_busy")
                self.get_logger().warning(f"rejected Simulate goal: busy with run {self._busy} "
                                          "(one job at a time; retry when it has finished)")
                return GoalResponse.REJECT
            self._busy = "goal"
        return GoalResponse.ACCEPT

    def _execute(self, goal_handle) -> Simulate.Result:
        goal = goal_handle.request
        run_id = new_run_id("goal")
        with self._lock:
            self._busy = run_id
        try:
            def feedback(stage: str, step: int, total: int) -> None:
                goal_handle.publish_feedback(Simulate.Feedback(stage=stage, step=int(step), total_steps=int(total)))

            try:
                feedback("preparing", 0, 0)
                traj = self._trajectory_from_goal(goal)
                options = {"seed": goal.seed, "steps": goal.steps, "guidance": goal.guidance,
                           "guidance_mode": goal.guidance_mode}
                with self._lock:
                    image = self._image
                job = self._make_job(run_id, "goal", traj, image, goal.output_dir, options)
            except Kinema4DError as exc:
                summary = self._summary(run_id, "goal", "failed", str(exc))
                self._finish(summary)
                goal_handle.abort()
                return self._result(summary)
            summary = self._run_and_report(job, feedback, lambda: goal_handle.is_cancel_requested)
            if summary["status"] == "succeeded":
                goal_handle.succeed()
            elif summary["status"] == "canceled":
                goal_handle.canceled()
            else:
                goal_handle.abort()
            return self._result(summary)
        finally:
            with self._lock:
                self._busy = None

    def _trajectory_from_goal(self, goal: Simulate.Goal):
        from kinema4d_core import trajectory as tj

        has_joints = len(goal.trajectory.points) > 0
        has_poses = len(goal.ee_poses) > 0
        if has_joints == has_poses:
            raise InputError("give exactly one of trajectory.points or ee_poses" if has_joints else "empty goal",
                             field="goal.trajectory/ee_poses", fix="fill trajectory (joint positions) or ee_poses")
        if has_joints:
            names = list(goal.trajectory.joint_names)
            rows = []
            for i, pt in enumerate(goal.trajectory.points):
                if len(pt.positions) != len(names):
                    raise InputError(f"point {i} has {len(pt.positions)} positions for {len(names)} joint names",
                                     field="goal.trajectory.points.positions", fix="one position per joint name")
                rows.append(pt.positions)
            stamps = [stamp_to_seconds(pt.time_from_start) for pt in goal.trajectory.points]
            use_stamps = len(set(stamps)) == len(stamps) and all(b > a for a, b in zip(stamps, stamps[1:]))
            return tj.from_positions(self.robot, names, np.asarray(rows, dtype=np.float64),
                                     np.asarray(stamps) if use_stamps else None)
        poses = []
        base = self.robot.config.base_frame
        for i, ps in enumerate(goal.ee_poses):
            p, o = ps.pose.position, ps.pose.orientation
            pose = tj.pose_from_position_quaternion([p.x, p.y, p.z], [o.x, o.y, o.z, o.w])
            frame = ps.header.frame_id.lstrip("/")
            if frame and frame != base:
                T_base_frame = self.pose.tree.lookup(base, frame)
                if T_base_frame is None:
                    raise InputError(f"ee_poses[{i}] is in frame '{frame}', not the robot base frame '{base}', and "
                                     f"TF has no transform from '{base}' to '{frame}'",
                                     field="goal.ee_poses.header.frame_id",
                                     fix=f"give the poses in '{base}' (or leave frame_id empty), or publish TF "
                                         f"connecting '{frame}' to '{base}' (/tf or /tf_static)")
                pose = T_base_frame @ pose
            poses.append(pose)
        gripper = np.asarray(goal.gripper, dtype=np.float64) if len(goal.gripper) else None
        if gripper is not None and len(gripper) != len(poses):
            raise InputError(f"{len(gripper)} gripper values for {len(poses)} poses", field="goal.gripper",
                             fix="give one gripper opening per pose, or none")
        return tj.from_ee_poses(self.robot, np.stack(poses), gripper)

    # ---- the job ----------------------------------------------------------------------------
    def _make_job(self, run_id: str, source: str, traj, image: Image | None, output_dir: str,
                  options: dict) -> Job:
        if self.camera is None:
            raise ConfigError("no camera calibration", field="inference_node.calibration_file",
                              fix="set the calibration_file parameter to a calibration yaml")
        if image is None:
            raise InputError(f"no {self._image_topic} frame received yet", field=self._image_topic,
                             fix=f"publish camera images on {self._image_topic} before simulating "
                                 "(image_transport parameter: raw or compressed)")
        rgb = np.array(image_to_rgb(image, self._image_topic))
        depth = None
        if self.p["use_depth"] and self._depth is not None:
            d = image_to_depth(self._depth, self._depth_topic)
            if d.shape == rgb.shape[:2]:
                depth = d
            else:
                self.health.drop("depth_size", f"{self._depth_topic} is {d.shape[1]}x{d.shape[0]}, the image "
                                               f"{rgb.shape[1]}x{rgb.shape[0]}: depth not used (register it)")
        root = Path(self.p["output_root"])
        out = Path(output_dir) if output_dir else root / run_id
        camera = self._stream_camera if self.p["use_camera_info"] else None
        return Job(run_id=run_id, source=source, output_dir=out.resolve(), trajectory=traj, first_frame=rgb,
                   first_depth=depth, frame_id=self.camera.child_frame, options=options,   # the optical frame in TF
                   camera=camera, first_stamp=image.header.stamp)

    def _request(self, job: Job, progress: Callable):
        """The job as a ``kinema4d_core.service.EpisodeRequest`` (the service applies every rule)."""
        from kinema4d_core.service import EpisodeRequest

        o = job.options
        progress("projecting", 0, int(getattr(self.backend, "num_frames", self.p["n_frames"])))
        return EpisodeRequest(first_frame=job.first_frame, robot=self.robot,
                              camera=self.pose.resolve(job.camera or self.camera),
                              trajectory=job.trajectory, first_depth=job.first_depth,
                              rescale_to_stream=bool(self.p["rescale_to_stream"]),
                              stream_source=self._image_topic, calibration_source=self.p["calibration_file"],
                              n_frames=int(self.p["n_frames"]),
                              seed=int(o.get("seed") or self.p["seed"]), steps=int(o.get("steps") or self.p["steps"]),
                              guidance=float(o.get("guidance") or self.p["guidance"]),
                              guidance_mode=str(o.get("guidance_mode") or self.p["guidance_mode"]))

    def _tracking_stage(self, progress: Callable) -> Callable:
        """``progress`` that also remembers the stage for /diagnostics."""
        def tracked(stage: str, step: int, total: int) -> None:
            self._stage = f"{stage} {step}/{total}" if total else stage
            progress(stage, step, total)
        return tracked

    def _run_and_report(self, job: Job, progress: Callable, should_cancel: Callable[[], bool]) -> dict:
        """Run ``job``; always returns a summary dict and publishes it on kinema4d/run_done."""
        from kinema4d_core.service import Cancelled, prepare_episode, simulate_episode

        progress = self._tracking_stage(progress)       # the stage also goes to /diagnostics
        started = time.perf_counter()
        self.get_logger().info(f"run {job.run_id} ({job.source}): generating with {self.backend.name}")
        try:
            request = self._request(job, progress)
            prepared = prepare_episode(request, self.backend)
            if should_cancel():
                raise Cancelled("cancelled after projection")
            rollout = simulate_episode(prepared, self.backend, progress=progress, should_cancel=should_cancel)
            if should_cancel():
                raise Cancelled("cancelled after generation")
            progress("writing", 0, 1)
            rollout.metadata = dict(rollout.metadata, run_id=job.run_id, source=job.source,
                                    robot=self.robot.config.name)
            self._write_run(job, rollout)
            fitted = rollout.metric_fit_residual[np.isfinite(rollout.metric_fit_residual)]
            residual = float(fitted.mean()) if fitted.size else -1.0   # -1: no fit (e.g. the baseline)
            times = prediction_times(rollout)
            summary = self._summary(job.run_id, job.source, "succeeded", f"wrote {job.output_dir}",
                                    output_dir=str(job.output_dir), frames=int(len(rollout.rgb)),
                                    files=sorted(str(p.relative_to(job.output_dir))
                                                 for p in job.output_dir.rglob("*") if p.is_file()),
                                    duration_s=time.perf_counter() - started,
                                    metric_fit_residual_mean=residual, seed=int(request.seed),
                                    steps=int(prepared.info.get("steps") or 0),
                                    frame_period_s=float(times[-1] / (len(times) - 1)) if len(times) > 1 else 0.0)
            if self.p["publish_prediction"]:
                progress("publishing", 0, len(rollout.rgb))
                self._publish_prediction(rollout, job.frame_id, should_cancel, job.first_stamp)
        except Cancelled:
            summary = self._summary(job.run_id, job.source, "canceled", "cancelled on request",
                                    duration_s=time.perf_counter() - started)
        except Kinema4DError as exc:
            summary = self._summary(job.run_id, job.source, "failed", str(exc), duration_s=time.perf_counter() - started)
        except Exception as exc:  # report, never take the node down
            self.get_logger().error(traceback.format_exc())
            summary = self._summary(job.run_id, job.source, "failed", f"{type(exc).__name__}: {exc}",
                                    duration_s=time.perf_counter() - started)
        self._finish(summary)
        return summary

    def _write_run(self, job: Job, rollout) -> None:
        """Write the run folder all at once: stage in a hidden sibling, then rename."""
        from kinema4d_core.io import write_text
        from kinema4d_core.rollout import save_rollout

        final = job.output_dir
        if final.exists() and any(final.iterdir()):
            raise InputError(f"run folder {final} exists and is not empty", field="goal.output_dir",
                             fix="choose a new output_dir (or leave it empty for a fresh run id)")
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.parent / f".{final.name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            save_rollout(rollout, staging, points=bool(self.p["write_points"]))
            write_text(staging / "run.json", json.dumps({
                "run_id": job.run_id, "source": job.source, "backend": self.backend.name,
                "robot": self.robot.config.name, "frames": int(len(rollout.rgb)),
                "trajectory_frames": int(len(job.trajectory.positions)), "options": job.options}, indent=2))
            if final.exists():
                final.rmdir()
            os.replace(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _publish_prediction(self, rollout, frame_id: str, should_cancel: Callable[[], bool] = lambda: False,
                            first_stamp=None) -> None:
        """Publish the frames as a timed sequence (module docstring): image, camera_info and points
        of frame i stamped start + t_i in ``frame_id`` (the optical frame); start is ``first_stamp``,
        the stamp of the camera image the prediction was conditioned on (the node clock now when
        that image carries no stamp, 0)."""
        start = prediction_start(first_stamp, self.get_clock())
        wall0 = time.monotonic()
        realtime = self.p["prediction_timing"] == "realtime"
        stride = int(self.p["points_stride"])
        h, w = rollout.rgb.shape[1:3]
        for i, t_i in enumerate(prediction_times(rollout)):
            if realtime:
                delay = wall0 + t_i - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if should_cancel():
                    return
            stamp = (start + Duration(nanoseconds=int(round(t_i * 1e9)))).to_msg()
            self.pub_image.publish(numpy_to_image(rollout.rgb[i], "rgb8", frame_id, stamp))
            self.pub_info.publish(intrinsics_to_info(rollout.K, w, h, frame_id, stamp))
            xyz, rgb = frame_points(rollout.pointmap[i][::stride, ::stride], rollout.rgb[i][::stride, ::stride])
            self.pub_points.publish(points_to_cloud(xyz, frame_id, stamp, rgb))

    def _summary(self, run_id: str, source: str, status: str, message: str, **kw: Any) -> dict:
        out = {"run_id": run_id, "source": source, "success": status == "succeeded", "status": status,
               "message": message, "output_dir": "", "files": [], "frames": 0, "duration_s": 0.0,
               "backend": self.backend.name, "metric_fit_residual_mean": -1.0, "seed": 0, "steps": 0,
               "frame_period_s": 0.0}
        out.update(kw)
        return out

    def _finish(self, summary: dict) -> None:
        self.health.count(f"runs_{summary['status']}")
        text = f"run {summary['run_id']} {summary['status']}: {summary['message']}"
        if summary["success"]:  # rclpy forbids two severities at one call site
            self.get_logger().info(text)
        else:
            self.get_logger().warning(text)
        self.pub_done.publish(String(data=json.dumps(summary)))

    @staticmethod
    def _result(summary: dict) -> Simulate.Result:
        return Simulate.Result(success=summary["success"], status=summary["status"], message=summary["message"],
                               run_id=summary["run_id"], output_dir=summary["output_dir"],
                               files=list(summary["files"]), frames=int(summary["frames"]),
                               duration_s=float(summary["duration_s"]), backend=summary["backend"],
                               metric_fit_residual_mean=float(summary["metric_fit_residual_mean"]),
                               seed=int(summary["seed"]), steps=int(summary["steps"]),
                               frame_period_s=float(summary["frame_period_s"]))

    def _publish_status(self) -> None:
        with self._lock:
            busy, recording = self._busy, None if self._recording is None else len(self._recording)
        self.pub_status.publish(String(data=self.health.to_json(
            node=self.get_name(), backend=self.backend.name, busy=busy, recording_samples=recording,
            has_image=self._image is not None)))

    def _diagnostic_state(self) -> tuple[int, str, dict]:
        """Model state for /diagnostics: backend loaded, busy (run id and stage), inputs present."""
        with self._lock:
            busy = self._busy
        values = {"backend": self.backend.name, "model_loaded": True, "busy": busy or "",
                  "stage": self._stage if busy else "idle", "has_image": self._image is not None,
                  "has_calibration": self.camera is not None, "output_root": self.p["output_root"]}
        if self.camera is None:
            return WARN, "cannot simulate: no calibration (set the calibration_file parameter)", values
        if self._image is None:
            return WARN, f"cannot simulate yet: no image on {self._image_topic}", values
        if busy:
            return OK, f"{self.backend.name}: running {busy} ({values['stage']})", values
        return OK, f"{self.backend.name} loaded, idle", values

    def close(self) -> None:
        for t in self._threads:
            t.join(timeout=5.0)


def main(argv: list[str] | None = None) -> int:
    return run_node(InferenceNode, multithreaded=True, threads=4, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
