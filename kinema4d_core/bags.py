"""rosbag2 reading and writing without a ROS install (the ``rosbags`` library).

Both storage plugins are supported: sqlite3 (``*.db3``) and mcap (``*.mcap``), as a bag
folder with ``metadata.yaml`` or as a bare storage file.

Reading (``read_bag``) collects the topics named in ``BagTopics``:
- joint states (``sensor_msgs/JointState``): positions in radians / metres, reordered to the
  joint names of the first message;
- camera images (``sensor_msgs/Image`` rgb8/bgr8/rgba8/bgra8/mono8, or
  ``sensor_msgs/CompressedImage`` jpeg/png): kept as raw messages and decoded on demand to
  (H, W, 3) uint8 RGB, so a long bag costs its compressed size in memory;
- camera info (first message), optional depth (``32FC1`` metres, ``16UC1`` millimetres, or a
  compressedDepth png ``CompressedImage``; decoding is ``kinema4d_core.images``, shared with the nodes),
  optional marker topic (any type; only its stamps are used).

Stamps are seconds (float64) taken from ``header.stamp``; a zero header stamp falls back to the
bag's receive time. Every problem raises ``InputError`` naming the topic / field and the fix.

Writing (``BagWriter``) produces a new bag atomically: it is written under a hidden temporary
name beside the target and renamed into place only when complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from kinema4d_core.errors import InputError
from kinema4d_core.images import COLOUR_ENCODINGS, decode_colour
from kinema4d_core.images import DEPTH_ENCODINGS as _DEPTH_ENCODINGS
from kinema4d_core.images import decode_depth as _decode_depth

STORAGES = ("sqlite3", "mcap")

JOINT_STATE = "sensor_msgs/msg/JointState"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
STRING = "std_msgs/msg/String"

RGB_ENCODINGS = COLOUR_ENCODINGS
DEPTH_ENCODINGS = _DEPTH_ENCODINGS


@lru_cache(maxsize=1)
def typestore() -> Any:
    """The rosbags type store used for (de)serialization (ROS 2 Kilted message definitions)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


# ----------------------------------------------------------------------------------------------
# Topic configuration and read results
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BagTopics:
    """Topic names to read. ``camera_info``, ``depth`` and ``marker`` may be None (not used)."""

    joint: str = "/joint_states"
    image: str = "/camera/image_raw"
    camera_info: str | None = "/camera/camera_info"
    depth: str | None = None
    marker: str | None = None


@dataclass(frozen=True)
class CameraInfoData:
    """Contents of a ``sensor_msgs/CameraInfo`` (pixels; ``K`` 3x3, ``D`` (k,), ``P`` 3x4)."""

    width: int
    height: int
    K: np.ndarray
    D: np.ndarray
    distortion_model: str
    R: np.ndarray
    P: np.ndarray
    frame_id: str


@dataclass
class JointStream:
    """Joint states in stamp order: ``positions`` (T, N) for ``names``; ``stamps`` (T,) seconds."""

    names: tuple[str, ...]
    stamps: np.ndarray
    positions: np.ndarray
    skipped: int = 0  # messages that lacked some of ``names`` or had NaN positions


@dataclass
class ImageStream:
    """Undecoded image messages in stamp order; ``decode(i)`` gives frame ``i``."""

    topic: str
    msgtype: str
    stamps: np.ndarray
    raw: list[bytes]
    frame_id: str = ""

    def __len__(self) -> int:
        return len(self.raw)

    def decode(self, index: int) -> np.ndarray:
        """Frame ``index`` as (H, W, 3) uint8 RGB."""
        msg = typestore().deserialize_cdr(self.raw[index], self.msgtype)
        return decode_image(msg, field=self.topic)

    def decode_depth(self, index: int) -> np.ndarray:
        """Frame ``index`` as (H, W) float32 depth in metres (NaN where invalid)."""
        msg = typestore().deserialize_cdr(self.raw[index], self.msgtype)
        return decode_depth(msg, field=self.topic)


