"""Conversions between ROS 2 messages and numpy / kinema4d_core types (no cv_bridge, no sensor_msgs_py).

Images: decoding is ``kinema4d_core.images`` (the one implementation, shared with bag replay).
``image_to_numpy`` views ``msg.data`` without copying (np.frombuffer) when rows are packed and
honours the row stride ``step`` and ``is_bigendian``; ``image_to_rgb`` gives (H, W, 3) uint8 RGB
from a raw Image (rgb8, bgr8, rgba8, bgra8, mono8) or a CompressedImage (jpeg / png,
image_transport ``compressed``); ``image_to_depth`` gives (H, W) float32 metres (NaN = no
measurement) from 16UC1 millimetres, 32FC1 metres or compressedDepth png. ``numpy_to_image``
assigns ``arr.tobytes()`` (assigning a numpy array to ``msg.data`` costs 100-200 ms per 480x720
frame). Writable encodings: 32FC3 (pointmap, metres), 32FC1 (depth, metres), 16UC1 (depth, mm),
mono8 (masks), rgb8, bgr8, rgba8, bgra8.

Camera streams: ``image_subscription_topic`` names the topic and type for an image_transport
transport ("raw" -> ``<topic>``, "compressed" -> ``<topic>/compressed``, "compressedDepth" ->
``<topic>/compressedDepth``; the base topic is resolved first, so remapping it remaps all);
``stream_camera`` is the CameraInfo -> CameraModel rule every node follows (size checked with
``kinema4d_core.camera.match_stream``; intrinsics from the CameraInfo).

Point clouds: ``points_to_cloud`` builds sensor_msgs/PointCloud2 with float32 x y z and,
optionally, a packed ``rgb`` float32 field (0x00RRGGBB bits, the PCL/RViz convention).

Serialized messages for large streams: ``image_to_cdr`` / ``points_to_cloud_cdr`` return the
CDR bytes of an Image / PointCloud2 (what ``serialize_message`` would give, up to padding-byte
values) built with one copy of the pixel data; ``Publisher.publish(bytes)`` sends them as they
are, skipping rclpy's Python -> C message conversion and the second serialization copy.

All geometry is in the frame named by ``frame_id`` (the camera optical frame for everything
kinema4d publishes); units are metres.
"""

from __future__ import annotations

import struct
import sys
from typing import TYPE_CHECKING, Sequence

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import TransformStamped
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, JointState, PointCloud2, PointField
from std_msgs.msg import Header

from kinema4d_core import images as _images
from kinema4d_core.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from kinema4d_core.camera import CameraModel

# encoding -> (dtype, channels): every raw encoding the nodes read and write
ENCODINGS: dict[str, tuple[np.dtype, int]] = _images.RAW_ENCODINGS
#: image_transport transports a node can subscribe with: colour images / depth images
IMAGE_TRANSPORTS = ("raw", "compressed")
DEPTH_TRANSPORTS = ("raw", "compressedDepth")
_HOST_BIG_ENDIAN = sys.byteorder == "big"


def make_header(frame_id: str, stamp: Time | None = None) -> Header:
    """A std_msgs/Header with ``frame_id`` and ``stamp`` (zero time when None)."""
    return Header(frame_id=frame_id, stamp=stamp if stamp is not None else Time())


