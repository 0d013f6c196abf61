"""Camera image decoding: the ONE implementation for every reader of camera messages.

Used by the ROS nodes (through ``kinema4d_ros.conversions``) and by bag replay
(``kinema4d_core.bags``). ROS-free: the functions take any object with the fields of
``sensor_msgs/Image`` (``height width encoding is_bigendian step data``) or of
``sensor_msgs/CompressedImage`` (``format data``): rclpy messages, rosbags messages, or a
``types.SimpleNamespace``.

Raw ``sensor_msgs/Image`` encodings (``RAW_ENCODINGS``)
- colour: ``rgb8 bgr8 rgba8 bgra8 mono8`` (also ``8UC1`` = mono8, ``8UC3`` = bgr8, OpenCV's order);
- depth: ``16UC1`` = millimetres (RealSense, Azure Kinect, ZED in mm mode), ``32FC1`` = metres;
- ``32FC3``: pointmaps (metres) as kinema4d publishes them.
Rows may be padded (``step`` > width * pixel size; the last row's padding may be missing);
``is_bigendian`` is honoured for multi-byte encodings (converted to this machine's order).

``sensor_msgs/CompressedImage`` follows image_transport's conventions: a colour topic
``<topic>/compressed`` carries ``format`` "<encoding>; jpeg compressed <coded>" (or "... png
compressed ...", or the legacy "jpeg" / "png"); the payload is a standard JPEG / PNG file.
A depth topic ``<topic>/compressedDepth`` carries "16UC1; compressedDepth png" (a 12-byte header,
then a 16-bit PNG of millimetres) or "32FC1; compressedDepth png" (quantized inverse depth);
a 16-bit PNG on a ``compressed`` topic ("16UC1; png compressed mono16") is also read as depth in
millimetres. RVL-coded depth is refused.

Decoded depth is (H, W) float32 metres along the optical axis; a pixel without a measurement
(0 on the wire, NaN or inf) is NaN.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

import numpy as np

from kinema4d_core.errors import InputError

_HOST_BIG_ENDIAN = sys.byteorder == "big"

#: raw Image encoding -> (dtype, channels)
RAW_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
    "32FC3": (np.dtype(np.float32), 3),
}
COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "8UC3")
DEPTH_ENCODINGS = ("16UC1", "32FC1")
_BGR = ("bgr8", "bgra8", "8UC3")
_BY_LOWER = {k.lower(): k for k in RAW_ENCODINGS}
#: what ``CompressedImage.format`` may say (human-readable, for error messages)
COMPRESSED_FORMATS = ("jpeg", "png", "<encoding>; jpeg compressed <coded>", "<encoding>; png compressed <coded>",
                      "16UC1; compressedDepth png", "32FC1; compressedDepth png")
_DEPTH_HEADER = 12          # compressed_depth_image_transport ConfigHeader: int32 format, float32 depthParam[2]


def is_compressed(msg: Any) -> bool:
    """True for a ``sensor_msgs/CompressedImage`` (it has ``format`` and no ``encoding``)."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def canonical_encoding(encoding: str, field: str = "image") -> str:
    """The ``RAW_ENCODINGS`` key of ``encoding`` (case-insensitive); InputError naming the supported list."""
    key = _BY_LOWER.get(str(encoding).lower())
    if key is None:
        raise InputError(f"unsupported image encoding '{encoding}'", field=f"{field}.encoding",
                         fix=f"publish one of {', '.join(RAW_ENCODINGS)} (or a jpeg/png CompressedImage on "
                             "<topic>/compressed)")
    return key


