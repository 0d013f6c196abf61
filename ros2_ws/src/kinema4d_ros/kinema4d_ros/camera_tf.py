"""Camera pose and the TF tree: the one place that reads TF and decides what the camera publishes.

Frames (REP-103 / REP-105): the robot base frame (``base_link``, ``panda_link0``; the
calibration's ``extrinsics.parent_frame``), the camera's mount frame (``camera_link``, body axes
x forward, y left, z up; owned by the camera driver or by us) and the camera optical frame
(``camera_color_optical_frame``: x right, y down, z forward; the calibration's
``extrinsics.child_frame``). All outputs (pointmaps, clouds, predictions) are stamped in the optical
frame, which is in the tree either way.

- ``TfTree``: latest transform per child frame from ``/tf`` and ``/tf_static`` (no tf2_ros
  needed); ``lookup(parent, child)`` composes the chain, metres.
- ``camera_transforms``: what the calibration node publishes for a mount-frame setting
  (never a second parent for a frame another node owns).
- ``CameraPose``: the T_base_camera a node renders with: from the calibration file
  (``calibration_source: file``) or looked up in TF (``calibration_source: tf``).
- ``CalibrationAnnouncer`` / ``CalibrationFollower``: the calibration node announces the file it
  uses on ``calibration/file`` (latched); projector and inference follow it
  (``follow_calibration_node``), so one ``calibration_file`` change (or a save over that file)
  reloads it everywhere and TF and outputs agree.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage

from kinema4d_core.errors import InputError
from kinema4d_ros.conversions import transform_to_matrix
from kinema4d_ros.params import ParamSpec

#: tf2_ros's subscriber profiles
TF_SUB_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)
TF_STATIC_SUB_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                               reliability=ReliabilityPolicy.RELIABLE,
                               durability=DurabilityPolicy.TRANSIENT_LOCAL)

#: Calibration source of nodes that render in the camera (projector, inference).
CALIBRATION_SOURCE_PARAMS = (
    ParamSpec("calibration_source", "file", "Where T_base_camera comes from: 'file' (calibration_file "
              "extrinsics) or 'tf' (look up base frame -> optical frame in /tf, /tf_static; intrinsics "
              "still from calibration_file / camera_info).", choices=("file", "tf")),
    ParamSpec("follow_calibration_node", True, "Reload calibration_file whenever calibration_node announces "
              "another file (or a save over it) on calibration/file, so every node uses the same calibration."),
)

#: where the calibration node announces its file (std_msgs/String JSON {calibration_file, version})
CALIBRATION_FILE_TOPIC = "calibration/file"

#: Camera TF publishing of the calibration node.
CAMERA_TF_PARAMS = (
    ParamSpec("camera_mount_frame", "", "Frame the calibrated pose is published to (base -> this), e.g. "
              "camera_link; empty: base -> the optical frame directly (no camera driver TF)."),
    ParamSpec("camera_mount_source", "tf", "Where the fixed mount -> optical transform comes from: 'tf' "
              "(the camera driver publishes it; we publish base -> mount only) or 'file' "
              "(extrinsics.T_mount_optical of the calibration, default the REP-103 axis change; we publish "
              "base -> mount and mount -> optical).", choices=("tf", "file")),
)


def _inverse(T: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out


class TfTree:
    """Latest transform per child frame from /tf and /tf_static (a frame has one parent in TF).

    ``parents`` maps child -> set of parents seen (more than one means a broken tree).
    """

    def __init__(self, node: Node, callback_group=None) -> None:
        self._lock = threading.Lock()
        self._edges: dict[str, tuple[str, np.ndarray]] = {}     # child -> (parent, T_parent_child)
        self.parents: dict[str, set[str]] = {}
        node.create_subscription(TFMessage, "/tf", self._on_tf, TF_SUB_QOS, callback_group=callback_group)
        node.create_subscription(TFMessage, "/tf_static", self._on_tf, TF_STATIC_SUB_QOS,
                                 callback_group=callback_group)

    def _on_tf(self, msg: TFMessage) -> None:
        with self._lock:
            for tr in msg.transforms:
                parent, child = tr.header.frame_id.lstrip("/"), tr.child_frame_id.lstrip("/")
                self._edges[child] = (parent, transform_to_matrix(tr))
                self.parents.setdefault(child, set()).add(parent)

    def parent_of(self, child: str) -> str | None:
        with self._lock:
            edge = self._edges.get(child)
        return None if edge is None else edge[0]

    def lookup(self, parent: str, child: str) -> np.ndarray | None:
        """(4,4) T_parent_child through the tree (latest transforms), or None when not connected."""
        with self._lock:
            edges = dict(self._edges)

        def to_root(frame: str) -> list[tuple[str, np.ndarray]]:
            chain, T, seen = [(frame, np.eye(4))], np.eye(4), {frame}
            while frame in edges:
                up, T_up = edges[frame]
                if up in seen:           # a loop: broken tree
                    break
                T = T_up @ T             # T_up_child
                frame = up
                seen.add(frame)
                chain.append((frame, T))
            return chain

        a, b = dict(to_root(parent)), to_root(child)
        for frame, T_frame_child in b:
            if frame in a:
                return _inverse(a[frame]) @ T_frame_child
        return None


def camera_transforms(camera, mount_frame: str, mount_source: str,
                      tree: TfTree | None) -> list[tuple[str, str, np.ndarray]]:
    """The (parent, child, T_parent_child) the calibration node publishes for ``camera``.

    - no ``mount_frame``: base -> optical (the calibration as is);
    - ``mount_source == 'file'``: base -> mount and mount -> optical (T_mount_optical of the file);
    - ``mount_source == 'tf'``: base -> mount only, with mount -> optical looked up in ``tree``
      (the camera driver's); InputError while the driver's transform is not there yet, or when the
      mount frame already has another parent (we never give a frame a second parent).
    """
    base, optical = camera.parent_frame, camera.child_frame
    if not mount_frame:
        return [(base, optical, np.array(camera.T_base_camera))]
    if mount_frame in (base, optical):
        raise InputError(f"camera_mount_frame '{mount_frame}' is the base or the optical frame",
                         field="camera_mount_frame", fix="name the camera's mount frame, e.g. camera_link, "
                                                         "or leave it empty")
    if mount_source == "file":
        T_mount_optical = camera.mount_to_optical()
        return [(base, mount_frame, camera.T_base_camera @ _inverse(T_mount_optical)),
                (mount_frame, optical, T_mount_optical)]
    assert tree is not None
    owner = tree.parent_of(mount_frame)
    if owner is not None and owner != base:
        raise InputError(f"'{mount_frame}' already has parent '{owner}' in TF (published by another node)",
                         field="camera_mount_frame",
                         fix="name the camera's root frame (the one without a parent), or publish nothing "
                             "from calibration_node and use calibration_source:=tf")
    T_mount_optical = tree.lookup(mount_frame, optical)
    if T_mount_optical is None:
        raise InputError(f"no TF from '{mount_frame}' to '{optical}' yet (the camera driver's)",
                         field="camera_mount_frame",
                         fix="start the camera driver (it publishes mount -> optical on /tf_static), or set "
                             "camera_mount_source:=file (T_mount_optical of the calibration file)")
    return [(base, mount_frame, camera.T_base_camera @ _inverse(T_mount_optical))]


class CameraPose:
    """T_base_camera for rendering: the calibration's own (source 'file') or TF's (source 'tf').

    ``resolve(camera)`` returns ``camera`` (same object while the pose does not change, so renderers
    are reused) with the pose of ``camera.child_frame`` in ``camera.parent_frame``; InputError while
    TF has no such chain.
    """

    def __init__(self, node: Node, source: str, callback_group=None) -> None:
        self.source = source
        self.tree = TfTree(node, callback_group)
        self._cache: tuple | None = None       # (input camera, resolved camera)

    def resolve(self, camera):
        if camera is None or self.source != "tf":
            return camera
        T = self.tree.lookup(camera.parent_frame, camera.child_frame)
        if T is None:
            raise InputError(f"no TF from '{camera.parent_frame}' to '{camera.child_frame}'",
                             field="calibration_source",
                             fix="publish the camera pose on /tf_static (calibration_node or your own), or "
                                 "set calibration_source:=file")
        cached = self._cache
        if cached is not None and cached[0] is camera and np.allclose(cached[1].T_base_camera, T, atol=1e-9):
            return cached[1]
        out = camera.with_pose(T)
        self._cache = (camera, out)
        return out


def _latched() -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


class CalibrationAnnouncer:
    """Calibration node side: ``announce(path)`` publishes the file in use (absolute path) with a
    version that grows at every announcement (a reload or a save over the same path changes it)."""

    def __init__(self, node: Node) -> None:
        self._pub = node.create_publisher(String, CALIBRATION_FILE_TOPIC, _latched())
        self.version = 0

    def announce(self, path: str) -> None:
        self.version += 1
        self._pub.publish(String(data=json.dumps({"calibration_file": str(Path(path).resolve()),
                                                  "version": self.version})))


class CalibrationFollower:
    """Projector / inference side: on an announcement of another file, or a newer version of the
    same file after the first one seen, sets the node's own ``calibration_file`` parameter, so the
    reload goes through the node's validation like ``ros2 param set`` (a refused file is logged
    and the node keeps its calibration)."""

    def __init__(self, node: Node, params: dict, callback_group=None) -> None:
        self.node, self.p = node, params
        self._seen: int | None = None
        node.create_subscription(String, CALIBRATION_FILE_TOPIC, self._on_file, _latched(),
                                 callback_group=callback_group)

    def _on_file(self, msg: String) -> None:
        try:
            doc = json.loads(msg.data)
            path, version = str(doc["calibration_file"]), int(doc["version"])
        except (ValueError, KeyError, TypeError):
            self.node.get_logger().warning(f"ignored a malformed {CALIBRATION_FILE_TOPIC} message: {msg.data!r}")
            return
        first, self._seen = self._seen is None, version
        if not self.p.get("follow_calibration_node", True):
            return
        own = self.p.get("calibration_file") or ""
        if first and own and Path(own).resolve() == Path(path):
            return                          # started with the same file: nothing to reload
        result = self.node.set_parameters([Parameter("calibration_file", Parameter.Type.STRING, path)])[0]
        if result.successful:
            self.node.get_logger().info(f"calibration_node announced {path} (version {version}): reloaded")
        else:
            self.node.get_logger().warning(f"calibration_node announced {path}, not loaded: {result.reason}")