def stamp_to_seconds(stamp: Time) -> float:
    """builtin_interfaces/Time -> seconds (float)."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def seconds_to_stamp(seconds: float) -> Time:
    """Seconds (>= 0) -> builtin_interfaces/Time."""
    sec = int(np.floor(seconds))
    return Time(sec=sec, nanosec=min(int(round((seconds - sec) * 1e9)), 999_999_999))


def image_to_numpy(msg: Image, field: str = "image") -> np.ndarray:
    """View a raw Image as (H, W, C) or (H, W) numpy array of its encoding's dtype, in host byte
    order (read-only, no copy when rows are packed and the byte order is the host's).

    Raises InputError for unsupported encodings (naming the supported list), an empty size, or a
    data size that does not match height * step.
    """
    return _images.raw_pixels(msg, field)


def image_to_rgb(msg: Image | CompressedImage, field: str = "image") -> np.ndarray:
    """Colour Image (rgb8, bgr8, rgba8, bgra8, mono8) or CompressedImage (jpeg / png) -> (H, W, 3) uint8 RGB.

    Other encodings raise InputError naming the encoding and the supported ones.
    """
    return _images.decode_colour(msg, field)


def image_to_depth(msg: Image | CompressedImage, field: str = "depth") -> np.ndarray:
    """Depth Image (16UC1 millimetres, 32FC1 metres) or compressedDepth png -> (H, W) float32 metres,
    NaN where there is no measurement (0 on the wire)."""
    return _images.decode_depth(msg, field)


def numpy_to_compressed(rgb: np.ndarray, codec: str = "jpeg", frame_id: str = "", stamp: Time | None = None,
                        *, quality: int = 95) -> CompressedImage:
    """(H, W, 3) uint8 RGB -> CompressedImage as image_transport's ``compressed`` plugin publishes it
    (format "rgb8; jpeg compressed bgr8" or "rgb8; png compressed bgr8")."""
    fmt, data = _images.encode_compressed(rgb, codec, quality=quality)
    msg = CompressedImage(header=make_header(frame_id, stamp), format=fmt)
    msg.data = data
    return msg


def image_subscription_topic(node, topic: str, transport: str) -> tuple[str, type]:
    """(topic name, message type) to subscribe ``topic`` with an image_transport ``transport``.

    "raw": ``topic`` as sensor_msgs/Image; "compressed" / "compressedDepth": the resolved (remapped)
    base topic + ``/compressed`` / ``/compressedDepth`` as sensor_msgs/CompressedImage.
    """
    if transport == "raw":
        return topic, Image
    if transport not in ("compressed", "compressedDepth"):
        raise InputError(f"unknown image transport '{transport}'", field="image_transport",
                         fix="use raw, compressed (colour) or compressedDepth (depth)")
    return f"{node.resolve_topic_name(topic)}/{transport}", CompressedImage


def stream_camera(calibration: "CameraModel", info: CameraInfo, *, rescale: bool = False,
                  source: str = "camera/camera_info") -> "CameraModel":
    """The camera a node uses for a stream described by ``info``: the one rule of every node.

    The stream's size is checked against the calibration with ``kinema4d_core.camera.match_stream``
    (a different size raises ConfigError naming both sizes and the fix, unless ``rescale``; the
    aspect ratio must agree); the intrinsics (K, D, R, P) and the optical frame id come from
    ``info``, the extrinsics T_base_camera from the calibration.
    """
    from kinema4d_core.camera import match_stream

    match_stream(calibration, int(info.width), int(info.height), rescale=rescale, source=source)
    return camera_info_to_model(info, calibration.T_base_camera, parent_frame=calibration.parent_frame,
                                camera_name=calibration.camera_name)


def _image_array(arr: np.ndarray, encoding: str) -> tuple[np.ndarray, np.dtype, int]:
    """Check ``arr`` against ``encoding`` (bool masks become 0/255 mono8); returns (arr, dtype, channels)."""
    enc = ENCODINGS.get(encoding)
    if enc is None:
        raise InputError(f"unsupported encoding '{encoding}'", field="encoding", fix=f"use one of {sorted(ENCODINGS)}")
    dtype, channels = enc
    arr = np.asarray(arr)
    if arr.dtype == np.bool_ and dtype == np.uint8:
        arr = arr.view(np.uint8) * np.uint8(255)
    ok_shape = (arr.ndim == 3 and arr.shape[2] == channels) or (arr.ndim == 2 and channels == 1)
    if not ok_shape or arr.dtype != dtype:
        raise InputError(f"array {arr.shape} {arr.dtype} does not fit {encoding}", field="arr",
                         fix=f"pass (H, W{', %d' % channels if channels > 1 else ''}) {dtype}")
    return arr, dtype, channels


def numpy_to_image(arr: np.ndarray, encoding: str, frame_id: str = "", stamp: Time | None = None) -> Image:
    """(H, W[, C]) numpy array -> Image with ``encoding`` (dtype and channel count must match it)."""
    arr, dtype, channels = _image_array(arr, encoding)
    h, w = arr.shape[:2]
    msg = Image(header=make_header(frame_id, stamp), height=h, width=w, encoding=encoding,
                is_bigendian=int(_HOST_BIG_ENDIAN), step=w * channels * dtype.itemsize)
    msg.data = np.ascontiguousarray(arr).tobytes()
    return msg


def _pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 -> (N,) float32 whose bits are 0x00RRGGBB."""
    rgb = np.asarray(rgb, dtype=np.uint32)
    packed = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    return packed.astype(np.uint32).view(np.float32)


def points_to_cloud(points: np.ndarray, frame_id: str, stamp: Time | None = None,
                    rgb: np.ndarray | None = None) -> PointCloud2:
    """(N, 3) metres [+ (N, 3) uint8 colours] -> PointCloud2 (x y z float32 [+ rgb], unorganized, dense)."""
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    names = ["x", "y", "z"]
    if rgb is not None:
        rgb = np.asarray(rgb).reshape(-1, 3)
        if rgb.shape[0] != points.shape[0]:
            raise InputError(f"{rgb.shape[0]} colours for {points.shape[0]} points", field="rgb",
                             fix="pass one colour per point")
        names.append("rgb")
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate(names)]
    if rgb is not None:
        record = np.empty((points.shape[0], len(names)), dtype=np.float32)
        record[:, :3] = points
        record[:, 3] = _pack_rgb(rgb)
    else:
        record = np.ascontiguousarray(points)
    msg = PointCloud2(header=make_header(frame_id, stamp), height=1, width=points.shape[0], fields=fields,
                      is_bigendian=bool(_HOST_BIG_ENDIAN), point_step=4 * len(names),
                      row_step=4 * len(names) * points.shape[0], is_dense=True)
    msg.data = record.tobytes()
    return msg


