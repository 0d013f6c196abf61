"""Replay through kinema4d_core.service on real rosbag2 bags: the robot at each selected camera
frame's own stamp (jittered, frame-dropping camera), frame stamps stored in the rollout, and the
bag's CameraInfo / image size checked against the calibration (refused, or rescaled on request)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kinema4d_core import bags as B
from kinema4d_core.cli import main

H, W = 48, 72


def q_at(robot, t):
    """The recorded motion: fast (1.5 Hz) swings of the 7 arm joints around home."""
    span = np.minimum(robot.upper - robot.home(), robot.home() - robot.lower)
    q = robot.home().copy()
    q[:7] += 0.8 * span[:7] * np.sin(2 * np.pi * 1.5 * (t - 100.0))
    return q


def write_jittered_bag(path, robot, K, *, w=W, h=H, seed=0):
    """Joint states at 200 Hz; a 15 Hz camera with +-15 ms jitter that drops every 4th frame."""
    rng = np.random.default_rng(seed)
    with B.BagWriter(path, storage="mcap") as bag:
        for t in 100.0 + np.arange(0, 2.5, 1 / 200):
            bag.write("/joint_states", t, B.joint_state_msg(t, robot.joint_names, q_at(robot, t)))
        for k in range(36):
            if k % 4 == 3:
                continue
            t = 100.05 + k / 15 + rng.uniform(-0.015, 0.015)
            img = np.full((h, w, 3), (k * 7) % 256, np.uint8)
            bag.write("/camera/image_raw", t, B.image_msg(t, img, "cam"))
            bag.write("/camera/camera_info", t, B.camera_info_msg(t, K, w, h, "cam"))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from kinema4d_core.camera import load_calibration, save_calibration
    from kinema4d_core.robot import load_robot

    root = tmp_path_factory.mktemp("replay_service")
    cam = load_calibration("calibration/sim_camera.yaml").resized(H, W)
    calib = root / "camera.yaml"
    save_calibration(cam, calib)
    return root, calib, cam, load_robot("panda")


def _replay(calib, bag, out, *extra):
    return main(["replay", str(bag), "--robot", "panda", "--calibration", str(calib), "--out", str(out),
                 "--frames", "8", "--no-bag", "--quiet", *extra])


def test_replayed_robot_matches_a_render_at_each_frames_own_stamp(setup):
    from kinema4d_core.projection import render_trajectory
    from kinema4d_core.trajectory import JointTrajectory

    root, calib, cam, robot = setup
    bag = write_jittered_bag(root / "jitter", robot, cam.K)
    out = root / "out"
    assert _replay(calib, bag, out) == 0
    with np.load(out / "episode_000" / "ground_truth.npz") as g:
        stamps, mask = g["stamps"], g["robot_mask"]
    assert len(stamps) == 8 and np.ptp(np.diff(stamps)) > 0.02          # uneven: jitter and dropped frames
    for i, t in enumerate(stamps):
        ref = render_trajectory(robot, cam, JointTrajectory(robot.joint_names, q_at(robot, t)[None], [t]),
                                with_rgb=False).mask[0]
        assert (ref & mask[i]).sum() / (ref | mask[i]).sum() >= 0.99, i
    with np.load(out / "episode_000" / "rollout.npz") as z:
        meta = json.loads(str(z["metadata_json"][0]))
    np.testing.assert_allclose(meta["episode"]["frame_stamps"], stamps)
    assert meta["episode"]["robot_times"] == "frame stamps" and meta["episode"]["stream_K_checked"]


def test_camera_info_disagreeing_with_the_calibration_fails_the_episode(setup):
    root, calib, cam, robot = setup
    K = cam.K.copy()
    K[0, 0] *= 1.3
    bag = write_jittered_bag(root / "wrong_k", robot, K)
    out = root / "out_k"
    assert _replay(calib, bag, out) == 1
    reason = json.loads((out / "report.json").read_text())["episodes"][0]["reason"]
    assert "disagree with the calibration" in reason
    assert not (out / "episode_000" / "rollout.npz").exists()


def test_a_stream_of_another_size_is_refused_or_rescaled_on_request(setup):
    root, calib, cam, robot = setup
    bag = write_jittered_bag(root / "big", robot, cam.resized(2 * H, 2 * W).K, w=2 * W, h=2 * H)
    out = root / "out_big"
    assert _replay(calib, bag, out) == 1
    reason = json.loads((out / "report.json").read_text())["episodes"][0]["reason"]
    assert f"is {2 * W}x{2 * H} but the calibration is {W}x{H}" in reason and "rescale_to_stream" in reason
    assert _replay(calib, bag, root / "out_big_rescaled", "--rescale-to-stream") == 0
    with np.load(root / "out_big_rescaled" / "episode_000" / "rollout.npz") as z:
        assert z["rgb"].shape == (8, 2 * H, 2 * W, 3)                   # never stretched to the calibration
        np.testing.assert_allclose(z["K"], cam.resized(2 * H, 2 * W).K)