def _buffer(data: Any) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def raw_pixels(msg: Any, field: str = "image") -> np.ndarray:
    """A raw Image as (H, W, C) or (H, W) array of its encoding's dtype, in this machine's byte order.

    No copy when rows are packed and the byte order is native (the result may be read-only).
    Raises InputError for unsupported encodings, an empty size, a ``step`` shorter than a row,
    or a data size that does not fit ``height * step``.
    """
    enc = canonical_encoding(msg.encoding, field)
    dtype, channels = RAW_ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise InputError(f"empty image {w}x{h}", field=f"{field}.height/width", fix="publish a non-empty image")
    row_bytes = w * channels * dtype.itemsize
    if step < row_bytes:
        raise InputError(f"step {step} is smaller than width*channels*bytes = {row_bytes} for {enc}",
                         field=f"{field}.step", fix="set step to the row length in bytes (check the encoding)")
    buf = _buffer(msg.data)
    if buf.size > h * step or buf.size < step * (h - 1) + row_bytes:
        raise InputError(f"data has {buf.size} bytes, expected height*step = {h * step} for {w}x{h} {enc}",
                         field=f"{field}.data", fix="make data exactly height*step bytes (check step/encoding)")
    if buf.size < h * step:        # the last row's padding is missing: tolerated
        buf = np.concatenate([buf, np.zeros(h * step - buf.size, np.uint8)])
    rows = buf.reshape(h, step)
    if step != row_bytes:
        rows = np.ascontiguousarray(rows[:, :row_bytes])
    big = bool(msg.is_bigendian)
    if dtype.itemsize > 1 and big != _HOST_BIG_ENDIAN:
        arr = rows.view(dtype.newbyteorder(">" if big else "<")).astype(dtype)
    else:
        arr = rows.view(dtype)
    return arr.reshape((h, w, channels) if channels > 1 else (h, w))


def parse_compressed_format(fmt: str, field: str = "image") -> tuple[str | None, str, bool]:
    """``CompressedImage.format`` -> (original encoding or None, codec "jpeg" | "png", compressedDepth?).

    Raises InputError for formats other than jpeg / png (e.g. RVL depth, theora), naming the format.
    """
    text = str(fmt).strip()
    low = text.lower()
    original = text.split(";", 1)[0].strip() if ";" in text else None
    depth = "compresseddepth" in low
    if "png" in low or (depth and not any(k in low for k in ("rvl", "jpeg", "jpg"))):
        codec = "png"           # ROS 1 wrote "16UC1; compressedDepth" for png payloads
    elif "jpeg" in low or "jpg" in low:
        codec = "jpeg"
    else:
        raise InputError(f"unsupported compressed image format '{fmt}'", field=f"{field}.format",
                         fix=f"publish jpeg or png (image_transport 'compressed'; formats like "
                             f"{', '.join(repr(f) for f in COMPRESSED_FORMATS)}) or raw Image messages")
    return original, codec, depth


def _imdecode(payload: np.ndarray, fmt: str, field: str) -> np.ndarray:
    import cv2

    img = cv2.imdecode(payload, cv2.IMREAD_UNCHANGED) if payload.size else None
    if img is None:
        raise InputError(f"could not decode the '{fmt}' payload ({payload.size} bytes)", field=f"{field}.data",
                         fix="check the publisher: the data must be one complete JPEG/PNG file")
    return img


def decode_colour(msg: Any, field: str = "image") -> np.ndarray:
    """A colour camera message (raw Image or CompressedImage) -> (H, W, 3) uint8 RGB.

    mono images are repeated to three channels; alpha is dropped. Depth / pointmap encodings and
    compressedDepth payloads raise InputError (they are not colour images).
    """
    if is_compressed(msg):
        _original, _codec, depth = parse_compressed_format(msg.format, field)
        if depth:
            raise InputError(f"compressed image format '{msg.format}' is depth, not a colour image",
                             field=f"{field}.format", fix="subscribe the colour topic (<camera>/image_raw/compressed) here")
        img = _imdecode(_buffer(msg.data), msg.format, field)
        if img.dtype != np.uint8:
            raise InputError(f"'{msg.format}' decodes to {img.dtype} pixels, not 8-bit colour",
                             field=f"{field}.format", fix="publish 8-bit colour images here (depth on its own topic)")
        if img.ndim == 2:
            return np.repeat(img[..., None], 3, axis=2)
        return np.ascontiguousarray(img[..., 2::-1])           # OpenCV gives BGR / BGRA
    enc = canonical_encoding(msg.encoding, field)
    if enc not in COLOUR_ENCODINGS:
        raise InputError(f"encoding '{msg.encoding}' is not a colour image", field=f"{field}.encoding",
                         fix=f"publish one of {', '.join(COLOUR_ENCODINGS)} (depth goes on the depth topic)")
    arr = raw_pixels(msg, field)
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    if enc in _BGR:
        return np.ascontiguousarray(arr[..., 2::-1])
    return arr[..., :3] if arr.shape[2] == 3 else np.ascontiguousarray(arr[..., :3])


