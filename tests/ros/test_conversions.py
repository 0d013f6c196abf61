"""Message <-> numpy conversions (no ROS graph needed)."""

from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import Image, JointState

from kinema4d_core.errors import InputError
from kinema4d_ros.conversions import (camera_info_to_model, camera_model_to_info, cloud_to_points, image_to_numpy,
                                      image_to_rgb, joint_state_to_vector, numpy_to_image, points_to_cloud)


@pytest.mark.parametrize("encoding,shape,dtype", [("32FC3", (5, 7, 3), np.float32), ("32FC1", (5, 7), np.float32),
                                                  ("mono8", (5, 7), np.uint8), ("rgb8", (5, 7, 3), np.uint8)])
def test_image_round_trip(encoding, shape, dtype):
    arr = (np.random.default_rng(1).random(shape) * 200).astype(dtype)
    msg = numpy_to_image(arr, encoding, "cam", None)
    assert msg.step == shape[1] * (shape[2] if len(shape) == 3 else 1) * np.dtype(dtype).itemsize
    np.testing.assert_array_equal(image_to_numpy(msg), arr)


def test_padded_rows_and_bgr_are_read_correctly():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    bgr = rgb[..., ::-1]
    padded = np.zeros((2, 12), np.uint8)
    padded[:, :9] = bgr.reshape(2, 9)
    msg = Image(height=2, width=3, encoding="bgr8", step=12, data=padded.tobytes())
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


def test_bad_images_raise_naming_the_field():
    with pytest.raises(InputError, match="image.encoding"):
        image_to_numpy(Image(height=1, width=1, encoding="yuv422", step=2, data=bytes(2)))
    with pytest.raises(InputError, match="image.data"):
        image_to_numpy(Image(height=2, width=2, encoding="mono8", step=2, data=bytes(3)))


def test_cloud_round_trip_with_colours():
    pts = np.random.default_rng(2).normal(size=(50, 3)).astype(np.float32)
    rgb = np.random.default_rng(3).integers(0, 255, (50, 3)).astype(np.uint8)
    msg = points_to_cloud(pts, "cam", None, rgb)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb"] and msg.point_step == 16
    xyz, col = cloud_to_points(msg)
    np.testing.assert_array_equal(xyz, pts)
    np.testing.assert_array_equal(col, rgb)


def test_joint_state_vector_reorders_and_rejects_bad_input():
    msg = JointState(name=["b", "extra", "a"], position=[2.0, 9.0, 1.0])
    np.testing.assert_array_equal(joint_state_to_vector(msg, ["a", "b"]), [1.0, 2.0])
    with pytest.raises(InputError, match="unknown"):
        joint_state_to_vector(msg, ["a", "b"], strict=True)
    with pytest.raises(InputError, match="missing"):
        joint_state_to_vector(msg, ["a", "c"])
    with pytest.raises(InputError, match="positions"):
        joint_state_to_vector(JointState(name=["a", "b"], position=[1.0]), ["a", "b"])
    with pytest.raises(InputError, match="non-finite"):
        joint_state_to_vector(JointState(name=["a"], position=[float("nan")]), ["a"])


def test_camera_info_round_trip_and_zero_focal(repo_root):
    from kinema4d_core.camera import load_calibration

    cam = load_calibration(repo_root / "calibration" / "sim_camera.yaml")
    back = camera_info_to_model(camera_model_to_info(cam), cam.T_base_camera, parent_frame=cam.parent_frame)
    np.testing.assert_allclose(back.K, cam.K)
    assert (back.width, back.height, back.child_frame) == (cam.width, cam.height, cam.child_frame)
    info = camera_model_to_info(cam)
    info.k = [0.0] * 9
    with pytest.raises(InputError, match="focal length"):
        camera_info_to_model(info, cam.T_base_camera)


@pytest.mark.parametrize("frame_id", ["", "a", "ab", "abc", "camera_optical_frame"])
def test_cdr_builders_deserialize_to_the_same_messages(frame_id):
    from builtin_interfaces.msg import Time
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import PointCloud2

    from kinema4d_ros.conversions import image_to_cdr, points_to_cloud_cdr

    rng = np.random.default_rng(4)
    stamp = Time(sec=12, nanosec=345)
    for encoding, arr in [("32FC3", rng.random((5, 7, 3)).astype(np.float32)), ("mono8", rng.random((4, 6)) > 0.5),
                          ("rgb8", rng.integers(0, 255, (3, 5, 3)).astype(np.uint8)),
                          ("32FC1", rng.random((3, 4)).astype(np.float32))]:
        got = deserialize_message(image_to_cdr(arr, encoding, frame_id, stamp), Image)
        assert got == numpy_to_image(arr, encoding, frame_id, stamp)
    for pts in (rng.normal(size=(11, 3)), np.zeros((0, 3))):
        got = deserialize_message(points_to_cloud_cdr(pts, frame_id, stamp), PointCloud2)
        assert got == points_to_cloud(pts, frame_id, stamp)
        np.testing.assert_array_equal(cloud_to_points(got)[0], pts.astype(np.float32))
    with pytest.raises(InputError, match="does not fit"):
        image_to_cdr(np.zeros((2, 2), np.float64), "32FC1")