class _CdrWriter:
    """Little-endian plain CDR (what rmw_fastrtps_cpp uses for ROS 2 messages); alignment is
    relative to the payload start, after the 4-byte encapsulation header."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray(b"\x00\x01\x00\x00")

    def _align(self, n: int) -> None:
        pad = -(len(self.buf) - 4) % n
        if pad:
            self.buf += bytes(pad)

    def u8(self, v: int) -> None:
        self.buf.append(int(v) & 0xFF)

    def u32(self, v: int) -> None:
        self._align(4)
        self.buf += struct.pack("<I", int(v))

    def i32(self, v: int) -> None:
        self._align(4)
        self.buf += struct.pack("<i", int(v))

    def string(self, text: str) -> None:
        raw = text.encode("utf-8")
        self.u32(len(raw) + 1)
        self.buf += raw + b"\x00"

    def header(self, frame_id: str, stamp: Time | None) -> None:
        self.i32(stamp.sec if stamp is not None else 0)
        self.u32(stamp.nanosec if stamp is not None else 0)
        self.string(frame_id)

    def finish(self, data: np.ndarray, tail: bytes = b"") -> bytes:
        """Append ``data`` (C-contiguous) as a uint8 sequence, then ``tail``; one copy of the data."""
        self.u32(data.nbytes)
        return b"".join((self.buf, memoryview(data.reshape(-1).view(np.uint8)), tail))


def image_to_cdr(arr: np.ndarray, encoding: str, frame_id: str = "", stamp: Time | None = None) -> bytes:
    """Serialized sensor_msgs/Image of ``arr`` (same checks and result as ``numpy_to_image``,
    as CDR bytes for ``Publisher.publish``); the pixel data is copied once."""
    arr, dtype, channels = _image_array(arr, encoding)
    h, w = arr.shape[:2]
    out = _CdrWriter()
    out.header(frame_id, stamp)
    out.u32(h)
    out.u32(w)
    out.string(encoding)
    out.u8(int(_HOST_BIG_ENDIAN))
    out.u32(w * channels * dtype.itemsize)
    return out.finish(np.ascontiguousarray(arr))


def points_to_cloud_cdr(points: np.ndarray, frame_id: str, stamp: Time | None = None) -> bytes:
    """Serialized sensor_msgs/PointCloud2 (x y z float32, unorganized, dense) of (N, 3) points in
    metres: the same message as ``points_to_cloud`` without colours, as CDR bytes."""
    points = np.ascontiguousarray(np.asarray(points, dtype=np.float32).reshape(-1, 3))
    n = points.shape[0]
    out = _CdrWriter()
    out.header(frame_id, stamp)
    out.u32(1)
    out.u32(n)
    out.u32(3)
    for i, name in enumerate("xyz"):
        out.string(name)
        out.u32(4 * i)
        out.u8(PointField.FLOAT32)
        out.u32(1)
    out.u8(int(_HOST_BIG_ENDIAN))
    out.u32(12)
    out.u32(12 * n)
    return out.finish(points, b"\x01")      # tail: is_dense = True


def cloud_to_points(msg: PointCloud2) -> tuple[np.ndarray, np.ndarray | None]:
    """PointCloud2 with float32 x y z [rgb] fields -> ((N, 3) float32, (N, 3) uint8 or None).

    Raises InputError for missing fields, a field past ``point_step``, foreign byte order, or a
    data size that does not match height * row_step (rows may be padded).
    """
    offsets = {f.name: (f.offset, f.datatype) for f in msg.fields}
    for axis in ("x", "y", "z"):
        if axis not in offsets or offsets[axis][1] != PointField.FLOAT32:
            raise InputError(f"no float32 '{axis}' field", field="cloud.fields", fix="publish float32 x y z fields")
    h, w, point_step, row_step = int(msg.height), int(msg.width), int(msg.point_step), int(msg.row_step)
    used = [n for n in ("x", "y", "z", "rgb") if n in offsets]
    past = [n for n in used if offsets[n][0] + 4 > point_step]
    if past:
        raise InputError(f"fields {past} end past point_step {point_step}", field="cloud.point_step",
                         fix="set point_step to the size of one point in bytes")
    if bool(msg.is_bigendian) != _HOST_BIG_ENDIAN:
        raise InputError("byte order differs from this machine's", field="cloud.is_bigendian",
                         fix="publish in host byte order")
    if row_step < w * point_step:
        raise InputError(f"row_step {row_step} is smaller than width*point_step = {w * point_step}",
                         field="cloud.row_step", fix="set row_step to the row length in bytes")
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size != h * row_step:
        raise InputError(f"data has {buf.size} bytes, expected height*row_step = {h * row_step}",
                         field="cloud.data", fix="make data exactly height*row_step bytes")
    n = w * h
    raw = buf.reshape(h, row_step)[:, :w * point_step].reshape(n, point_step)
    xyz = np.stack([raw[:, offsets[a][0]:offsets[a][0] + 4].copy().view(np.float32)[:, 0] for a in "xyz"], axis=1)
    rgb = None
    if "rgb" in offsets:
        o = offsets["rgb"][0]
        bits = raw[:, o:o + 4].copy().view(np.uint32)[:, 0]
        rgb = np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=1).astype(np.uint8)
    return xyz, rgb


def joint_state_to_vector(msg: JointState, joint_names: Sequence[str], *, strict: bool = False) -> np.ndarray:
    """JointState -> (N,) float64 positions in the order of ``joint_names`` (radians / metres).

    Names in the message that are not in ``joint_names`` are ignored unless ``strict``.
    Raises InputError naming the problem: missing names, unknown names (strict), length
    mismatch between ``name`` and ``position``, duplicate names, non-finite values.
    """
    names = list(msg.name)
    positions = np.asarray(msg.position, dtype=np.float64)
    if len(names) != positions.shape[0]:
        raise InputError(f"{len(names)} names but {positions.shape[0]} positions", field="joint_state.position",
                         fix="publish one position per name")
    if len(set(names)) != len(names):
        raise InputError("duplicate joint names", field="joint_state.name", fix="publish each joint once")
    wanted = set(joint_names)
    unknown = [n for n in names if n not in wanted]
    missing = [n for n in joint_names if n not in names]
    if missing:
        detail = f"; unknown names {unknown}" if unknown else ""
        raise InputError(f"missing joints {missing}{detail}", field="joint_state.name",
                         fix=f"publish positions for all of {list(joint_names)}")
    if strict and unknown:
        raise InputError(f"unknown joints {unknown}", field="joint_state.name",
                         fix=f"publish only joints of the robot: {list(joint_names)}")
    index = {n: i for i, n in enumerate(names)}
    q = positions[[index[n] for n in joint_names]]
    if not np.all(np.isfinite(q)):
        bad = [n for n, v in zip(joint_names, q) if not np.isfinite(v)]
        raise InputError(f"non-finite positions for {bad}", field="joint_state.position",
                         fix="publish finite joint positions")
    return q


def camera_info_to_model(msg: CameraInfo, T_base_camera: np.ndarray, *, parent_frame: str = "base",
                         camera_name: str = "camera") -> "CameraModel":
    """CameraInfo (intrinsics, distortion) + extrinsics ``T_base_camera`` (4, 4) -> core CameraModel.

    The child frame is ``msg.header.frame_id`` (the camera optical frame). Raises InputError on a
    zero/negative focal length, an empty size or non-finite values.
    """
    from kinema4d_core.camera import CameraModel

    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if int(msg.width) <= 0 or int(msg.height) <= 0:
        raise InputError(f"image size {msg.width}x{msg.height}", field="camera_info.width/height",
                         fix="publish the calibrated image size")
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f"focal length fx={K[0, 0]}, fy={K[1, 1]} (must be > 0)", field="camera_info.k",
                         fix="publish a calibrated camera matrix K")
    D = np.asarray(msg.d, dtype=np.float64)
    if not np.all(np.isfinite(D)):
        raise InputError("non-finite distortion coefficients", field="camera_info.d", fix="publish finite D")
    R = np.asarray(msg.r, dtype=np.float64).reshape(3, 3)
    if not np.any(R):
        R = np.eye(3)
    P = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)
    if not np.any(P):
        P = np.hstack([K, np.zeros((3, 1))])
    return CameraModel(width=int(msg.width), height=int(msg.height), K=K, D=D,
                       distortion_model=msg.distortion_model or "plumb_bob",
                       T_base_camera=np.asarray(T_base_camera, dtype=np.float64), camera_name=camera_name,
                       parent_frame=parent_frame, child_frame=msg.header.frame_id or "camera_optical_frame",
                       R=R, P=P)


def camera_model_to_info(camera: "CameraModel", stamp: Time | None = None) -> CameraInfo:
    """Core CameraModel -> CameraInfo in the camera's optical frame (``camera.child_frame``)."""
    msg = CameraInfo(header=make_header(camera.child_frame, stamp), height=int(camera.height),
                     width=int(camera.width), distortion_model=camera.distortion_model)
    msg.d = [float(v) for v in np.asarray(camera.D).ravel()]
    msg.k = [float(v) for v in np.asarray(camera.K).ravel()]
    msg.r = [float(v) for v in np.asarray(camera.R).ravel()]
    msg.p = [float(v) for v in np.asarray(camera.P).ravel()]
    return msg


