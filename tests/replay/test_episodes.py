"""Episode splitting, stamp alignment and the Robo4D folder format."""

from __future__ import annotations

import numpy as np
import pytest

from kinema4d_core import bags as B
from kinema4d_core import episodes as E
from kinema4d_core.errors import InputError
from tests.replay.replay_helpers import frame_image, write_recording


def test_gap_split_finds_each_burst():
    stamps = np.r_[np.arange(0, 1, 0.1), np.arange(5, 5.5, 0.1), np.arange(20, 21, 0.1)]
    ranges = E.split_by_gap(stamps, 2.0)
    assert [(round(r.start, 6), round(r.end, 6)) for r in ranges] == [(0.0, 0.9), (5.0, 5.4), (20.0, 20.9)]
    assert len({r.name for r in ranges}) == 3


def test_markers_start_episodes_and_the_last_runs_to_the_end():
    ranges = E.split_by_markers(np.array([10.0, 3.0]), t_end=20.0)
    assert [(r.start, r.end) for r in ranges] == [(3.0, pytest.approx(10.0)), (10.0, 20.0)]


def test_ranges_file_in_yaml_and_pairs(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("- {name: pick, start: 1.0, end: 2.5}\n- [3, 4]\n")
    ranges = E.load_ranges(f)
    assert [(r.name, r.start, r.end) for r in ranges] == [("pick", 1.0, 2.5), ("episode_001", 3.0, 4.0)]
    f.write_text("- {start: 2, end: 1}\n")
    with pytest.raises(InputError, match="not after start"):
        E.load_ranges(f)


@pytest.mark.parametrize("spec", ["gap:-1", "gap:x", "bogus:1", "marker:", "ranges:/does/not/exist"])
def test_bad_episode_specs_are_refused(spec):
    with pytest.raises(InputError) as err:
        E.parse_episodes_by(spec)
    assert err.value.field == "episodes_by"


def test_nearest_alignment_respects_tolerance_and_reports_gaps():
    joints = np.array([0.0, 0.1, 0.2, 0.3, 1.0])
    cams = np.array([0.01, 0.149, 0.31, 0.6])
    al = E.align_nearest(cams, joints, tolerance=0.05)
    assert al.matched.tolist() == [0, 1, 2]
    assert al.source_index.tolist() == [0, 1, 3]
    assert al.unmatched.tolist() == [3]
    assert al.max_gap == pytest.approx(0.3)
    np.testing.assert_allclose(al.offset, [-0.01, -0.049, -0.01], atol=1e-12)


def test_alignment_with_one_source_and_no_source():
    assert E.align_nearest(np.array([1.0, 2.0]), np.array([1.02]), 0.05).matched.tolist() == [0]
    assert E.align_nearest(np.array([1.0]), np.array([]), 0.05).unmatched.tolist() == [0]


def test_episode_from_bag_aligns_frames_and_resamples(tmp_path):
    path = write_recording(tmp_path / "rec", episodes=[(100.0, 12), (200.0, 9)], depth=True)
    bag = B.read_bag(path, B.BagTopics(depth="/camera/depth", marker="/episode_start"))
    ranges = E.split_episodes(E.parse_episodes_by("gap:1.0"), bag.images.stamps)
    assert len(ranges) == 2
    assert len(E.split_episodes(E.EpisodeSplit("marker", "/episode_start"), bag.images.stamps,
                                bag.marker_stamps)) == 2
    ep = E.episode_from_bag(bag, ranges[0], tolerance=0.01, min_frames=5, n_frames=5)
    assert ep.rgb.shape == (5, 48, 72, 3) and ep.depth.shape == (5, 48, 72)
    np.testing.assert_allclose(ep.stamps, 100.0 + np.array([0, 3, 6, 8, 11]) / 10.0)
    np.testing.assert_array_equal(ep.rgb[1], frame_image(3))
    # joint states are at 20 Hz with a 4 ms offset: the nearest one to each frame
    np.testing.assert_allclose(ep.joint_positions[:, 0], 0.1 * np.sin(ep.stamps + 0.004), atol=1e-9)
    assert ep.alignment["unmatched"] == 0 and ep.alignment["max_gap_s"] == pytest.approx(0.004, abs=1e-6)


def test_short_episode_and_disjoint_clocks_fail_with_reasons(tmp_path):
    bag = B.read_bag(write_recording(tmp_path / "rec", episodes=[(100.0, 6)]))
    rng = E.split_episodes(E.EpisodeSplit("all"), bag.images.stamps)[0]
    with pytest.raises(InputError, match="only 6 aligned camera frames, the model needs 49"):
        E.episode_from_bag(bag, rng, min_frames=49)
    skewed = B.read_bag(write_recording(tmp_path / "skew", episodes=[(100.0, 6)], joint_offset_s=30.0))
    with pytest.raises(InputError, match="never overlap") as err:
        E.episode_from_bag(skewed, rng, tolerance=0.05)
    assert err.value.field == "episode episode_000"


def _robo4d_arrays(T=5, h=32, w=48):
    rng = np.random.default_rng(0)
    rgb = np.stack([frame_image(i, h, w) for i in range(T)])
    pm = np.clip(np.linspace(0, 1, T * h * w * 3).reshape(T, h, w, 3), 0, 1)
    robot = np.zeros((T, h, w, 3), np.uint8)
    robot[:, 8:20, 10:30] = 200
    robot_pm = np.where(robot > 0, 0.5, 0.0)
    return rgb, pm, robot, robot_pm + 0 * rng.random()


def test_robo4d_folder_roundtrip(tmp_path):
    rgb, pm, robot, robot_pm = _robo4d_arrays()
    E.write_robo4d_episode(tmp_path, "3", rgb, pm, robot, robot_pm)
    E.write_robo4d_episode(tmp_path, "10", rgb, pm, robot, robot_pm)
    assert E.list_robo4d_episodes(tmp_path) == ["3", "10"]
    ep = E.read_robo4d_episode(tmp_path, "3")
    assert ep.rgb.shape == rgb.shape and ep.first_frame.shape == rgb.shape[1:]
    np.testing.assert_array_equal(ep.first_frame, rgb[0])
    assert np.abs(ep.rgb.astype(int) - rgb.astype(int)).mean() < 6  # lossy H.264
    assert np.abs(ep.pointmap01 - pm).mean() < 0.03
    expected_mask = robot.max(-1) > 0
    assert (ep.robot_mask == expected_mask).mean() > 0.97


def test_robo4d_folder_missing_parts_is_refused(tmp_path):
    (tmp_path / "videos").mkdir()
    with pytest.raises(InputError, match="lacks"):
        E.list_robo4d_episodes(tmp_path)


def test_robo4d_episode_is_written_whole_or_not_at_all(tmp_path):
    rgb, pm, robot, robot_pm = _robo4d_arrays()
    with pytest.raises(ValueError):  # the robot video is not uint8 RGB: the 3rd of 5 files fails
        E.write_robo4d_episode(tmp_path, "7", rgb, pm, robot[..., :2], robot_pm)
    assert not [p for p in tmp_path.rglob("7.*")]   # used to leave videos/7.mp4 and pointmap/7.mp4 behind
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging")]
