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
