"""rosbag2 reading/writing: both storages, every supported encoding, and clear failures."""

from __future__ import annotations

import os

import numpy as np
import pytest

from kinema4d_core import bags as B
from kinema4d_core.errors import InputError
from tests.replay.replay_helpers import JOINTS, frame_image, write_recording


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_recording_reads_back_with_stamps_joints_images_and_camera_info(tmp_path, storage):
    path = write_recording(tmp_path / "rec", storage=storage, episodes=[(100.0, 5)], depth=True)
    bag = B.read_bag(path, B.BagTopics(depth="/camera/depth"))
    assert bag.storage == storage
    assert bag.joints.names == JOINTS
    assert bag.joints.positions.shape == (10, 3)
    np.testing.assert_allclose(bag.images.stamps, 100.0 + np.arange(5) / 10.0, atol=1e-9)
    assert len(bag.images) == 5
    np.testing.assert_array_equal(bag.images.decode(3), frame_image(3))
    assert bag.camera_info is not None and (bag.camera_info.width, bag.camera_info.height) == (72, 48)
    assert bag.camera_info.K[0, 0] == 60.0
    np.testing.assert_allclose(bag.depth.decode_depth(2), 1.02, rtol=1e-6)


def test_bare_storage_file_is_accepted(tmp_path):
    path = write_recording(tmp_path / "rec", storage="mcap")
    (mcap,) = path.glob("*.mcap")
    assert len(B.read_bag(mcap).images) == 10


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_raw_color_encodings_decode_to_the_same_rgb(tmp_path, encoding):
    path = write_recording(tmp_path / "rec", encoding=encoding)
    np.testing.assert_array_equal(B.read_bag(path).images.decode(4), frame_image(4))


def test_mono8_decodes_to_grey_rgb(tmp_path):
    path = write_recording(tmp_path / "rec", encoding="mono8")
    img = B.read_bag(path).images.decode(1)
    assert img.shape == (48, 72, 3)
    np.testing.assert_array_equal(img[..., 0], frame_image(1)[..., 0])
    np.testing.assert_array_equal(img[..., 0], img[..., 2])


def test_png_is_lossless_and_jpeg_is_close(tmp_path):
    png = B.read_bag(write_recording(tmp_path / "png", compressed="png")).images.decode(2)
    np.testing.assert_array_equal(png, frame_image(2))
    jpg = B.read_bag(write_recording(tmp_path / "jpg", compressed="jpeg")).images.decode(2)
    assert np.mean(np.abs(jpg.astype(int) - frame_image(2).astype(int))) < 8


def test_row_padding_in_step_is_ignored():
    img = frame_image(0, 5, 7)
    msg = B.image_msg(0.0, img, "cam")
    padded = np.zeros((5, 7 * 3 + 3), np.uint8)
    padded[:, :21] = img.reshape(5, 21)
    msg.step, msg.data = 24, padded.reshape(-1)
    np.testing.assert_array_equal(B.decode_image(msg), img)


def test_unsupported_encodings_name_the_topic_and_the_fix():
    msg = B.image_msg(0.0, frame_image(0, 4, 4), "cam")
    msg.encoding = "yuv422"
    with pytest.raises(InputError, match="unsupported image encoding 'yuv422'") as err:
        B.decode_image(msg, field="/cam")
    assert err.value.field == "/cam.encoding" and "rgb8" in err.value.fix
    comp = B.compressed_image_msg(0.0, frame_image(0, 4, 4), "cam", "png")
    comp.format = "16UC1; compressedDepth"
    with pytest.raises(InputError, match="compressed image format"):
        B.decode_compressed_image(comp)


def test_16uc1_depth_is_millimetres_and_zero_is_invalid():
    msg = B.depth_msg(0.0, np.ones((2, 3)), "cam")
    raw = np.array([[0, 1000, 2500], [500, 0, 1]], "<u2")
    msg.encoding, msg.step, msg.data = "16UC1", 6, raw.view(np.uint8).reshape(-1)
    d = B.decode_depth(msg)
    assert np.isnan(d[0, 0]) and np.isnan(d[1, 1])
    np.testing.assert_allclose(d[0, 1:], [1.0, 2.5])


def test_missing_topic_is_reported_with_the_available_ones(tmp_path):
    path = write_recording(tmp_path / "rec")
    with pytest.raises(InputError) as err:
        B.read_bag(path, B.BagTopics(image="/nope"))
    assert err.value.field == "image_topic" and "/camera/image_raw" in err.value.problem


