"""Metric properties: identities, monotonicity, known analytic values."""

from __future__ import annotations

import numpy as np
import pytest

from kinema4d_core import metrics as M
from kinema4d_core.errors import InputError


def _video(seed=0, T=3, h=32, w=40):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, h * w).reshape(h, w)
    v = np.stack([np.stack([np.roll(base, t, 1), base.T[:h, :w] if False else base[::-1], base], -1)
                  for t in range(T)])
    return np.clip(v + rng.normal(0, 3, v.shape), 0, 255).astype(np.uint8)


def test_psnr_of_a_known_error_and_identity():
    gt = np.full((2, 8, 8, 3), 100, np.uint8)
    pred = gt.copy()
    pred[...] = 110  # MSE 100 -> 10 log10(255^2/100)
    assert M.psnr(pred, gt) == pytest.approx(10 * np.log10(255 ** 2 / 100))
    assert M.psnr(gt, gt) == float("inf")


def test_ssim_is_one_for_identical_and_falls_with_noise():
    gt = _video()
    assert M.ssim(gt, gt) == pytest.approx(1.0, abs=1e-9)
    rng = np.random.default_rng(1)
    scores = [M.ssim(np.clip(gt + rng.normal(0, s, gt.shape), 0, 255).astype(np.uint8), gt) for s in (2, 10, 40)]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0


def test_ssim_is_symmetric_and_accepts_grey_images():
    a, b = _video(0)[0, ..., 0], _video(3)[0, ..., 0]
    assert M.ssim(a, b) == pytest.approx(M.ssim(b, a))


def test_shape_mismatch_is_an_input_error():
    with pytest.raises(InputError, match="differ in shape"):
        M.psnr(np.zeros((2, 4, 4, 3), np.uint8), np.zeros((2, 4, 5, 3), np.uint8))


def test_temporal_rgb_error_is_zero_for_a_constant_offset_and_positive_for_wrong_motion():
    gt = _video().astype(np.int16)
    shifted = np.clip(gt + 5, 0, 255).astype(np.uint8)
    moving_gt = gt.astype(np.uint8)
    assert M.temporal_rgb_error(moving_gt, moving_gt) == 0.0
    frozen = np.repeat(moving_gt[:1], len(moving_gt), 0)
    assert M.temporal_rgb_error(frozen, moving_gt) > 0.01
    assert M.temporal_rgb_error(shifted, moving_gt) < M.temporal_rgb_error(frozen, moving_gt)


def test_chamfer_and_fscore_of_a_translated_cloud():
    g = np.random.default_rng(0).uniform(-1, 1, (2000, 3))
    m = M.point_metrics(g + [0.003, 0, 0], g)
    # nearest neighbours of a 3 mm shift are at most 3 mm away
    assert 0 < m.cd_l1 <= 0.003 + 1e-12 and m.cd_l2 <= 0.003 ** 2 + 1e-12
    assert m.fscore == 1.0
    far = M.point_metrics(g + [0.5, 0, 0], g)
    assert far.cd_l1 > 0.1 and far.fscore < 0.5
    same = M.point_metrics(g, g)
    assert same.cd_l1 == 0.0 and same.cd_l2 == 0.0 and same.fscore == 1.0


def test_chamfer_matches_a_brute_force_definition():
    rng = np.random.default_rng(2)
    p, g = rng.normal(size=(40, 3)), rng.normal(size=(55, 3))
    d = np.linalg.norm(p[:, None] - g[None], axis=-1)
    m = M.point_metrics(p, g, tau=0.5)
    assert m.cd_l1 == pytest.approx(0.5 * (d.min(1).mean() + d.min(0).mean()))
    assert m.cd_l2 == pytest.approx(0.5 * ((d.min(1) ** 2).mean() + (d.min(0) ** 2).mean()))
    prec, rec = (d.min(1) < 0.5).mean(), (d.min(0) < 0.5).mean()
    assert m.fscore == pytest.approx(2 * prec * rec / (prec + rec))