def test_malformed_clouds_raise_naming_the_field():
    from sensor_msgs.msg import PointCloud2

    good = points_to_cloud(np.zeros((4, 3), np.float32), "cam")
    short = PointCloud2(height=1, width=4, fields=good.fields, point_step=12, row_step=48, data=bytes(40))
    with pytest.raises(InputError, match="cloud.data"):
        cloud_to_points(short)
    narrow = PointCloud2(height=1, width=4, fields=good.fields, point_step=8, row_step=32, data=bytes(32))
    with pytest.raises(InputError, match="cloud.point_step"):
        cloud_to_points(narrow)
    # padded rows (row_step > width * point_step) are read correctly
    pts = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    rows = np.zeros((2, 32), np.uint8)
    rows[:, :24] = pts.view(np.uint8).reshape(2, 24)
    padded = PointCloud2(height=2, width=2, fields=good.fields, point_step=12, row_step=32, data=rows.tobytes())
    np.testing.assert_array_equal(cloud_to_points(padded)[0], pts.reshape(-1, 3))


def test_transform_round_trip():
    from scipy.spatial.transform import Rotation

    from kinema4d_ros.conversions import matrix_to_transform, transform_to_matrix

    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("xyz", [0.3, -1.1, 2.0]).as_matrix()
    T[:3, 3] = [0.5, -0.25, 1.75]
    msg = matrix_to_transform(T, "panda_link0", "camera_optical_frame")
    assert msg.header.frame_id == "panda_link0" and msg.child_frame_id == "camera_optical_frame"
    np.testing.assert_allclose(transform_to_matrix(msg), T, atol=1e-12)


# ------------------------------------------------------------ camera inputs real drivers publish
def _rgb(h=6, w=9, seed=5):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_every_colour_encoding_decodes_to_rgb_with_padded_rows(encoding):
    rgb = _rgb()
    alpha = np.full(rgb.shape[:2] + (1,), 77, np.uint8)
    wire = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "rgba8": np.concatenate([rgb, alpha], 2),
            "bgra8": np.concatenate([rgb[..., ::-1], alpha], 2), "mono8": rgb[..., 0]}[encoding]
    want = np.repeat(rgb[..., :1], 3, axis=2) if encoding == "mono8" else rgb
    packed = numpy_to_image(np.ascontiguousarray(wire), encoding, "cam")
    np.testing.assert_array_equal(image_to_rgb(packed), want)
    row = packed.step
    rows = np.zeros((rgb.shape[0], row + 5), np.uint8)          # a driver that pads every row
    rows[:, :row] = np.frombuffer(bytes(packed.data), np.uint8).reshape(rgb.shape[0], row)
    padded = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, step=row + 5, data=rows.tobytes())
    np.testing.assert_array_equal(image_to_rgb(padded), want)


def test_16uc1_depth_is_millimetres_zero_invalid_and_big_endian_is_honoured():
    from kinema4d_ros.conversions import image_to_depth

    mm = np.array([[0, 1000, 2500], [500, 65535, 1]], np.uint16)
    d = image_to_depth(numpy_to_image(mm, "16UC1", "cam"))
    assert d.dtype == np.float32 and np.isnan(d[0, 0])
    np.testing.assert_allclose(d[np.isfinite(d)], [1.0, 2.5, 0.5, 65.535, 0.001], rtol=1e-6)
    big = Image(height=2, width=3, encoding="16UC1", is_bigendian=1, step=6, data=mm.astype(">u2").tobytes())
    np.testing.assert_array_equal(image_to_depth(big), d)
    m = np.array([[1.25, 0.0], [np.nan, 3.5]], np.float32)
    d32 = image_to_depth(numpy_to_image(m, "32FC1", "cam"))
    np.testing.assert_allclose(d32[[0, 1], [0, 1]], [1.25, 3.5])
    assert np.isnan(d32[0, 1]) and np.isnan(d32[1, 0])
    big32 = Image(height=2, width=2, encoding="32FC1", is_bigendian=1, step=8, data=m.astype(">f4").tobytes())
    np.testing.assert_array_equal(np.nan_to_num(image_to_depth(big32)), np.nan_to_num(d32))