def _depth_metres(values: np.ndarray, millimetres: bool) -> np.ndarray:
    depth = values.astype(np.float32)
    if millimetres:
        depth *= np.float32(1e-3)
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


def decode_depth(msg: Any, field: str = "depth") -> np.ndarray:
    """A depth message -> (H, W) float32 metres, NaN where there is no measurement.

    Raw Image: 16UC1 (millimetres) or 32FC1 (metres). CompressedImage: compressedDepth png
    (16UC1 or 32FC1) or a 16-bit png (millimetres). Other encodings raise InputError.
    """
    if not is_compressed(msg):
        enc = canonical_encoding(msg.encoding, field)
        if enc not in DEPTH_ENCODINGS:
            raise InputError(f"encoding '{msg.encoding}' is not depth", field=f"{field}.encoding",
                             fix="publish depth as 16UC1 (millimetres) or 32FC1 (metres)")
        return _depth_metres(raw_pixels(msg, field), enc == "16UC1")
    original, codec, compressed_depth = parse_compressed_format(msg.format, field)
    buf = _buffer(msg.data)
    if compressed_depth:
        if codec != "png" or buf.size <= _DEPTH_HEADER:
            raise InputError(f"compressedDepth '{msg.format}' with {buf.size} bytes is not a png payload",
                             field=f"{field}.format", fix="use compressedDepth with png (not rvl), or raw 16UC1")
        quant_a, quant_b = struct.unpack("<ff", bytes(buf[4:_DEPTH_HEADER]))
        img = _imdecode(buf[_DEPTH_HEADER:], msg.format, field)
        if img.dtype != np.uint16 or img.ndim != 2:
            raise InputError(f"compressedDepth payload decodes to {img.dtype} {img.shape}, not 16-bit depth",
                             field=f"{field}.data", fix="publish 16UC1 or 32FC1 depth through compressedDepth")
        if (original or "16UC1").upper() == "32FC1":        # quantized inverse depth
            inv = img.astype(np.float32)
            with np.errstate(divide="ignore", invalid="ignore"):
                depth = np.where(inv > 0, np.float32(quant_a) / (inv - np.float32(quant_b)), np.nan)
            return _depth_metres(depth.astype(np.float32), False)
        return _depth_metres(img, True)
    img = _imdecode(buf, msg.format, field)
    if img.dtype != np.uint16 or img.ndim != 2:
        raise InputError(f"'{msg.format}' decodes to {img.dtype} {img.shape}, not 16-bit single-channel depth",
                         field=f"{field}.format", fix="publish depth as raw 16UC1/32FC1, compressedDepth png, "
                                                      "or a 16-bit png of millimetres")
    return _depth_metres(img, True)


# ---------------------------------------------------------------------- encoding (publishers, bags, tests)
def encode_compressed(rgb: np.ndarray, codec: str = "jpeg", *, quality: int = 95) -> tuple[str, bytes]:
    """(H, W, 3) uint8 RGB -> (format, data) of an image_transport ``compressed`` CompressedImage."""
    import cv2

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}", field="rgb")
    if codec not in ("jpeg", "png"):
        raise InputError(f"codec '{codec}'", field="codec", fix="use jpeg or png")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if codec == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if codec == "jpeg" else ".png", np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise InputError(f"{codec} encoding failed", field="rgb")
    return f"rgb8; {codec} compressed bgr8", buf.tobytes()


def encode_compressed_depth(depth_mm: np.ndarray) -> tuple[str, bytes]:
    """(H, W) uint16 millimetres -> (format, data) of a ``compressedDepth`` png CompressedImage."""
    import cv2

    depth_mm = np.asarray(depth_mm)
    if depth_mm.ndim != 2 or depth_mm.dtype != np.uint16:
        raise InputError(f"expected (H, W) uint16 millimetres, got {depth_mm.shape} {depth_mm.dtype}",
                         field="depth_mm")
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(depth_mm))
    if not ok:
        raise InputError("png encoding failed", field="depth_mm")
    return "16UC1; compressedDepth png", struct.pack("<iff", 1, 0.0, 0.0) + buf.tobytes()
