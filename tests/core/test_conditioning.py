"""Pointmap normalization, pseudo-RGB, latent-grid masks and the uniform first-frame pointmap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kinema4d_core.conditioning import (Normalization, denormalize_pointmap, latent_mask, nearest_indices,
                                        normalize_pointmap, pointmap_to_rgb, rgb_to_pointmap01, soft_mask,
                                        uniform_pointmap_image, uniform_z)
from kinema4d_core.errors import InputError


def random_sequence(seed=0, T=5, H=12, W=16):
    rng = np.random.default_rng(seed)
    mask = rng.random((T, H, W)) < 0.3
    pm = np.zeros((T, H, W, 3), np.float32)
    pm[mask] = rng.uniform([-0.4, -0.3, 0.8], [0.5, 0.2, 1.9], size=(mask.sum(), 3)).astype(np.float32)
    return pm, mask


def test_normalization_uses_sequence_extrema_over_robot_pixels_only():
    pm, mask = random_sequence()
    pm[~mask] = 99.0                      # off-robot values must not influence the extrema
    out, norm = normalize_pointmap(pm, mask)
    pts = pm[mask]
    assert np.array_equal(norm.low, pts.min(axis=0).astype(np.float64))
    assert np.array_equal(norm.high, pts.max(axis=0).astype(np.float64))
    assert out.dtype == np.float32 and np.all(out[~mask] == 0)
    assert np.allclose(out[mask].min(axis=0), 0) and np.allclose(out[mask].max(axis=0), 1)
    assert np.all((out >= 0) & (out <= 1))


def test_normalization_round_trip_is_exact_to_float_precision():
    pm, mask = random_sequence(1)
    out, norm = normalize_pointmap(pm, mask)
    back = denormalize_pointmap(out, norm, mask)
    assert np.abs(back - pm).max() < 1e-6           # metres; float32 ulp at ~2 m is 2.4e-7
    assert np.all(back[~mask] == 0)


def test_normalization_of_a_flat_axis_stays_invertible():
    pm, mask = random_sequence(2)
    pm[mask, 2] = 1.25                     # constant depth
    out, norm = normalize_pointmap(pm, mask)
    assert np.all(out[mask, 2] == 0) and norm.low[2] == norm.high[2] == 1.25
    assert np.allclose(denormalize_pointmap(out, norm, mask)[mask], pm[mask], atol=1e-6)


def test_normalization_rejects_an_empty_mask_and_bad_shapes():
    pm, mask = random_sequence()
    with pytest.raises(InputError):
        normalize_pointmap(pm, np.zeros_like(mask))
    with pytest.raises(InputError):
        normalize_pointmap(pm, mask[:, :-1])
    with pytest.raises(InputError):
        Normalization(low=[0, 0, 1], high=[1, 1, 0])


def test_pseudo_rgb_round_trip_within_quantization():
    v = np.random.default_rng(3).random((4, 8, 8, 3)).astype(np.float32)
    rgb = pointmap_to_rgb(v)
    assert rgb.dtype == np.uint8
    assert np.abs(rgb_to_pointmap01(rgb) - v).max() <= 0.5 / 255 + 1e-7
    assert np.array_equal(pointmap_to_rgb(np.array([0.0, 1.0, 1.7, -0.2])), [0, 255, 255, 0])


def test_latent_mask_shape_for_49_frames():
    out = latent_mask(np.ones((49, 96, 128), bool))
    assert out.shape == (13, 12, 16) and out.dtype == np.float32 and np.all(out == 1)


@pytest.mark.parametrize("frame,latent", [(0, 0), (1, 1), (4, 1), (5, 2), (8, 2), (9, 3), (45, 12), (48, 12)])
def test_latent_mask_groups_frame_0_alone_then_4_frames(frame, latent):
    mask = np.zeros((49, 16, 16), bool)
    mask[frame] = True
    out = latent_mask(mask)
    expected = np.zeros(13)
    expected[latent] = 1
    assert np.array_equal(out.max(axis=(1, 2)), expected)


def test_latent_mask_max_pools_time_and_samples_space_like_torch_nearest():
    rng = np.random.default_rng(4)
    mask = rng.random((49, 44, 100)) < 0.02          # sizes not divisible by 8: 44 -> 5, 100 -> 12
    out = latent_mask(mask)
    pooled = np.concatenate([mask[:1], mask[1:].reshape(12, 4, 44, 100).any(axis=1)]).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(pooled)[None], size=(5, 12), mode="nearest")[0]
    assert out.shape == (13, 5, 12)
    assert np.array_equal(out, ref.numpy())
    assert np.array_equal(nearest_indices(100, 12), np.floor(np.arange(12) * 100 / 12).astype(int))


def test_latent_mask_rejects_frame_counts_that_are_not_1_plus_4k():
    with pytest.raises(InputError):
        latent_mask(np.zeros((48, 16, 16), bool))


def test_soft_mask_sets_ten_percent_of_occupied_positions_to_half():
    lm = np.zeros((13, 6, 9), np.float32)
    lm[2:9, 1:5, 2:7] = 1                               # 140 occupied positions
    out = soft_mask(lm, fraction=0.1, seed=7)
    assert np.sum(out == 0.5) == 14 and np.sum(out == 1) == 126
    assert np.all(out[lm == 0] == 0) and np.all(lm[out == 0.5] == 1)
    assert np.array_equal(out, soft_mask(lm, fraction=0.1, seed=7))
    assert not np.array_equal(out, soft_mask(lm, fraction=0.1, seed=8))
    assert np.sum(lm == 0.5) == 0                       # the input is not modified


def test_uniform_pointmap_image_axes_and_range():
    img = uniform_pointmap_image(6, 10)
    assert img.shape == (6, 10, 3) and img.dtype == np.float32
    assert np.allclose(img[0, :, 0], np.linspace(-1, 1, 10)) and np.allclose(img[:, 3, 0], img[0, 3, 0])
    assert np.allclose(img[:, 0, 1], np.linspace(-1, 1, 6)) and np.allclose(img[2, :, 1], img[2, 0, 1])
    assert img[0, 0, 2] == 1.0 and img[-1, 0, 2] == -1.0      # Z: 1 - row fraction, mapped into [-1, 1]
    assert np.allclose(img[:, 5, 2], uniform_z(np.arange(6) / 5))
    assert uniform_z(0.25) == pytest.approx(0.5)
    assert img.min() >= -1 and img.max() <= 1


# ---- one normalization rule (apply_normalization) ----------------------------------------------

def _condition_like(pm, mask):
    """What the backends read from a projection.RobotCondition."""
    from types import SimpleNamespace

    _, norm = normalize_pointmap(pm, mask)
    return SimpleNamespace(pointmap=pm, mask=mask, normalization=norm, rgb=None)


def test_every_caller_normalizes_the_robot_pointmap_identically():
    from kinema4d_core.backends import robot_pointmap01
    from kinema4d_core.conditioning import apply_normalization
    from kinema4d_core.projection import RobotCondition

    rng = np.random.default_rng(3)
    pm = rng.uniform(0.2, 1.5, (3, 6, 8, 3)).astype(np.float32)
    mask = rng.random((3, 6, 8)) < 0.5
    out, norm = normalize_pointmap(pm, mask)
    cond = RobotCondition(pointmap=pm, depth=pm[..., 2], mask=mask, link_id=np.zeros(mask.shape, np.int16),
                          rgb=np.zeros(pm.shape, np.uint8), joint_positions=np.zeros((3, 1)), joint_names=("j",),
                          K=np.eye(3), T_base_camera=np.eye(4), normalization=norm)
    assert np.array_equal(cond.normalized_pointmap(), out)
    assert np.array_equal(robot_pointmap01(cond), out)
    assert np.array_equal(apply_normalization(pm, norm, mask), out)


def test_an_axis_flatter_than_a_micrometre_maps_to_zero_and_back():
    """Spans below MIN_SPAN_M (1 um: float32 rounding of metres) are degenerate: span 1, not 1e-9.
    (The static-scene baseline used max(span, 1e-9), which stretched rounding noise to 0..1.)"""
    from kinema4d_core.conditioning import MIN_SPAN_M, apply_normalization

    pm = np.zeros((2, 4, 4, 3), np.float32)
    pm[..., 0] = np.linspace(0.1, 0.9, 16).reshape(4, 4)
    pm[..., 1] = 0.5
    pm[..., 2] = 1.0
    pm[1, 0, 0, 2] += 2e-7                      # float32 rounding-level jitter on a flat axis
    mask = np.ones((2, 4, 4), bool)
    out, norm = normalize_pointmap(pm, mask)
    assert norm.high[2] - norm.low[2] < MIN_SPAN_M
    assert np.all(out[..., 1] == 0.0) and np.all(out[..., 2] <= MIN_SPAN_M)   # jitter is not stretched to 1
    assert np.allclose(denormalize_pointmap(out, norm, mask), pm, atol=MIN_SPAN_M)
    world = np.full((4, 4, 3), np.nan, np.float32)  # the baseline maps world points without a mask
    world[0, 0] = (5.0, 0.5, 1.0)
    w01 = apply_normalization(world, norm)
    assert np.all(np.isnan(w01[1:])) and np.allclose(w01[0, 0], (1.0, 0.0, 0.0))


def test_static_scene_robot_pixels_use_the_model_normalization():
    from kinema4d_core.backends import StaticSceneBackend, robot_pointmap01
    from kinema4d_core.types import GenerationRequest

    rng = np.random.default_rng(5)
    pm = rng.uniform(0.3, 1.2, (3, 6, 8, 3)).astype(np.float32)
    pm[..., 2] = 1.0                             # a flat axis
    mask = rng.random((3, 6, 8)) < 0.5
    cond = _condition_like(pm, mask)
    cond.K, cond.T_base_camera = np.array([[8.0, 0, 4], [0, 8, 3], [0, 0, 1]]), np.eye(4)
    roll = StaticSceneBackend().generate(GenerationRequest(first_frame=np.zeros((6, 8, 3), np.uint8), robot=cond))
    assert np.array_equal(roll.pointmap_normalized[mask], robot_pointmap01(cond)[mask])
