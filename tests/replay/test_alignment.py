"""Acceptance: bags written by other software (here: the ``rosbags`` library directly, with its
own type store, not our BagWriter), in mcap AND sqlite3 storage, with a jittered camera that
drops frames, CameraInfo on its own topic at its own rate, and a depth stream, replay and
evaluate right:
- the robot mask of every selected frame matches a render of the robot at that frame's own
  stamp (IoU >= 0.99), not at evenly spaced times;
- the recording compared with itself scores perfectly (Chamfer 0, F-score 1, PSNR inf).
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from kinema4d_core.cli import main

H, W = 48, 72
N_FRAMES = 10


def q_at(robot, t):
    """Fast (1.5 Hz) swings of the 7 arm joints around home: a camera period of error shows."""
    span = np.minimum(robot.upper - robot.home(), robot.home() - robot.lower)
    q = robot.home().copy()
    q[:7] += 0.8 * span[:7] * np.sin(2 * np.pi * 1.5 * (t - 100.0))
    return q


def depth_at(k):
    """A sloped, textured depth image (metres) that changes per frame."""
    yy, xx = np.mgrid[0:H, 0:W]
    return (1.2 + 0.004 * xx + 0.002 * yy + 0.05 * np.sin(0.3 * xx + 0.2 * k)).astype("<f4")


def write_foreign_bag(path, storage, robot, K, seed):
    """200 Hz joint states; a 15 Hz camera with +-15 ms jitter dropping every 4th frame; depth
    with each image; CameraInfo at 2 Hz on its own stamps. Written with rosbags' Writer and the
    ROS 2 Humble type store."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    T = ts.types
    Time, Header = T["builtin_interfaces/msg/Time"], T["std_msgs/msg/Header"]

    def header(t, frame):
        ns = int(round(t * 1e9))
        return Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id=frame)

    rng = np.random.default_rng(seed)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    msgs = []
    for t in 100.0 + np.arange(0, 2.5, 1 / 200):
        msgs.append(("/joint_states", t, T["sensor_msgs/msg/JointState"](
            header=header(t, ""), name=list(robot.joint_names), position=q_at(robot, t),
            velocity=np.zeros(0), effort=np.zeros(0))))
    for k in range(36):
        if k % 4 == 3:
            continue
        t = 100.05 + k / 15 + rng.uniform(-0.015, 0.015)
        img = np.zeros((H, W, 3), np.uint8)
        img[..., 0] = (np.arange(W) * 3 + 7 * k) % 256
        img[..., 1] = (np.arange(H)[:, None] * 5) % 256
        img[..., 2] = (11 * k) % 256
        msgs.append(("/cam/color", t, T["sensor_msgs/msg/Image"](
            header=header(t, "cam"), height=H, width=W, encoding="rgb8", is_bigendian=0, step=W * 3,
            data=img.reshape(-1))))
        d = depth_at(k)
        msgs.append(("/cam/depth", t, T["sensor_msgs/msg/Image"](
            header=header(t, "cam"), height=H, width=W, encoding="32FC1", is_bigendian=0, step=W * 4,
            data=d.reshape(-1).view(np.uint8))))
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    for t in 100.0 + np.arange(0, 2.5, 0.5):
        msgs.append(("/cam/info", t, T["sensor_msgs/msg/CameraInfo"](
            header=header(t, "cam"), height=H, width=W, distortion_model="plumb_bob", d=np.zeros(5),
            k=np.asarray(K, float).reshape(-1), r=np.eye(3).reshape(-1),
            p=np.hstack([K, np.zeros((3, 1))]).reshape(-1), binning_x=0, binning_y=0, roi=roi)))
    msgs.sort(key=lambda m: m[1])
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for topic, t, msg in msgs:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msg.__msgtype__, typestore=ts)
            # receive time a few ms after the stamp, as a real recorder sees it
            writer.write(conns[topic], int(round((t + 0.003) * 1e9)), ts.serialize_cdr(msg, msg.__msgtype__))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from kinema4d_core.camera import load_calibration, save_calibration
    from kinema4d_core.robot import load_robot

    root = tmp_path_factory.mktemp("alignment")
    cam = load_calibration("calibration/sim_camera.yaml").resized(H, W)
    calib = root / "camera.yaml"
    save_calibration(cam, calib)
    return root, calib, cam, load_robot("panda")


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_foreign_bags_replay_aligned_and_score_perfectly_against_themselves(setup, storage):
    from kinema4d_core.projection import render_trajectory
    from kinema4d_core.rollout import load_rollout, save_rollout
    from kinema4d_core.trajectory import JointTrajectory

    root, calib, cam, robot = setup
    bag = write_foreign_bag(root / f"bag_{storage}", storage, robot, cam.K, seed=1 if storage == "mcap" else 2)
    out = root / f"out_{storage}"
    assert main(["replay", str(bag), "--robot", "panda", "--calibration", str(calib), "--out", str(out),
                 "--image-topic", "/cam/color", "--camera-info-topic", "/cam/info", "--depth-topic", "/cam/depth",
                 "--frames", str(N_FRAMES), "--no-bag", "--quiet"]) == 0
    ep = out / "episode_000"
    with np.load(ep / "ground_truth.npz") as g:
        gt = {k: g[k] for k in g.files}
    stamps = gt["stamps"]
    assert len(stamps) == N_FRAMES and np.ptp(np.diff(stamps)) > 0.02        # uneven: jitter + drops
    rollout = load_rollout(ep)
    assert rollout.metadata["episode"]["stream_K_checked"]                   # the separate CameraInfo was used
    np.testing.assert_allclose(rollout.metadata["episode"]["frame_stamps"], stamps)
    ious = []
    for i, t in enumerate(stamps):
        ref = render_trajectory(robot, cam, JointTrajectory(robot.joint_names, q_at(robot, t)[None], [t]),
                                with_rgb=False).mask[0]
        ious.append(_iou(ref, gt["robot_mask"][i]))
    assert min(ious) >= 0.99, ious
    # the frames replayed are the recorded ones at those stamps (image and depth of the same frame)
    k = np.round((stamps - 100.05) * 15).astype(int)
    assert np.all(gt["rgb"][:, 0, 0, 2] == (11 * k) % 256)
    np.testing.assert_allclose(gt["depth"], np.stack([depth_at(i) for i in k]), rtol=1e-6)

    # the recording compared with itself: its own images and back-projected depth as the "rollout"
    from kinema4d_core.metrics import depth_to_pointmap

    own = replace(rollout, rgb=gt["rgb"], pointmap=depth_to_pointmap(gt["depth"], gt["K"]).astype(np.float32))
    save_rollout(own, ep, points=False)
    assert main(["evaluate", str(out), "--no-lpips", "--quiet"]) == 0
    (e,) = json.loads((out / "evaluation.json").read_text())["episodes"]
    assert e["geometry"]["cd_l1"] == 0.0 and e["geometry"]["cd_l2"] == 0.0 and e["geometry"]["fscore"] == 1.0
    assert e["geometry"]["flow_epe"] == 0.0 and e["geometry"]["temp_cd_l1"] == 0.0
    assert e["video"]["psnr"] == "inf" and e["video"]["ssim"] == pytest.approx(1.0)
    assert e["geometry"]["sampling"]["points_per_frame"]["min"] == H * W
