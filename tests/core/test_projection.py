"""project_trajectory / save_robot_condition / load_robot_condition on the Panda."""

from __future__ import annotations

import numpy as np
import pytest

from kinema4d_core.camera import CameraModel, look_at
from kinema4d_core.conditioning import rgb_to_pointmap01
from kinema4d_core.errors import InputError
from kinema4d_core.io import read_mp4
from kinema4d_core.projection import (load_robot_condition, project_trajectory, renderer_for,
                                      save_robot_condition)

H, W = 64, 96


@pytest.fixture(scope="module")
def panda():
    from kinema4d_core.robot import load_robot

    return load_robot("panda")


@pytest.fixture(scope="module")
def cam():
    K = np.array([[80.0, 0, 47.5], [0, 80.0, 31.5], [0, 0, 1]])
    return CameraModel(W, H, K, [-0.1, 0.02, 0.0, 0.0, 0.0], "plumb_bob", look_at([1.5, 0.6, 0.9], [0.0, 0.0, 0.45]))


@pytest.fixture(scope="module")
def traj(panda):
    from kinema4d_core.trajectory import from_positions

    Q = np.tile(panda.home(), (5, 1))
    Q[:, 0] = np.linspace(-0.6, 0.6, 5)
    Q[:, 7] = np.linspace(0.04, 0.0, 5)
    return from_positions(panda, panda.joint_names, Q)


@pytest.fixture(scope="module")
def cond(panda, cam, traj):
    return project_trajectory(panda, cam, traj, n_frames=9)


def test_condition_shapes_and_types(cond, panda):
    assert cond.pointmap.shape == (9, H, W, 3) and cond.pointmap.dtype == np.float32
    assert cond.depth.shape == (9, H, W) and cond.mask.dtype == bool
    assert cond.link_id.dtype == np.int16 and cond.rgb.shape == (9, H, W, 3) and cond.rgb.dtype == np.uint8
    assert cond.joint_positions.shape == (9, panda.n_joints) and cond.joint_names == panda.joint_names
    assert np.all(cond.mask.reshape(9, -1).any(axis=1)), "the robot is in view in every frame"


def test_frames_follow_the_resampled_trajectory(cond, panda, cam, traj):
    from kinema4d_core.render import RobotRenderer
    from kinema4d_core.trajectory import resample

    assert np.allclose(cond.joint_positions, resample(traj, 9).positions)
    # frame 4 (middle) rendered on its own gives the same images
    ref = RobotRenderer(cam, panda.meshes).render_base(panda.mesh_poses(cond.joint_positions[4]))
    assert np.array_equal(ref.mask, cond.mask[4]) and np.array_equal(ref.pointmap, cond.pointmap[4])
    # the arm swings: consecutive frames differ
    assert not np.array_equal(cond.mask[0], cond.mask[8])


def test_normalization_covers_the_whole_sequence(cond):
    pts = cond.pointmap[cond.mask]
    assert np.allclose(cond.normalization.low, pts.min(axis=0)) and np.allclose(cond.normalization.high, pts.max(axis=0))
    n01 = cond.normalized_pointmap()
    assert n01[cond.mask].min() == 0.0 and np.isclose(n01[cond.mask].max(), 1.0)
    assert np.all(n01[~cond.mask] == 0)


def test_save_and_load_round_trip(cond, tmp_path):
    save_robot_condition(cond, tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["mask_pointmap.mp4", "mask_video.mp4", "robot_pointmap.npz"]
    back = load_robot_condition(tmp_path / "out")
    for key in ("pointmap", "depth", "mask", "link_id", "rgb", "joint_positions", "K", "T_base_camera"):
        assert np.array_equal(getattr(back, key), getattr(cond, key)), key
    assert back.joint_names == cond.joint_names
    assert np.array_equal(back.normalization.low, cond.normalization.low)
    assert np.array_equal(back.normalization.high, cond.normalization.high)
    video = read_mp4(tmp_path / "out" / "mask_pointmap.mp4")
    assert video.shape == (9, H, W, 3)
    # pseudo-RGB survives H.264 approximately away from the silhouette edges
    from scipy.ndimage import binary_erosion

    inner = binary_erosion(cond.mask, structure=np.ones((1, 5, 5), bool))
    err = np.abs(rgb_to_pointmap01(video)[inner] - cond.normalized_pointmap()[inner])
    assert np.median(err) < 0.03
    rgb_video = read_mp4(tmp_path / "out" / "mask_video.mp4")
    assert rgb_video.shape == (9, H, W, 3) and rgb_video[~cond.mask].mean() < 10


def test_robot_not_visible_raises_and_names_the_camera(panda, traj):
    K = np.array([[80.0, 0, 47.5], [0, 80.0, 31.5], [0, 0, 1]])
    away = CameraModel(W, H, K, [0] * 5, "plumb_bob", look_at([1.5, 0.6, 0.9], [3.0, 1.2, 1.0]))
    with pytest.raises(InputError) as err:
        project_trajectory(panda, away, traj, n_frames=5)
    assert "not visible" in err.value.problem and "extrinsics" in err.value.fix


def test_load_robot_condition_of_a_missing_folder(tmp_path):
    with pytest.raises(InputError):
        load_robot_condition(tmp_path / "nothing")


def test_renderer_is_reused_for_the_same_camera_and_meshes(panda, cam):
    assert renderer_for(cam, panda.meshes, with_rgb=True) is renderer_for(cam, panda.meshes, with_rgb=True)
