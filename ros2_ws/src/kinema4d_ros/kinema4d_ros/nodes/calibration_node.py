"""calibration_node: camera pose as a static transform, eye-to-hand calibration, overlay check.

| kind | name | type | QoS |
|---|---|---|---|
| pub | `/tf_static` | tf2_msgs/TFMessage: base -> camera_mount_frame (or base -> optical frame when it is empty; see Frames) | reliable, transient local, depth 1 |
| sub | `/tf`, `/tf_static` | tf2_msgs/TFMessage: the camera driver's mount -> optical transform (camera_mount_source tf) | tf2's |
| sub | `camera/image_raw` | sensor_msgs/Image rgb8 / bgr8 / rgba8 / bgra8 / mono8, or `camera/image_raw/compressed` jpeg / png with image_transport=compressed | sensor data (best effort, keep last 5) |
| sub | `joint_states` (each of `joint_state_topics`) | sensor_msgs/JointState, merged by name and stamp (kinema4d_ros.joint_input) | sensor data |
| sub | `sim/robot_mask` | sensor_msgs/Image mono8 (robot > 0), optional ground truth | best effort, keep last 2 |
| pub | `calibration/overlay` | sensor_msgs/Image rgb8: rendered robot mask over the camera image | reliable, keep last 2 |
| pub | `calibration/file` | std_msgs/String JSON {calibration_file (absolute), version}: the file in use, re-announced on change, reload and save over it (projector / inference follow it) | reliable, transient local, depth 1 |
| pub | `calibration/status` | std_msgs/String JSON (views, last solution, IoU / boundary px) | reliable, transient local |
| srv | `calibration/capture` | std_srvs/Trigger: detect the board in the latest image, store it with the latest joints | |
| srv | `calibration/solve` | std_srvs/Trigger: eye-to-hand solve over the captured views; publishes the new pose | |
| srv | `calibration/save` | std_srvs/Trigger: write the current calibration to save_file (else calibration_file when the user named it; previous kept as .bak) | |
| srv | `calibration/reload` | std_srvs/Trigger: re-read calibration_file (drops an unsaved solution) | |
| srv | `calibration/clear` | std_srvs/Trigger: forget the captured views | |

| parameter | default | meaning |
|---|---|---|
| calibration_file | (required) | calibration YAML (kinema4d_core.camera format): intrinsics + extrinsics; a runtime change reloads it and republishes the TF |
| camera_mount_frame | "" | publish base -> this frame (e.g. camera_link); empty: base -> optical frame |
| camera_mount_source | tf | mount -> optical from the camera driver's TF (tf) or from extrinsics.T_mount_optical of the file (file, also published) |
| save_file | "" | where calibration/save writes; empty: calibration_file if save_to_calibration_file |
| save_to_calibration_file | true | false when calibration_file is a packaged default the user did not name (bring-up sets it): save then needs save_file |
| robot | panda | robot config name or yaml path (read-only) |
| board_file | calibration/charuco_board.yaml of the repository | ChArUco board YAML (read-only) |
| min_corners | 6 | views with fewer detected corners are rejected (with the reason) |
| min_views | 4 | views needed by calibration/solve |
| overlay_period_s | 0.5 | period of the overlay/score update (0 disables the overlay; read-only) |
| max_stamp_gap_s | 0.2 | score only when image and robot mask stamps differ by at most this |
| image_transport | raw | raw or compressed (`<camera/image_raw>/compressed`; read-only) |
| rescale_to_stream | false | overlay: an image of another size than the calibration is refused (false) or the calibration rescaled (true); capture always needs the calibrated size |

Frames (kinema4d_ros.camera_tf, docs/ros.md): without camera_mount_frame the static transform
is T_base_camera of the calibration file (parent = robot base frame, child = camera optical
frame), metres. With camera_mount_frame (e.g. camera_link) it is base -> mount =
T_base_camera @ inv(T_mount_optical), where T_mount_optical is the camera driver's TF (looked up;
we never publish it, so the optical frame keeps its one parent) or the file's (then published
too). Until the driver's transform arrives nothing is published (counted, retried every second). The captured board frame is fixed on
the robot's ee_frame. A solution from calibration/solve is used at once (transform, overlay)
but written only by calibration/save.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from kinema4d_core.errors import Kinema4DError
from kinema4d_ros import qos
from kinema4d_ros.camera_tf import CAMERA_TF_PARAMS, CalibrationAnnouncer, TfTree, camera_transforms
from kinema4d_ros.conversions import (image_subscription_topic, image_to_numpy, image_to_rgb, matrix_to_transform,
                                      numpy_to_image, stamp_to_seconds)
from kinema4d_ros.diagnostics import OK, WARN, Diagnostics, Health, steady_timer
from kinema4d_ros.joint_input import JointInput
from kinema4d_ros.node_main import run_node
from kinema4d_ros.params import (IMAGE_TRANSPORT, JOINT_INPUT_PARAMS, RESCALE_TO_STREAM, STAMP_PARAMS, ParamSpec,
                                 declare_params)


def default_board_file() -> str:
    """calibration/charuco_board.yaml of the repository this package runs from."""
    import kinema4d_core

    return str(Path(kinema4d_core.__file__).resolve().parents[1] / "calibration" / "charuco_board.yaml")


def _check_required_file(path: str) -> str | None:
    if not path:
        return "calibration_file is required (a calibration YAML with intrinsics and extrinsics)"
    if not Path(path).is_file():
        return f"calibration_file '{path}' does not exist"
    return None


PARAMS = (
    ParamSpec("calibration_file", "", "Calibration YAML (intrinsics + extrinsics T_base_camera).",
              check=_check_required_file),
    ParamSpec("robot", "panda", "Robot config name (urdf/<name>.yaml) or path to a robot yaml.", read_only=True),
    ParamSpec("board_file", "", "ChArUco board YAML (empty: calibration/charuco_board.yaml of the repository); "
              "read at start.", read_only=True),
    ParamSpec("min_corners", 6, "Reject views with fewer detected ChArUco corners.", min=4, max=10000),
    ParamSpec("min_views", 4, "Usable views needed by calibration/solve.", min=3, max=10000),
    ParamSpec("overlay_period_s", 0.5, "Overlay / score update period in seconds (0 disables).", min=0.0, max=60.0,
              read_only=True),
    ParamSpec("max_stamp_gap_s", 0.2, "Score only when image and sim/robot_mask stamps differ by at most this.",
              min=0.0, max=60.0),
    ParamSpec("save_file", "", "Where calibration/save writes (empty: calibration_file, if "
              "save_to_calibration_file)."),
    ParamSpec("save_to_calibration_file", True, "Let calibration/save overwrite calibration_file when save_file "
              "is empty (bring-up sets false for a packaged default calibration the user did not name)."),
    *CAMERA_TF_PARAMS,
    IMAGE_TRANSPORT,
    RESCALE_TO_STREAM,
    *JOINT_INPUT_PARAMS,
    *STAMP_PARAMS,
)


class CalibrationNode(Node):
    """Static camera transform + calibration services + overlay (see module docstring)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("calibration_node", **kwargs)
        self.health = Health(lambda text: self.get_logger().warning(text))
        self.p = declare_params(self, PARAMS, self._on_params)
        from kinema4d_core.calibration.board import load_board
        from kinema4d_core.camera import load_calibration

        self._lock = threading.Lock()
        self.camera = load_calibration(self.p["calibration_file"])
        self.save_to_file = bool(self.p["save_to_calibration_file"])
        self.board = load_board(self.p["board_file"] or default_board_file())
        self.unsaved = False
        self.views: list = []                 # HandEyeView
        self.last_solution: dict | None = None
        self.last_score: dict | None = None
        self._image: Image | None = None
        self._gt_mask: Image | None = None
        self._robot = None
        self._mask_renderer = None
        self._mask_renderer_camera = None

        self.pub_tf = self.create_publisher(TFMessage, "/tf_static", qos.LATCHED)
        self.tf_tree = TfTree(self)
        self._tf_published: list | None = None   # the (parent, child, T) last published; None: pending
        steady_timer(self, 1.0, self._tf_tick, callback_group=MutuallyExclusiveCallbackGroup())
        self.pub_overlay = self.create_publisher(Image, "calibration/overlay", qos.STREAM_OUT)
        self.pub_status = self.create_publisher(String, "calibration/status", qos.LATCHED)
        self._image_topic, image_type = image_subscription_topic(self, "camera/image_raw", self.p["image_transport"])
        self.create_subscription(image_type, self._image_topic, self._on_image, qos.SENSOR_IN)
        self.joints = JointInput(self, self.robot, self.p, self.health, None)   # latest merged state on demand
        self.create_subscription(Image, "sim/robot_mask", self._on_gt_mask, qos.stream_in())
        services = MutuallyExclusiveCallbackGroup()
        for name, handler in (("capture", self._srv_capture), ("solve", self._srv_solve), ("save", self._srv_save),
                              ("reload", self._srv_reload), ("clear", self._srv_clear)):
            self.create_service(Trigger, f"calibration/{name}", self._wrap(name, handler), callback_group=services)
        if self.p["overlay_period_s"] > 0:
            steady_timer(self, self.p["overlay_period_s"], self._overlay_tick,
                         callback_group=MutuallyExclusiveCallbackGroup())
        self._publish_tf()
        self.announcer = CalibrationAnnouncer(self)     # projector / inference follow this file
        self.announcer.announce(self.p["calibration_file"])
        self._publish_status()
        self.diagnostics = Diagnostics(self, self.health, lambda: (
            OK if self._tf_published is not None else WARN,
            ("" if self._tf_published is not None else "camera TF not published yet (see the log); ")
            + f"{self.camera.parent_frame} -> {self.camera.child_frame} from {self.p['calibration_file']}",
            {"calibration_file": self.p["calibration_file"], "views_captured": len(self.views),
             "unsaved": self.unsaved}))
        self.get_logger().info(
            f"calibration ready: {self.camera.parent_frame} -> {self.camera.child_frame} from "
            f"{self.p['calibration_file']}; board {self.board.squares_x}x{self.board.squares_y} {self.board.dictionary}")

    # ---- helpers ----------------------------------------------------------------------------
    @property
    def robot(self):
        if self._robot is None:
            from kinema4d_core.robot import load_robot

            self._robot = load_robot(self.p["robot"])
        return self._robot

    def _on_params(self, changed: dict) -> str | None:
        err = self.joints.update_params(changed)
        if err:
            return err
        if "calibration_file" in changed:
            from kinema4d_core.camera import load_calibration

            try:
                camera = load_calibration(changed["calibration_file"])
            except Kinema4DError as exc:
                return str(exc)
            with self._lock:
                self.camera, self.unsaved = camera, False
                self.save_to_file = True        # the user named this file
            self.get_logger().info(f"calibration_file changed: reloaded {changed['calibration_file']}")
        if "save_to_calibration_file" in changed:
            self.save_to_file = bool(changed["save_to_calibration_file"])
        self.p.update(changed)
        if {"calibration_file", "camera_mount_frame", "camera_mount_source"} & set(changed):
            self._publish_tf()
        if "calibration_file" in changed:
            self.announcer.announce(changed["calibration_file"])
        return None

    def _publish_tf(self) -> None:
        """Publish the camera's static transforms (camera_tf.camera_transforms); while the camera driver's
        mount -> optical transform is missing, count it and let _tf_tick retry."""
        try:
            edges = camera_transforms(self.camera, self.p["camera_mount_frame"], self.p["camera_mount_source"],
                                      self.tf_tree)
        except Kinema4DError as exc:
            self._tf_published = None
            self.health.drop("tf_pending", str(exc))
            return
        stamp = self.get_clock().now().to_msg()
        self.pub_tf.publish(TFMessage(transforms=[matrix_to_transform(T, parent, child, stamp)
                                                  for parent, child, T in edges]))
        if self._tf_published is None or [e[:2] for e in self._tf_published] != [e[:2] for e in edges]:
            self.get_logger().info("camera TF: " + ", ".join(f"{a} -> {b}" for a, b, _ in edges))
        self._tf_published = edges

    def _tf_tick(self) -> None:
        if self._tf_published is None:
            with self._lock:
                self._publish_tf()

    def _publish_status(self) -> None:
        cam = self.camera
        self.pub_status.publish(String(data=self.health.to_json(
            node=self.get_name(), calibration_file=self.p["calibration_file"], unsaved=self.unsaved,
            parent_frame=cam.parent_frame, child_frame=cam.child_frame,
            translation=[float(v) for v in cam.T_base_camera[:3, 3]],
            views_captured=len(self.views), last_solution=self.last_solution, overlay=self.last_score)))

    def _wrap(self, name, handler):
        def call(request, response):
            try:
                with self._lock:
                    response.success, response.message = handler()
            except Kinema4DError as exc:
                response.success, response.message = False, str(exc)
            except Exception as exc:  # a bug must not take the node down
                response.success, response.message = False, f"internal error: {type(exc).__name__}: {exc}"
            text = f"calibration/{name}: {response.message}"
            if response.success:
                self.get_logger().info(text)
            else:
                self.get_logger().warning(text)
            self._publish_status()
            return response
        return call

    # ---- inputs -----------------------------------------------------------------------------
    def _on_image(self, msg) -> None:
        self._image = msg

    def _on_gt_mask(self, msg: Image) -> None:
        self._gt_mask = msg

    def _latest_q(self) -> np.ndarray:
        """(N,) positions of the robot's joints from the latest joint state; InputError with the reason
        (none yet, names / positions length mismatch, duplicate or missing joints, NaN / inf)."""
        return self.joints.latest()[0].q

    # ---- services ---------------------------------------------------------------------------
    def _srv_capture(self) -> tuple[bool, str]:
        from kinema4d_core.calibration.board import detect_charuco, rejection_reason
        from kinema4d_core.calibration.handeye import HandEyeView
        from kinema4d_core.camera import match_stream

        img = self._image
        if img is None:
            return False, f"no {self._image_topic} received yet"
        q = self._latest_q()
        rgb = image_to_rgb(img, self._image_topic)
        # hand-eye views are solved with the calibration's intrinsics: never rescaled here
        match_stream(self.camera, rgb.shape[1], rgb.shape[0], source=self._image_topic)
        det = detect_charuco(rgb, self.board)
        reason = rejection_reason(det, self.board, int(self.p["min_corners"]))
        if reason is not None:
            return False, f"view rejected: {reason}"
        name = f"view_{len(self.views):03d}"
        self.views.append(HandEyeView(name, self.robot.ee_pose(q), det))
        return True, f"captured {name}: {det.n_corners} corners ({len(self.views)} views)"

    def _srv_solve(self) -> tuple[bool, str]:
        from kinema4d_core.calibration.handeye import solve_eye_to_hand

        result = solve_eye_to_hand(self.views, self.board, self.camera, min_corners=int(self.p["min_corners"]),
                                   min_views=int(self.p["min_views"]))
        self.camera = self.camera.with_pose(result.T_base_camera)
        self.unsaved = True
        self.last_solution = {"views_used": result.n_used, "rms_px": result.rms_px,
                              "translation_std_m": result.translation_std_m,
                              "rotation_std_deg": result.rotation_std_deg,
                              "per_view_rms_px": {v.name: v.rms_px for v in result.views if v.used}}
        self._publish_tf()
        return True, (f"solved from {result.n_used} views: rms {result.rms_px:.3f} px, spread "
                      f"{result.translation_std_m * 1000:.2f} mm / {result.rotation_std_deg:.3f} deg (not saved yet)")

    def _srv_save(self) -> tuple[bool, str]:
        from kinema4d_core.camera import save_calibration

        target = self.p["save_file"] or (self.p["calibration_file"] if self.save_to_file else "")
        if not target:
            return False, (f"not saved: calibration_file {self.p['calibration_file']} is the packaged default, "
                           "not a file you named; set save_file (ros2 param set /calibration_node save_file "
                           "/path/my_camera.yaml) or start with --calibration PATH")
        save_calibration(self.camera, target)
        self.unsaved = False
        if Path(target).resolve() == Path(self.p["calibration_file"]).resolve():
            self.announcer.announce(target)             # the followers re-read the saved file
        return True, f"wrote {target} (previous kept as .bak)"

    def _srv_reload(self) -> tuple[bool, str]:
        from kinema4d_core.camera import load_calibration

        self.camera = load_calibration(self.p["calibration_file"])
        self.unsaved = False
        self._publish_tf()
        self.announcer.announce(self.p["calibration_file"])
        t = self.camera.T_base_camera[:3, 3]
        return True, f"reloaded {self.p['calibration_file']}: camera at [{t[0]:.4f}, {t[1]:.4f}, {t[2]:.4f}] m"

    def _srv_clear(self) -> tuple[bool, str]:
        n = len(self.views)
        self.views.clear()
        return True, f"cleared {n} views"

    # ---- overlay ----------------------------------------------------------------------------
    def _overlay_tick(self) -> None:
        img = self._image
        if img is None or not self.joints.has_data():
            return
        try:
            self._overlay(img)
        except Kinema4DError as exc:
            self.health.reject("overlay", str(exc))
        except Exception as exc:
            self.health.reject("internal", f"{type(exc).__name__}: {exc}")

    def _overlay(self, img: Image) -> None:
        from kinema4d_core.calibration.overlay import MaskRenderer, overlay_image, score_masks

        t0 = time.perf_counter()
        with self._lock:
            camera = self.camera
            q = self._latest_q()
        from kinema4d_core.camera import match_stream

        rgb = image_to_rgb(img, self._image_topic)
        # the one size rule (refused -> counted as a rejection by _overlay_tick; rescaled on request)
        camera = match_stream(camera, rgb.shape[1], rgb.shape[0], rescale=bool(self.p["rescale_to_stream"]),
                              source=self._image_topic)
        if self._mask_renderer is None or self._mask_renderer_camera is not camera:
            self._mask_renderer = MaskRenderer(self.robot, camera)
            self._mask_renderer_camera = camera
        mask = self._mask_renderer.mask(q)
        gt = self._gt_mask
        reference = None
        if gt is not None:
            gap = abs(stamp_to_seconds(gt.header.stamp) - stamp_to_seconds(img.header.stamp))
            ref = image_to_numpy(gt, "sim/robot_mask")
            ref = ref[..., 0] if ref.ndim == 3 else ref
            if gap <= float(self.p["max_stamp_gap_s"]) and ref.shape == mask.shape:
                reference = ref > 0
                score = score_masks(mask, reference).as_dict()
                score["stamp_gap_s"] = gap
                self.last_score = score
            else:
                self.health.drop("robot_mask", f"sim/robot_mask not matching the image (gap {gap:.3f} s, "
                                               f"shape {ref.shape})")
        out = overlay_image(rgb, mask, reference)
        self.pub_overlay.publish(numpy_to_image(out, "rgb8", camera.child_frame, img.header.stamp))
        self.health.count("overlays")
        self.health.latency((time.perf_counter() - t0) * 1e3)
        self._publish_status()


def main(argv: list[str] | None = None) -> int:
    return run_node(CalibrationNode, multithreaded=True, threads=3, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