@dataclass
class BagData:
    """Everything ``read_bag`` collected. Times are seconds in the stamps' clock."""

    path: Path
    storage: str
    topics: BagTopics
    joints: JointStream
    images: ImageStream
    camera_info: CameraInfoData | None
    depth: ImageStream | None
    marker_stamps: np.ndarray
    available_topics: dict[str, str] = field(default_factory=dict)  # topic -> message type


# ----------------------------------------------------------------------------------------------
# Message decoding (pure functions over deserialized messages)
# ----------------------------------------------------------------------------------------------

def stamp_seconds(stamp: Any) -> float:
    """``builtin_interfaces/Time`` -> seconds."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def _stamp_or_receive(msg: Any, receive_ns: int) -> float:
    header = getattr(msg, "header", None)
    if header is not None and (header.stamp.sec or header.stamp.nanosec):
        return stamp_seconds(header.stamp)
    return receive_ns * 1e-9


def decode_image(msg: Any, *, field: str = "image") -> np.ndarray:
    """``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8) or ``CompressedImage`` -> (H, W, 3) uint8 RGB
    (``kinema4d_core.images.decode_colour``: the one decoder, shared with the ROS nodes)."""
    return decode_colour(msg, field)


def decode_depth(msg: Any, *, field: str = "depth") -> np.ndarray:
    """``sensor_msgs/Image`` 32FC1 (metres) / 16UC1 (millimetres), or compressedDepth png -> (H, W) float32
    metres; zero / non-finite depth becomes NaN (``kinema4d_core.images.decode_depth``)."""
    return _decode_depth(msg, field)


def decode_compressed_image(msg: Any, *, field: str = "image") -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (jpeg or png) -> (H, W, 3) uint8 RGB."""
    return decode_colour(msg, field)


def decode_camera_info(msg: Any) -> CameraInfoData:
    """``sensor_msgs/CameraInfo`` -> ``CameraInfoData``."""
    return CameraInfoData(
        width=int(msg.width), height=int(msg.height),
        K=np.asarray(msg.k, np.float64).reshape(3, 3), D=np.asarray(msg.d, np.float64).copy(),
        distortion_model=str(msg.distortion_model),
        R=np.asarray(msg.r, np.float64).reshape(3, 3), P=np.asarray(msg.p, np.float64).reshape(3, 4),
        frame_id=str(msg.header.frame_id),
    )


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------

def bag_storage(path: str | os.PathLike) -> str:
    """Storage plugin of a bag folder or file: "sqlite3" or "mcap"; InputError otherwise."""
    p = Path(path)
    files = [p] if p.is_file() else sorted(p.glob("*.db3")) + sorted(p.glob("*.mcap")) if p.is_dir() else []
    if not p.exists():
        raise InputError(f"{p} does not exist", field="bag", fix="pass the bag folder or its .db3/.mcap file")
    for f in files:
        if f.suffix == ".db3":
            return "sqlite3"
        if f.suffix == ".mcap":
            return "mcap"
    raise InputError(f"{p} holds no .db3 or .mcap storage file", field="bag",
                     fix="pass a rosbag2 folder (metadata.yaml + storage) or a .db3/.mcap file")


def _open_reader(path: Path) -> Any:
    from rosbags.rosbag2 import Reader

    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises ReaderError, sqlite3/mcap errors, yaml errors, ...
        raise InputError(f"cannot open bag {path}: {type(exc).__name__}: {exc}", field="bag",
                         fix="the bag is corrupt or truncated; re-record it or repair it "
                             "(e.g. `ros2 bag reindex`)") from exc
    return reader