def test_wrong_message_type_on_a_topic_is_refused(tmp_path):
    path = write_recording(tmp_path / "rec")
    with pytest.raises(InputError, match="expected sensor_msgs/msg/JointState"):
        B.read_bag(path, B.BagTopics(joint="/camera/camera_info"))


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_truncated_bag_raises_input_error_not_a_library_exception(tmp_path, storage):
    path = write_recording(tmp_path / "rec", storage=storage, episodes=[(100.0, 30)])
    (data,) = [p for p in path.iterdir() if p.suffix in (".db3", ".mcap")]
    size = data.stat().st_size
    with open(data, "r+b") as fh:
        fh.truncate(size // 3)
    with pytest.raises(InputError) as err:
        bag = B.read_bag(path)
        [bag.images.decode(i) for i in range(len(bag.images))]
    assert err.value.field == "bag" and "corrupt or truncated" in err.value.fix


def test_garbage_file_is_refused(tmp_path):
    bad = tmp_path / "bad.db3"
    bad.write_bytes(os.urandom(2000))
    with pytest.raises(InputError, match="cannot open bag"):
        B.read_bag(bad)


def test_writer_never_leaves_a_partial_bag(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with B.BagWriter(target, storage="mcap") as bag:
            bag.write("/joint_states", 1.0, B.joint_state_msg(1.0, ["a"], [0.5]))
            raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_pointcloud_roundtrip_keeps_points_and_colors(tmp_path):
    pts = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    pts[3] = np.nan
    cols = np.random.default_rng(1).integers(0, 256, (50, 3)).astype(np.uint8)
    with B.BagWriter(tmp_path / "pc", storage="sqlite3") as bag:
        bag.write("/points", 2.5, B.pointcloud_msg(2.5, pts, "cam", cols))
    ((topic, msgtype, t_ns, raw),) = list(B.iter_messages(tmp_path / "pc"))
    assert (topic, t_ns) == ("/points", 2_500_000_000)
    msg = B.typestore().deserialize_cdr(raw, msgtype)
    assert msg.header.frame_id == "cam" and msg.width == 49
    xyz, rgb = B.pointcloud_to_numpy(msg)
    keep = np.ones(50, bool)
    keep[3] = False
    np.testing.assert_array_equal(xyz, pts[keep])
    np.testing.assert_array_equal(rgb, cols[keep])


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_a_split_bag_reads_as_one_recording_across_its_files(tmp_path, storage):
    from tests.replay.replay_helpers import write_split_recording

    path = write_split_recording(tmp_path / "split", storage=storage, episodes=[(100.0, 4), (110.0, 5), (120.0, 3)])
    assert len(list(path.glob("*.db3" if storage == "sqlite3" else "*.mcap"))) == 3
    bag = B.read_bag(path)
    np.testing.assert_allclose(bag.images.stamps, np.concatenate([100.0 + np.arange(4) / 10, 110.0 + np.arange(5) / 10,
                                                                  120.0 + np.arange(3) / 10]), atol=1e-9)
    assert bag.joints.positions.shape == (24, 3)
    # frames from every file, read back in one pass
    frames = bag.images.decode_many([11, 0, 5, 4])
    for got, k in zip(frames, [11, 0, 5, 4]):
        np.testing.assert_array_equal(got, frame_image(k - (0 if k < 4 else 4 if k < 9 else 9)))  # numbered per file


def test_image_pixels_are_not_kept_after_the_first_pass(tmp_path):
    path = write_recording(tmp_path / "rec", storage="mcap", episodes=[(100.0, 6)])
    images = B.read_bag(path).images
    # only stamps and bag positions: a few numbers per frame, whatever the image size
    assert not any(isinstance(v, (bytes, list)) for v in vars(images).values())
    assert sum(np.asarray(v).nbytes for v in vars(images).values() if isinstance(v, np.ndarray)) < 6 * 64
    np.testing.assert_array_equal(images.decode_many([5, 2])[1], frame_image(2))


def test_header_stamp_is_read_from_the_cdr_without_deserializing():
    msg = B.image_msg(123.25, frame_image(0, 4, 4), "camera_frame")
    raw = bytes(B.typestore().serialize_cdr(msg, B.IMAGE))
    assert B.header_stamp(raw, B.IMAGE, 5_000_000_000) == (123.25, "camera_frame")
    zero = B.image_msg(0.0, frame_image(0, 4, 4), "c")
    raw0 = bytes(B.typestore().serialize_cdr(zero, B.IMAGE))
    assert B.header_stamp(raw0, B.IMAGE, 5_000_000_000)[0] == 5.0      # zero stamp: the receive time


def test_a_ros1_bag_is_refused_with_the_conversion_command(tmp_path):
    ros1 = tmp_path / "run.bag"
    ros1.write_bytes(B.ROS1_MAGIC + b"\n" + os.urandom(100))
    with pytest.raises(InputError) as err:
        B.read_bag(ros1)
    assert "ROS 1 bag" in err.value.problem
    assert f"rosbags-convert --src {ros1} --dst {tmp_path / 'run_ros2'}" in err.value.fix
