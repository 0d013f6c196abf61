"""rollout.npz / PLY folder I/O: error paths and stale outputs."""

from __future__ import annotations

import numpy as np
import pytest

from kinema4d_core.backends import backproject_depth, make_backend
from kinema4d_core.errors import ConfigError, InputError
from kinema4d_core.io import write_npz
from kinema4d_core.rollout import ARRAYS, Rollout, frame_points, load_rollout, pointmap_to_rgb8, save_rollout


def _rollout(n: int = 3, h: int = 4, w: int = 6) -> Rollout:
    rng = np.random.default_rng(0)
    pm = rng.uniform(0.5, 1.5, (n, h, w, 3)).astype(np.float32)
    pm[0, 0, 0] = np.nan
    return Rollout(rgb=rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8),
                   pointmap_normalized=rng.uniform(0, 1, (n, h, w, 3)).astype(np.float32), pointmap=pm,
                   metric_fit_residual=np.zeros(n, np.float32), K=np.eye(3), T_base_camera=np.eye(4),
                   metadata={"backend": "test"})


def test_rewriting_a_folder_with_fewer_frames_leaves_no_ply_of_the_old_rollout(tmp_path):
    save_rollout(_rollout(3), tmp_path / "r")
    assert (tmp_path / "r" / "points" / "frame_002.ply").is_file()
    save_rollout(_rollout(2), tmp_path / "r")
    assert sorted(p.name for p in (tmp_path / "r" / "points").iterdir()) == ["frame_000.ply", "frame_001.ply"]
    save_rollout(_rollout(2), tmp_path / "r", points=False)
    assert not list((tmp_path / "r" / "points").glob("*.ply"))
    assert len(load_rollout(tmp_path / "r").rgb) == 2


def test_load_rollout_names_a_missing_array_and_an_unreadable_file(tmp_path):
    save_rollout(_rollout(), tmp_path / "ok", points=False)
    with np.load(tmp_path / "ok" / "rollout.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "pointmap"}
    (tmp_path / "lacks").mkdir()
    write_npz(tmp_path / "lacks" / "rollout.npz", arrays)
    with pytest.raises(InputError, match=r"lacks \['pointmap'\]"):
        load_rollout(tmp_path / "lacks")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "rollout.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(InputError, match="not a readable rollout"):
        load_rollout(tmp_path / "corrupt")
    assert set(ARRAYS) == set(arrays) | {"pointmap"}


def test_validate_refuses_an_rgb_array_that_is_not_a_video():
    r = _rollout()
    r.rgb = r.rgb[0]
    with pytest.raises(InputError, match="rgb: has shape"):
        r.validate()


def test_frame_points_keeps_finite_points_in_front_of_the_camera():
    pm = np.array([[[0, 0, 1.0], [np.nan, 0, 1], [0, 0, -1.0], [1, 2, 3]]], np.float32)
    rgb = np.arange(12, dtype=np.uint8).reshape(1, 4, 3)
    xyz, cols = frame_points(pm, rgb)
    assert np.array_equal(xyz, [[0, 0, 1], [1, 2, 3]]) and np.array_equal(cols, [[0, 1, 2], [9, 10, 11]])
    assert len(frame_points(pm, None, max_points=1)[0]) == 1
    assert np.array_equal(pointmap_to_rgb8(np.array([np.nan, 0.5, 2.0])), [0, 128, 255])


def test_backproject_depth_marks_missing_depth_nan():
    K = np.array([[10.0, 0, 1.0], [0, 10.0, 1.0], [0, 0, 1]])
    depth = np.array([[2.0, 0.0, np.nan], [1.0, -1.0, 1.0], [1.0, 1.0, 1.0]], np.float32)
    pts = backproject_depth(depth, K)
    assert pts.dtype == np.float32 and np.isnan(pts[0, 1:]).all() and np.isnan(pts[1, 1]).all()
    np.testing.assert_allclose(pts[0, 0], [-0.2, -0.2, 2.0], rtol=1e-6)


def test_make_backend_refuses_options_the_backend_does_not_take():
    # used to escape as a TypeError (TinyBackend got 'checkpoint' twice) instead of a ConfigError
    with pytest.raises(ConfigError, match=r"kinema4d-tiny does not take the options \['checkpoint'\]"):
        make_backend("kinema4d-tiny", checkpoint="somewhere")
    with pytest.raises(ConfigError, match="static-scene does not take"):
        make_backend("static-scene", device="cpu")