def iter_messages(path: str | os.PathLike, topics: Sequence[str] = ()) -> Iterator[tuple[str, str, int, bytes]]:
    """Yield ``(topic, msgtype, receive_time_ns, raw_cdr)`` in bag order (all topics if empty)."""
    path = Path(path)
    reader = _open_reader(path)
    try:
        conns = [c for c in reader.connections if not topics or c.topic in topics]
        if not conns:
            return
        try:
            for conn, t_ns, raw in reader.messages(connections=conns):
                yield conn.topic, conn.msgtype, int(t_ns), bytes(raw)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"bag {path} is unreadable past some point: {type(exc).__name__}: {exc}",
                             field="bag", fix="the bag is corrupt or truncated; re-record or repair it") from exc
    finally:
        reader.close()


def bag_topics(path: str | os.PathLike) -> dict[str, str]:
    """Topic -> message type of every connection in the bag."""
    reader = _open_reader(Path(path))
    try:
        return {c.topic: c.msgtype for c in reader.connections}
    finally:
        reader.close()


def read_bag(path: str | os.PathLike, topics: BagTopics = BagTopics()) -> BagData:
    """Read joint states, images, camera info, depth and markers from a rosbag2 bag.

    Raises InputError when the bag cannot be read, a required topic (joint, image) is missing or
    empty, or a topic has an unexpected message type.
    """
    path = Path(path)
    storage = bag_storage(path)
    available = bag_topics(path)
    wanted = {"joint": topics.joint, "image": topics.image}
    for role, topic in wanted.items():
        if topic not in available:
            raise InputError(f"topic {topic!r} is not in the bag (it has: {sorted(available)})",
                             field=f"{role}_topic", fix=f"pass --{role}-topic with one of the bag's topics")
    expected = [(topics.joint, (JOINT_STATE,)), (topics.image, (IMAGE, COMPRESSED_IMAGE)),
                (topics.camera_info, (CAMERA_INFO,)), (topics.depth, (IMAGE, COMPRESSED_IMAGE))]
    for topic, types in expected:
        if topic and topic in available and available[topic] not in types:
            raise InputError(f"topic {topic!r} has type {available[topic]}, expected {' or '.join(types)}",
                             field="topics", fix="point the option at a topic of the right type")

    ts = typestore()
    j_stamps: list[float] = []
    j_rows: list[np.ndarray] = []
    names: tuple[str, ...] | None = None
    skipped = 0
    img = ImageStream(topic=topics.image, msgtype=available[topics.image], stamps=np.zeros(0), raw=[])
    img_stamps: list[float] = []
    depth = (ImageStream(topic=topics.depth, msgtype=available[topics.depth], stamps=np.zeros(0), raw=[])
             if topics.depth and topics.depth in available else None)
    depth_stamps: list[float] = []
    info: CameraInfoData | None = None
    markers: list[float] = []
    read = [t for t in (topics.joint, topics.image, topics.camera_info, topics.depth, topics.marker)
            if t and t in available]
    for topic, msgtype, t_ns, raw in iter_messages(path, read):
        if topic == topics.joint:
            msg = ts.deserialize_cdr(raw, msgtype)
            msg_names = tuple(str(n) for n in msg.name)
            pos = np.asarray(msg.position, np.float64)
            if names is None and len(msg_names) and len(msg_names) == pos.size:
                names = msg_names
            if names is None:
                skipped += 1
                continue
            lookup = {n: i for i, n in enumerate(msg_names)}
            if len(msg_names) != pos.size or any(n not in lookup for n in names):
                skipped += 1
                continue
            row = pos[[lookup[n] for n in names]]
            if not np.all(np.isfinite(row)):
                skipped += 1
                continue
            j_stamps.append(_stamp_or_receive(msg, t_ns))
            j_rows.append(row)
        elif topic == topics.image:
            msg = ts.deserialize_cdr(raw, msgtype)
            img_stamps.append(_stamp_or_receive(msg, t_ns))
            img.raw.append(raw)
            img.frame_id = img.frame_id or str(msg.header.frame_id)
        elif depth is not None and topic == topics.depth:
            msg = ts.deserialize_cdr(raw, msgtype)
            depth_stamps.append(_stamp_or_receive(msg, t_ns))
            depth.raw.append(raw)
        elif topic == topics.camera_info and info is None:
            info = decode_camera_info(ts.deserialize_cdr(raw, msgtype))
        elif topic == topics.marker:
            try:
                msg = ts.deserialize_cdr(raw, msgtype)
                markers.append(_stamp_or_receive(msg, t_ns))
            except Exception:
                markers.append(t_ns * 1e-9)
    if not j_rows:
        raise InputError(f"no usable JointState messages on {topics.joint!r} ({skipped} skipped)",
                         field="joint_topic", fix="record joint states with names and positions")
    if not img.raw:
        raise InputError(f"no messages on {topics.image!r}", field="image_topic",
                         fix="record the camera topic, or pass --image-topic")
    j_order = np.argsort(np.asarray(j_stamps), kind="stable")
    joints = JointStream(names=names or (), stamps=np.asarray(j_stamps)[j_order],
                         positions=np.stack(j_rows)[j_order], skipped=skipped)
    img = _sorted_stream(img, img_stamps)
    if depth is not None:
        depth = _sorted_stream(depth, depth_stamps)
    return BagData(path=path, storage=storage, topics=topics, joints=joints, images=img, camera_info=info,
                   depth=depth, marker_stamps=np.sort(np.asarray(markers, np.float64)),
                   available_topics=available)


