"""kinema4d_core.service.simulate_episode: the one 'simulate an episode' path and its rules
(robot at each camera frame's own stamp, stream vs calibration, model size, joint limits, steps)."""

from __future__ import annotations

import numpy as np
import pytest

from kinema4d_core.camera import load_calibration
from kinema4d_core.errors import ConfigError, InputError
from kinema4d_core.projection import render_trajectory
from kinema4d_core.registry import make_backend
from kinema4d_core.robot import load_robot
from kinema4d_core.service import LIMIT_SLACK, EpisodeRequest, prepare_episode, simulate_episode
from kinema4d_core.trajectory import JointTrajectory, resample, sample_at

H, W = 48, 72


@pytest.fixture(scope="module")
def robot():
    return load_robot("panda")


@pytest.fixture(scope="module")
def camera():
    return load_calibration("calibration/sim_camera.yaml").resized(H, W)


def joint_stream(robot, t0=100.0, duration=2.0, rate=200.0):
    """Fast joint motion sampled at 200 Hz (absolute stamps, seconds)."""
    t = t0 + np.arange(int(duration * rate) + 1) / rate
    q = np.tile(robot.home(), (len(t), 1))
    span = np.minimum(robot.upper - robot.home(), robot.home() - robot.lower)
    q[:, :7] += 0.8 * span[:7] * np.sin(2 * np.pi * 1.5 * (t - t0))[:, None]
    return JointTrajectory(robot.joint_names, q, t)


def jittered_camera_stamps(t0=100.0, n=30, period=1 / 15, seed=0):
    """A 15 Hz camera with +-15 ms jitter that dropped every 4th frame, trimmed to the joint range."""
    rng = np.random.default_rng(seed)
    k = np.arange(int(n * 1.4))
    k = k[k % 4 != 3][:n]
    return t0 + 0.02 + k * period + rng.uniform(-0.015, 0.015, len(k))


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_robot_is_rendered_at_each_selected_frames_own_stamp(robot, camera):
    traj = joint_stream(robot, duration=3.0)
    stamps = jittered_camera_stamps()
    request = EpisodeRequest(first_frame=np.zeros((H, W, 3), np.uint8), robot=robot, camera=camera, trajectory=traj,
                             frame_stamps=stamps, steps=1)
    backend = make_backend("static-scene")
    prepared = prepare_episode(request, backend)
    mask = prepared.condition.mask
    assert len(mask) == len(stamps)
    for i, t in enumerate(stamps):
        ref = render_trajectory(robot, camera, sample_at(traj, [t]), with_rgb=False).mask[0]
        assert iou(mask[i], ref) >= 0.99, i
    # the old rule (evenly spaced times) is measurably out of step on this stream
    even = resample(JointTrajectory(traj.joint_names, sample_at(traj, stamps).positions, stamps), len(stamps))
    old = render_trajectory(robot, camera, even, with_rgb=False).mask
    assert min(iou(mask[i], old[i]) for i in range(len(stamps))) < 0.9
    rollout = simulate_episode(prepared, backend)
    assert rollout.metadata["episode"]["robot_times"] == "frame stamps"
    np.testing.assert_allclose(rollout.metadata["episode"]["frame_stamps"], stamps)


def test_frame_stamps_outside_the_joint_states_are_refused(robot, camera):
    traj = joint_stream(robot, duration=0.5)
    request = EpisodeRequest(first_frame=np.zeros((H, W, 3), np.uint8), robot=robot, camera=camera, trajectory=traj,
                             frame_stamps=np.array([100.1, 100.2, 101.0]))
    with pytest.raises(InputError, match="frame 2 .* outside the joint states"):
        prepare_episode(request, make_backend("static-scene"))


def test_a_stream_of_another_size_is_refused_unless_rescaling_is_asked_for(robot, camera):
    traj = joint_stream(robot, duration=0.5)
    backend = make_backend("static-scene")
    big = np.zeros((2 * H, 2 * W, 3), np.uint8)
    request = EpisodeRequest(first_frame=big, robot=robot, camera=camera, trajectory=traj, n_frames=4)
    with pytest.raises(ConfigError, match=f"is {2 * W}x{2 * H} but the calibration is {W}x{H}"):
        prepare_episode(request, backend)
    ok = prepare_episode(EpisodeRequest(first_frame=big, robot=robot, camera=camera, trajectory=traj, n_frames=4,
                                        rescale_to_stream=True), backend)
    np.testing.assert_allclose(ok.stream_camera.K, camera.resized(2 * H, 2 * W).K)
    assert ok.condition.mask.shape == (4, 2 * H, 2 * W) and ok.info["rescaled_to_stream"]
    # the stream's own CameraInfo K must agree with the calibration
    wrong_K = camera.K.copy()
    wrong_K[0, 0] *= 1.2
    with pytest.raises(ConfigError, match="intrinsics .* disagree"):
        prepare_episode(EpisodeRequest(first_frame=np.zeros((H, W, 3), np.uint8), robot=robot, camera=camera,
                                       trajectory=traj, stream_K=wrong_K), backend)
    with pytest.raises(InputError, match="register the depth image"):
        prepare_episode(EpisodeRequest(first_frame=np.zeros((H, W, 3), np.uint8), robot=robot, camera=camera,
                                       trajectory=traj, first_depth=np.ones((H // 2, W // 2), np.float32)), backend)


def test_model_size_resizes_image_and_camera_together(robot, camera):
    """kinema4d-tiny generates 49 frames of 48 x 96: the 48 x 72 stream is resized to it and the
    robot is rendered in the camera resized the same way (no weights are loaded to prepare)."""
    backend = make_backend("kinema4d-tiny")
    traj = joint_stream(robot, duration=1.0)
    frame = np.zeros((H, W, 3), np.uint8)
    frame[:, : W // 2] = 255
    prepared = prepare_episode(EpisodeRequest(first_frame=frame, robot=robot, camera=camera, trajectory=traj),
                               backend)
    assert prepared.generation.first_frame.shape == (48, 96, 3)
    np.testing.assert_allclose(prepared.camera.K, camera.resized(48, 96).K)
    assert prepared.condition.mask.shape == (49, 48, 96)
    assert prepared.info["generated_size"] == [96, 48] and prepared.info["stream_size"] == [W, H]
    assert prepared.info["steps"] == 2                                  # steps 0: the backend's default
    assert prepared.info["robot_times"] == "evenly spaced over the trajectory"   # a planned trajectory


def test_measured_overshoot_within_the_slack_is_clipped_and_larger_is_refused(robot, camera):
    traj = joint_stream(robot, duration=0.5)
    q = np.array(traj.positions)
    q[3, 0] = robot.upper[0] + 0.5 * LIMIT_SLACK
    backend = make_backend("static-scene")
    prepared = prepare_episode(EpisodeRequest(first_frame=np.zeros((H, W, 3), np.uint8), robot=robot, camera=camera,
                                              trajectory=JointTrajectory(traj.joint_names, q, traj.stamps),
                                              n_frames=5), backend)
    assert prepared.info["positions_clipped_to_limits"] == 1
    q[3, 0] = robot.upper[0] + 0.2                                      # not noise: refused, never clipped
    with pytest.raises(InputError, match=robot.joint_names[0]):
        prepare_episode(EpisodeRequest(first_frame=np.zeros((H, W, 3), np.uint8), robot=robot, camera=camera,
                                       trajectory=JointTrajectory(traj.joint_names, q, traj.stamps)), backend)
