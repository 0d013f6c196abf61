"""rosbag2 reading and writing without a ROS install (the ``rosbags`` library).

Both storage plugins are supported: sqlite3 (``*.db3``) and mcap (``*.mcap``), as a bag
folder with ``metadata.yaml`` or as a bare storage file.

Reading (``read_bag``) collects the topics named in ``BagTopics``:
- joint states (``sensor_msgs/JointState``): positions in radians / metres, reordered to the
  joint names of the first message;
- camera images (``sensor_msgs/Image`` rgb8/bgr8/rgba8/bgra8/mono8, or
  ``sensor_msgs/CompressedImage`` jpeg/png): the first pass keeps only each message's stamp
  (read from the CDR header) and position in the bag; ``ImageStream.decode_many`` reads the
  selected frames back in a second pass and decodes them to (H, W, 3) uint8 RGB. A bag is
  streamed one message at a time, never held in memory: a 20 GB bag costs its joint states and
  a few numbers per image, plus the frames an episode selects;
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
    """Image (or depth) messages in stamp order, not held in memory: ``stamps`` (T,) seconds and,
    per message, where it is in the bag (``receive_ns``: the bag's receive time, ``dup``: its rank
    among messages of the topic with that same receive time and stamp). ``decode_many`` reads only the
    requested messages back from the bag in one pass."""

    topic: str
    msgtype: str
    stamps: np.ndarray
    receive_ns: np.ndarray
    dup: np.ndarray
    path: Path | None = None
    frame_id: str = ""

    def __len__(self) -> int:
        return int(len(self.stamps))

    def raw_many(self, indices: Sequence[int]) -> list[bytes]:
        """The serialized messages ``indices`` (stamp order), read from the bag in one pass over
        the receive-time window they span."""
        idx = [int(i) for i in indices]
        if not idx:
            return []
        if self.path is None:
            raise InputError(f"{self.topic} has no bag to read from", field=self.topic)
        bad = [i for i in idx if not 0 <= i < len(self)]
        if bad:
            raise InputError(f"frame indices {bad[:5]} outside 0..{len(self) - 1}", field=self.topic)
        wanted = {(int(self.receive_ns[i]), float(self.stamps[i]), int(self.dup[i])): i for i in idx}
        lo = min(k[0] for k in wanted)
        hi = max(k[0] for k in wanted)
        found: dict[int, bytes] = {}
        seen: dict[tuple[int, float], int] = {}
        for _topic, msgtype, t_ns, raw in iter_messages(self.path, [self.topic], start_ns=lo, stop_ns=hi + 1):
            key = (int(t_ns), header_stamp(raw, msgtype, t_ns)[0])
            rank = seen[key] = seen.get(key, -1) + 1
            i = wanted.get((*key, rank))
            if i is not None:
                found[i] = raw
                if len(found) == len(wanted):
                    break
        missing = [i for i in idx if i not in found]
        if missing:
            raise InputError(f"{len(missing)} messages of {self.topic} vanished from {self.path} between two reads",
                             field="bag", fix="do not modify the bag while it is replayed")
        return [found[i] for i in idx]

    def _decode(self, raw: bytes) -> np.ndarray:
        return decode_image(typestore().deserialize_cdr(raw, self.msgtype), field=self.topic)

    def _decode_depth(self, raw: bytes) -> np.ndarray:
        return decode_depth(typestore().deserialize_cdr(raw, self.msgtype), field=self.topic)

    def decode_many(self, indices: Sequence[int]) -> list[np.ndarray]:
        """Frames ``indices`` as (H, W, 3) uint8 RGB, read in one pass (one frame in memory at a
        time besides the results)."""
        return [self._decode(raw) for raw in self.raw_many(indices)]

    def decode(self, index: int) -> np.ndarray:
        """Frame ``index`` as (H, W, 3) uint8 RGB."""
        return self.decode_many([index])[0]

    def decode_depth_many(self, indices: Sequence[int]) -> list[np.ndarray]:
        """Frames ``indices`` as (H, W) float32 depth in metres (NaN where invalid)."""
        return [self._decode_depth(raw) for raw in self.raw_many(indices)]

    def decode_depth(self, index: int) -> np.ndarray:
        """Frame ``index`` as (H, W) float32 depth in metres (NaN where invalid)."""
        return self.decode_depth_many([index])[0]


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

ROS1_MAGIC = b"#ROSBAG V2.0"


def ros1_convert_command(path: str | os.PathLike) -> str:
    """The command that converts a ROS 1 bag into a rosbag2 folder beside it (the ``rosbags``
    package's ``rosbags-convert``, installed with kinema4d)."""
    p = Path(path)
    dst = p.with_name(p.stem + "_ros2") if p.suffix == ".bag" else p.with_name(p.name + "_ros2")
    return f"rosbags-convert --src {p} --dst {dst}"


def _is_ros1_bag(p: Path) -> bool:
    if p.suffix == ".bag":
        return True
    try:
        with open(p, "rb") as fh:
            return fh.read(len(ROS1_MAGIC)) == ROS1_MAGIC
    except OSError:
        return False


def bag_storage(path: str | os.PathLike) -> str:
    """Storage plugin of a bag folder or file: "sqlite3" or "mcap"; InputError otherwise (a ROS 1
    ``.bag`` gets the ``rosbags-convert`` command that converts it)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist", field="bag", fix="pass the bag folder or its .db3/.mcap file")
    ros1 = [p] if p.is_file() and _is_ros1_bag(p) else sorted(p.glob("*.bag")) if p.is_dir() else []
    if ros1 and not (p.is_dir() and (list(p.glob("*.db3")) or list(p.glob("*.mcap")))):
        raise InputError(f"{ros1[0]} is a ROS 1 bag; replay reads rosbag2 (sqlite3 or mcap) bags", field="bag",
                         fix=f"convert it first: `{ros1_convert_command(ros1[0])}`, then replay the "
                             f"{ros1_convert_command(ros1[0]).split(' --dst ')[1]} folder")
    files = [p] if p.is_file() else sorted(p.glob("*.db3")) + sorted(p.glob("*.mcap")) if p.is_dir() else []
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


def iter_messages(path: str | os.PathLike, topics: Sequence[str] = (), *, start_ns: int | None = None,
                  stop_ns: int | None = None) -> Iterator[tuple[str, str, int, bytes]]:
    """Yield ``(topic, msgtype, receive_time_ns, raw_cdr)`` in bag order (all topics if empty),
    optionally only receive times in ``[start_ns, stop_ns)``. One message at a time: nothing of
    the bag is kept once the caller lets go of it."""
    path = Path(path)
    reader = _open_reader(path)
    try:
        conns = [c for c in reader.connections if not topics or c.topic in topics]
        if not conns:
            return
        try:
            for conn, t_ns, raw in reader.messages(connections=conns, start=start_ns, stop=stop_ns):
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
    streams = {topics.image: _StreamIndex()}
    if topics.depth and topics.depth in available:
        streams[topics.depth] = _StreamIndex()
    info: CameraInfoData | None = None
    markers: list[float] = []
    read = [t for t in (topics.joint, topics.image, topics.camera_info, topics.depth, topics.marker)
            if t and t in available]
    # one pass, one message at a time: joint states are decoded (small), images and depth only
    # leave their stamp and position; their pixels are read later for the selected frames only
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
        elif topic in streams:
            streams[topic].add(raw, msgtype, t_ns)
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
    if not streams[topics.image].stamps:
        raise InputError(f"no messages on {topics.image!r}", field="image_topic",
                         fix="record the camera topic, or pass --image-topic")
    j_order = np.argsort(np.asarray(j_stamps), kind="stable")
    joints = JointStream(names=names or (), stamps=np.asarray(j_stamps)[j_order],
                         positions=np.stack(j_rows)[j_order], skipped=skipped)
    img = streams[topics.image].stream(path, topics.image, available[topics.image])
    depth = (streams[topics.depth].stream(path, topics.depth, available[topics.depth])
             if topics.depth in streams and topics.depth != topics.image else None)
    return BagData(path=path, storage=storage, topics=topics, joints=joints, images=img, camera_info=info,
                   depth=depth, marker_stamps=np.sort(np.asarray(markers, np.float64)),
                   available_topics=available)


def header_stamp(raw: bytes, msgtype: str, receive_ns: int) -> tuple[float, str | None]:
    """Stamp (s) of a serialized message that starts with ``std_msgs/Header`` (Image,
    CompressedImage, CameraInfo, ...), read from the first bytes of the CDR without deserializing
    the payload; the receive time when the stamp is zero. Also the header's frame_id (None if
    it could not be read that way, e.g. an unexpected encapsulation: then the message is
    deserialized)."""
    import struct

    if len(raw) >= 16 and raw[0] == 0 and raw[1] in (0, 1):
        order = "<" if raw[1] == 1 else ">"
        sec, nanosec, n = struct.unpack_from(order + "iII", raw, 4)
        frame_id = raw[16:16 + max(int(n) - 1, 0)].decode("utf-8", "replace") if 16 + n <= len(raw) else None
        stamp = float(sec) + 1e-9 * float(nanosec) if (sec or nanosec) else receive_ns * 1e-9
        return stamp, frame_id
    msg = typestore().deserialize_cdr(raw, msgtype)
    return _stamp_or_receive(msg, receive_ns), str(msg.header.frame_id)


@dataclass
class _StreamIndex:
    """Stamps and bag positions of one image/depth topic, gathered in the first pass."""

    stamps: list[float] = field(default_factory=list)
    receive_ns: list[int] = field(default_factory=list)
    dup: list[int] = field(default_factory=list)
    frame_id: str = ""
    _last: tuple[int, float] | None = None

    def add(self, raw: bytes, msgtype: str, t_ns: int) -> None:
        stamp, frame_id = header_stamp(raw, msgtype, t_ns)
        key = (int(t_ns), stamp)
        self.dup.append(self.dup[-1] + 1 if key == self._last else 0)
        self._last = key
        self.receive_ns.append(int(t_ns))
        self.stamps.append(stamp)
        self.frame_id = self.frame_id or (frame_id or "")

    def stream(self, path: Path, topic: str, msgtype: str) -> ImageStream:
        order = np.argsort(np.asarray(self.stamps, np.float64), kind="stable")
        return ImageStream(topic=topic, msgtype=msgtype, stamps=np.asarray(self.stamps, np.float64)[order],
                           receive_ns=np.asarray(self.receive_ns, np.int64)[order],
                           dup=np.asarray(self.dup, np.int64)[order], path=path, frame_id=self.frame_id)


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