def test_compressed_jpeg_within_tolerance_png_exact_and_compressed_depth():
    from sensor_msgs.msg import CompressedImage

    from kinema4d_core.images import encode_compressed_depth
    from kinema4d_ros.conversions import image_to_depth, numpy_to_compressed

    y, x = np.mgrid[0:48, 0:64]
    smooth = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)   # JPEG-friendly content
    jpeg = numpy_to_compressed(smooth, "jpeg", "cam")
    assert jpeg.format == "rgb8; jpeg compressed bgr8"
    got = image_to_rgb(jpeg)
    assert got.shape == smooth.shape and np.abs(got.astype(int) - smooth).mean() < 3.0
    png = numpy_to_compressed(_rgb(), "png", "cam")
    np.testing.assert_array_equal(image_to_rgb(png), _rgb())
    legacy = CompressedImage(format="png", data=bytes(png.data))      # ROS 1 / old drivers: format "png"
    np.testing.assert_array_equal(image_to_rgb(legacy), _rgb())
    mm = np.array([[0, 1234], [4000, 7]], np.uint16)
    fmt, data = encode_compressed_depth(mm)
    depth = image_to_depth(CompressedImage(format=fmt, data=data))
    assert np.isnan(depth[0, 0])
    np.testing.assert_allclose(depth[[0, 1, 1], [1, 0, 1]], [1.234, 4.0, 0.007], rtol=1e-6)


def test_unknown_encodings_and_formats_are_refused_naming_them_and_the_supported_list():
    from sensor_msgs.msg import CompressedImage

    from kinema4d_ros.conversions import image_to_depth

    with pytest.raises(InputError) as err:
        image_to_rgb(Image(height=1, width=2, encoding="yuv422", step=4, data=bytes(4)), "camera/image_raw")
    text = str(err.value)
    assert "'yuv422'" in text and "camera/image_raw.encoding" in text
    assert all(e in text for e in ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "16UC1", "32FC1"))
    with pytest.raises(InputError, match="'16UC1' is not a colour image"):
        image_to_rgb(numpy_to_image(np.zeros((2, 2), np.uint16), "16UC1"))
    with pytest.raises(InputError, match="'rgb8' is not depth"):
        image_to_depth(numpy_to_image(_rgb(), "rgb8"))
    with pytest.raises(InputError, match="unsupported compressed image format 'theora'"):
        image_to_rgb(CompressedImage(format="theora", data=bytes(8)))
    with pytest.raises(InputError, match=r"image.data: could not decode"):
        image_to_rgb(CompressedImage(format="rgb8; jpeg compressed bgr8", data=b"not a jpeg"))
    with pytest.raises(InputError, match="image.step"):
        image_to_rgb(Image(height=2, width=3, encoding="rgb8", step=6, data=bytes(12)))


def test_stream_camera_is_match_stream_plus_camera_info_intrinsics(repo_root):
    from kinema4d_core.camera import load_calibration
    from kinema4d_core.errors import ConfigError
    from kinema4d_ros.conversions import camera_model_to_info, stream_camera

    cal = load_calibration(repo_root / "calibration" / "sim_camera.yaml")
    info = camera_model_to_info(cal)
    info.k[0] += 3.0                                            # the driver's own intrinsics win
    cam = stream_camera(cal, info)
    assert cam.K[0, 0] == pytest.approx(cal.K[0, 0] + 3.0)
    np.testing.assert_array_equal(cam.T_base_camera, cal.T_base_camera)
    half = camera_model_to_info(cal.resized(cal.height // 2, cal.width // 2))
    with pytest.raises(ConfigError) as err:
        stream_camera(cal, half)
    text = str(err.value)
    assert f"{cal.width // 2}x{cal.height // 2}" in text and f"{cal.width}x{cal.height}" in text
    assert "rescale_to_stream" in text
    assert stream_camera(cal, half, rescale=True).width == cal.width // 2


def test_compressed_depth_32fc1_is_quantized_inverse_depth():
    """compressed_depth_image_transport's 32FC1 coding: inv = A / depth + B (uint16 png), 0 = invalid."""
    import struct

    import cv2
    from sensor_msgs.msg import CompressedImage

    from kinema4d_ros.conversions import image_to_depth

    a, max_depth = 100.0, 10.0
    b = 1.0 - a / max_depth
    depth = np.array([[2.0, 0.0], [4.0, 0.5]], np.float32)
    inv = np.where(depth > 0, np.round(a / np.maximum(depth, 1e-9) + b), 0).astype(np.uint16)
    ok, png = cv2.imencode(".png", inv)
    assert ok
    msg = CompressedImage(format="32FC1; compressedDepth png", data=struct.pack("<iff", 0, a, b) + png.tobytes())
    got = image_to_depth(msg)
    assert np.isnan(got[0, 1])
    np.testing.assert_allclose(got[[0, 1, 1], [0, 0, 1]], [2.0, 4.0, 0.5], rtol=1e-5)
    rvl = CompressedImage(format="16UC1; compressedDepth rvl", data=bytes(20))
    with pytest.raises(InputError, match="rvl"):
        image_to_depth(rvl)