def test_pointmap_metrics_temporal_terms():
    K = np.array([[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1]])
    depth = np.stack([np.full((24, 32), 1.0 + 0.05 * t) for t in range(4)])
    gt = M.depth_to_pointmap(depth, K)
    same = M.pointmap_metrics(gt, gt)
    assert same["cd_l1"] == 0 and same["temp_cd_l1"] == 0 and same["flow_epe"] == 0
    frozen = np.repeat(gt[:1], 4, 0)
    out = M.pointmap_metrics(frozen, gt)
    # each pixel moves 0.05 m in depth along its ray (x, y, 1): |flow| = 0.05 |ray|
    rays = M.depth_to_pointmap(np.ones((24, 32)), K)
    assert out["flow_epe"] == pytest.approx(0.05 * np.linalg.norm(rays, axis=-1).mean(), rel=1e-6)
    assert out["temp_cd_l1"] > 0


def test_depth_to_pointmap_back_projects_the_principal_point():
    K = np.array([[50.0, 0, 2.0], [0, 50.0, 1.0], [0, 0, 1]])
    pm = M.depth_to_pointmap(np.full((3, 5), 2.0), K)
    np.testing.assert_allclose(pm[1, 2], [0, 0, 2.0])
    np.testing.assert_allclose(pm[1, 4], [2 * 2 / 50, 0, 2.0])


def test_learned_metrics_say_why_they_are_unavailable():
    v = _video()
    l = M.lpips(v, v)
    if isinstance(l, M.Unavailable):
        assert str(l).startswith("unavailable: ") and len(l.reason) > 10
    f = M.fvd(v[None], v[None])
    assert isinstance(f, M.Unavailable) and "feature network" in f.reason
    assert M.jsonable({"a": f, "b": float("inf")}) == {"a": str(f), "b": "inf"}


def test_fvd_with_a_supplied_feature_network_is_a_frechet_distance():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + [3.0, 0]
    assert M.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert M.frechet_distance(a, b) == pytest.approx(9.0, rel=0.15)
    net = lambda videos: videos.reshape(len(videos), -1)[:, :2].astype(float)  # noqa: E731
    vids = rng.integers(0, 255, (10, 2, 4, 4, 3)).astype(np.uint8)
    assert M.fvd(vids, vids, net) == pytest.approx(0.0, abs=1e-6)


def test_a_cloud_compared_with_itself_scores_exactly_zero_and_one_beyond_the_sampling_cap():
    # 3 frames of 160x200 = 32000 pixels > the 20000 cap, a varied surface, holes (NaN depth) in
    # the ground truth that the prediction does not have: the old independent subsampling of each
    # cloud gave CD > 0 and F < 1 here
    rng = np.random.default_rng(3)
    K = np.array([[150.0, 0, 99.5], [0, 150.0, 79.5], [0, 0, 1]])
    depth = 1.0 + 0.3 * rng.random((3, 160, 200))
    gt = M.depth_to_pointmap(depth, K)
    holes = rng.random((3, 160, 200)) < 0.2
    gt_holes = gt.copy()
    gt_holes[holes] = np.nan
    for pred, truth in ((gt, gt), (gt, gt_holes)):
        out = M.pointmap_metrics(pred, truth, valid=np.isfinite(truth[..., 2]))
        assert out["cd_l1"] == 0.0 and out["cd_l2"] == 0.0 and out["fscore"] == 1.0
        assert out["temp_cd_l1"] == 0.0 and out["flow_epe"] == 0.0
        s = out["sampling"]
        assert s["max_points_per_frame"] == M.MAX_POINTS_PER_FRAME == 20000
        assert s["points_per_frame"]["max"] == 20000 and s["frames_without_points"] == 0
    # the sample is seeded: the same inputs give the same numbers, and a shifted cloud is scored
    shifted = gt + [0.004, 0, 0]
    a, b = M.pointmap_metrics(shifted, gt), M.pointmap_metrics(shifted, gt)
    assert a == b and 0 < a["cd_l1"] <= 0.004 + 1e-12
    # pixels valid in only one cloud are never sampled
    idx = M.sample_pixels(~holes[0], 100, seed=5)
    assert idx.size == 100 and not holes[0].reshape(-1)[idx].any()