def intrinsics_to_info(K: np.ndarray, width: int, height: int, frame_id: str,
                       stamp: Time | None = None) -> CameraInfo:
    """Pinhole CameraInfo (no distortion) of a (3, 3) ``K`` for ``width`` x ``height`` pixels in
    ``frame_id`` (the optical frame): the intrinsics of generated frames (``Rollout.K``)."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    msg = CameraInfo(header=make_header(frame_id, stamp), height=int(height), width=int(width),
                     distortion_model="plumb_bob")
    msg.d = [0.0] * 5
    msg.k = [float(v) for v in K.ravel()]
    msg.r = [float(v) for v in np.eye(3).ravel()]
    msg.p = [float(v) for v in np.hstack([K, np.zeros((3, 1))]).ravel()]
    return msg


def matrix_to_transform(T: np.ndarray, parent: str, child: str, stamp: Time | None = None) -> TransformStamped:
    """TransformStamped (header.frame_id = parent) of the 4x4 pose ``T_parent_child`` (metres)."""
    from scipy.spatial.transform import Rotation

    T = np.asarray(T, dtype=np.float64)
    msg = TransformStamped(header=make_header(parent, stamp), child_frame_id=child)
    tr, rot = msg.transform.translation, msg.transform.rotation
    tr.x, tr.y, tr.z = (float(v) for v in T[:3, 3])
    rot.x, rot.y, rot.z, rot.w = (float(v) for v in Rotation.from_matrix(T[:3, :3]).as_quat())   # x y z w
    return msg


def transform_to_matrix(msg: TransformStamped) -> np.ndarray:
    """The 4x4 pose ``T_parent_child`` of a TransformStamped (inverse of ``matrix_to_transform``)."""
    from scipy.spatial.transform import Rotation

    t, r = msg.transform.translation, msg.transform.rotation
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat([r.x, r.y, r.z, r.w]).as_matrix()
    T[:3, 3] = [t.x, t.y, t.z]
    return T