def _sorted_stream(stream: ImageStream, stamps: list[float]) -> ImageStream:
    order = np.argsort(np.asarray(stamps, np.float64), kind="stable")
    stream.stamps = np.asarray(stamps, np.float64)[order]
    stream.raw = [stream.raw[i] for i in order]
    return stream


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------

def _time_msg(t: float) -> Any:
    Time = typestore().types["builtin_interfaces/msg/Time"]
    ns = int(round(t * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _header(t: float, frame_id: str) -> Any:
    return typestore().types["std_msgs/msg/Header"](stamp=_time_msg(t), frame_id=frame_id)


def image_msg(t: float, rgb: np.ndarray, frame_id: str, encoding: str = "rgb8") -> Any:
    """(H, W, 3) uint8 RGB -> ``sensor_msgs/Image`` (rgb8, bgr8 or mono8 from channel 0)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"expected (H,W,3) uint8, got {rgb.shape} {rgb.dtype}", field="image")
    if encoding == "bgr8":
        data = rgb[..., ::-1]
    elif encoding == "mono8":
        data = rgb[..., 0]
    elif encoding == "rgb8":
        data = rgb
    else:
        raise InputError(f"cannot write encoding {encoding!r}", field="encoding", fix="use rgb8, bgr8 or mono8")
    data = np.ascontiguousarray(data)
    h, w = rgb.shape[:2]
    return typestore().types[IMAGE](header=_header(t, frame_id), height=h, width=w, encoding=encoding,
                                    is_bigendian=0, step=data.nbytes // h, data=data.reshape(-1).view(np.uint8))


def depth_msg(t: float, depth: np.ndarray, frame_id: str) -> Any:
    """(H, W) metres -> ``sensor_msgs/Image`` 32FC1."""
    d = np.ascontiguousarray(np.asarray(depth, "<f4"))
    h, w = d.shape
    return typestore().types[IMAGE](header=_header(t, frame_id), height=h, width=w, encoding="32FC1",
                                    is_bigendian=0, step=w * 4, data=d.reshape(-1).view(np.uint8))


def compressed_image_msg(t: float, rgb: np.ndarray, frame_id: str, fmt: str = "jpeg") -> Any:
    """(H, W, 3) uint8 RGB -> ``sensor_msgs/CompressedImage`` (jpeg or png)."""
    import cv2

    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise InputError("image encoding failed", field="image")
    return typestore().types[COMPRESSED_IMAGE](header=_header(t, frame_id), format=fmt,
                                               data=np.asarray(buf, np.uint8).reshape(-1))


def joint_state_msg(t: float, names: Sequence[str], positions: np.ndarray) -> Any:
    """Joint names + positions (rad / m) -> ``sensor_msgs/JointState`` (no velocity/effort)."""
    pos = np.asarray(positions, np.float64).reshape(-1)
    if pos.size != len(names):
        raise InputError(f"{len(names)} names but {pos.size} positions", field="positions")
    return typestore().types[JOINT_STATE](header=_header(t, ""), name=list(names), position=pos,
                                          velocity=np.zeros(0), effort=np.zeros(0))


def camera_info_msg(t: float, K: np.ndarray, width: int, height: int, frame_id: str,
                    D: Sequence[float] = (), distortion_model: str = "plumb_bob") -> Any:
    """Pinhole intrinsics -> ``sensor_msgs/CameraInfo`` (R = I, P = [K | 0])."""
    ts = typestore()
    K = np.asarray(K, np.float64).reshape(3, 3)
    D = np.asarray(D, np.float64).reshape(-1)
    if D.size == 0:
        D = np.zeros(5)
    P = np.hstack([K, np.zeros((3, 1))])
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return ts.types[CAMERA_INFO](header=_header(t, frame_id), height=int(height), width=int(width),
                                 distortion_model=distortion_model, d=D, k=K.reshape(-1),
                                 r=np.eye(3).reshape(-1), p=P.reshape(-1), binning_x=0, binning_y=0, roi=roi)


def pointcloud_msg(t: float, points: np.ndarray, frame_id: str, colors: np.ndarray | None = None) -> Any:
    """(N, 3) metres (+ optional (N, 3) uint8 RGB) -> ``sensor_msgs/PointCloud2``.

    Fields x, y, z (float32) and, with colours, ``rgb`` packed as 0x00RRGGBB in a float32 slot
    (the RViz convention); point_step 16, unorganized (height 1), dense (non-finite points dropped).
    """
    ts = typestore()
    PointField = ts.types["sensor_msgs/msg/PointField"]
    pts = np.asarray(points, np.float32).reshape(-1, 3)
    keep = np.all(np.isfinite(pts), axis=1)
    pts = pts[keep]
    rec = np.zeros(len(pts), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4")])
    rec["x"], rec["y"], rec["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, n in enumerate("xyz")]
    if colors is not None:
        c = np.asarray(colors, np.uint32).reshape(-1, 3)[keep]
        rec["rgb"] = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
        fields.append(PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1))
    return ts.types[POINTCLOUD2](header=_header(t, frame_id), height=1, width=len(pts), fields=fields,
                                 is_bigendian=False, point_step=16, row_step=16 * len(pts),
                                 data=rec.view(np.uint8).reshape(-1), is_dense=True)


def pointcloud_to_numpy(msg: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """``sensor_msgs/PointCloud2`` with float32 x/y/z (+ packed rgb) -> ((N,3) f32, (N,3) u8 | None)."""
    offsets = {f.name: int(f.offset) for f in msg.fields}
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data, np.uint8)
    n = int(msg.width) * int(msg.height)
    rows = data[: n * int(msg.point_step)].reshape(n, int(msg.point_step))
    xyz = np.stack([rows[:, offsets[k]:offsets[k] + 4].copy().view("<f4")[:, 0] for k in "xyz"], axis=1)
    colors = None
    if "rgb" in offsets:
        packed = rows[:, offsets["rgb"]:offsets["rgb"] + 4].copy().view("<u4")[:, 0]
        colors = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1).astype(np.uint8)
    return xyz, colors


class BagWriter:
    """Write a new rosbag2 bag atomically (sqlite3 or mcap).

    >>> with BagWriter(out / "run", storage="mcap") as bag:
    ...     bag.write("/joint_states", t, joint_state_msg(t, names, q))
    The bag appears at ``out/run`` only when the block succeeds.
    """

    def __init__(self, path: str | os.PathLike, storage: str = "sqlite3"):
        if storage not in STORAGES:
            raise InputError(f"unknown storage {storage!r}", field="storage", fix=f"use one of {STORAGES}")
        self.path = Path(path)
        self.storage = storage
        self._tmp: Path | None = None
        self._writer: Any = None
        self._conns: dict[str, Any] = {}

    def __enter__(self) -> "BagWriter":
        from rosbags.rosbag2 import StoragePlugin, Writer

        if self.path.exists():
            raise InputError(f"{self.path} already exists", field="bag_out",
                             fix="choose a new path or delete the old bag")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp_parent = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        self._tmp = tmp_parent / self.path.name
        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self._tmp, version=9, storage_plugin=plugin)
        self._writer.open()
        return self

    def write(self, topic: str, t: float, msg: Any, *, receive_time: float | None = None) -> None:
        """Serialize and append ``msg`` on ``topic``; the bag time is ``receive_time`` or ``t`` (s)."""
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msg.__msgtype__, typestore=typestore())
            self._conns[topic] = conn
        stamp = t if receive_time is None else receive_time
        self._writer.write(conn, int(round(stamp * 1e9)), typestore().serialize_cdr(msg, msg.__msgtype__))

    def write_raw(self, topic: str, msgtype: str, t_ns: int, raw: bytes) -> None:
        """Append an already-serialized CDR message."""
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=typestore())
            self._conns[topic] = conn
        self._writer.write(conn, int(t_ns), raw)

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._tmp is not None
        tmp_parent = self._tmp.parent
        try:
            self._writer.close()
            if exc_type is None:
                os.replace(self._tmp, self.path)
        finally:
            shutil.rmtree(tmp_parent, ignore_errors=True)


def write_rollout_bag(path: str | os.PathLike, rollout: Any, stamps: np.ndarray, *, storage: str = "sqlite3",
                      frame_id: str = "camera_optical_frame", prefix: str = "/kinema4d",
                      max_points: int | None = 20000) -> None:
    """Write a rollout as a bag: ``{prefix}/image`` (rgb8), ``{prefix}/points`` (PointCloud2 in the
    camera optical frame, metres, coloured by the generated RGB) and ``{prefix}/camera_info``,
    one of each per frame at ``stamps`` (T,) seconds, so it plays next to the recorded bag.

    ``rollout`` needs ``rgb`` (T,H,W,3) u8, ``pointmap`` (T,H,W,3) metres (camera frame) and ``K``.
    ``max_points`` subsamples each cloud with a fixed stride (None: all points).
    """
    rgb = np.asarray(rollout.rgb)
    pm = np.asarray(rollout.pointmap, np.float32)
    stamps = np.asarray(stamps, np.float64).reshape(-1)
    if len(stamps) != len(rgb) or pm.shape[:3] != rgb.shape[:3]:
        raise InputError(f"{len(stamps)} stamps for {len(rgb)} frames (pointmap {pm.shape})", field="stamps",
                         fix="give one stamp per generated frame")
    h, w = rgb.shape[1:3]
    with BagWriter(path, storage=storage) as bag:
        for t, frame, points in zip(stamps, rgb, pm):
            bag.write(f"{prefix}/image", t, image_msg(t, frame, frame_id))
            bag.write(f"{prefix}/camera_info", t, camera_info_msg(t, rollout.K, w, h, frame_id))
            flat, colors = points.reshape(-1, 3), frame.reshape(-1, 3)
            if max_points and len(flat) > max_points:
                step = int(np.ceil(len(flat) / max_points))
                flat, colors = flat[::step], colors[::step]
            bag.write(f"{prefix}/points", t, pointcloud_msg(t, flat, frame_id, colors))
