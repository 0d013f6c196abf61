"""A `kinema4d replay` output folder (real rosbag2 bag with depth) as training data: the robot
condition is rendered by the service path at the model size and matches the replay's own."""

from __future__ import annotations

import numpy as np
import pytest

from kinema4d_core import bags as B
from kinema4d_core.cli import main
from kinema4d_core.errors import InputError
from kinema4d_core.model.config import TINY_ARM
from kinema4d_core.training.data import ModelGeometry, SampleSpec, build_sample, replay_entries

H, W = 48, 72
N = TINY_ARM.num_frames


def write_bag(path, robot, K):
    """Joint states at 100 Hz, camera + depth (a plane 1.5 m away) at 15 Hz, N frames."""
    with B.BagWriter(path, storage="mcap") as bag:
        for t in 100.0 + np.arange(0, N / 15 + 0.3, 1 / 100):
            q = robot.home().copy()
            q[0] += 0.4 * np.sin(t - 100.0)
            bag.write("/joint_states", t, B.joint_state_msg(t, robot.joint_names, q))
        for k in range(N):
            t = 100.05 + k / 15
            bag.write("/camera/image_raw", t, B.image_msg(t, np.full((H, W, 3), 3 * k, np.uint8), "cam"))
            bag.write("/camera/depth", t, B.depth_msg(t, np.full((H, W), 1.5, np.float32), "cam"))
            bag.write("/camera/camera_info", t, B.camera_info_msg(t, K, W, H, "cam"))
    return path


def test_replay_folder_becomes_samples(tmp_path):
    from kinema4d_core.camera import load_calibration, save_calibration
    from kinema4d_core.robot import load_robot

    robot = load_robot("panda")
    cam = load_calibration("calibration/sim_camera.yaml").resized(H, W)
    calib = tmp_path / "camera.yaml"
    save_calibration(cam, calib)
    bag = write_bag(tmp_path / "bag", robot, cam.K)
    out = tmp_path / "replay"
    assert main(["replay", str(bag), "--robot", "panda", "--calibration", str(calib), "--out", str(out),
                 "--frames", str(N), "--depth-topic", "/camera/depth", "--no-bag", "--quiet"]) == 0
    entries = replay_entries(out)
    assert [n for n, _ in entries] == ["replay_replay_episode_000"]
    geometry = ModelGeometry(N, (TINY_ARM.height, TINY_ARM.width), "rgb-pm")
    sample = build_sample(SampleSpec(entries[0][0], "replay", str(entries[0][1])), geometry)
    assert sample.rgb.shape == (N, 48, 96, 3) and sample.robot_rgb.shape == (N, 48, 96, 3)
    assert sample.robot_mask.any() and 0 < sample.robot_mask.mean() < 0.5
    assert np.all(sample.robot_pointmap01[~sample.robot_mask] == 0)      # 0 outside the robot
    assert 0.0 <= sample.robot_pointmap01.min() and sample.robot_pointmap01.max() <= 1.0
    assert sample.robot_pointmap01[sample.robot_mask].max() == pytest.approx(1.0, abs=1e-6)   # own extrema
    # the world: a plane at 1.5 m -> z constant (flat axis maps to 0), x/y spanning [0, 1]
    assert np.allclose(sample.pointmap01[..., 2], 0.0)
    assert sample.pointmap01[..., 0].max() == pytest.approx(1.0) and sample.pointmap01[..., 0].min() == 0.0
    assert sample.meta["source"] == "replay"
    # another frame count than the model's is refused, naming the replay option
    with pytest.raises(InputError, match="--frames 13"):
        build_sample(SampleSpec(entries[0][0], "replay", str(entries[0][1])), ModelGeometry(13, (48, 96)))
