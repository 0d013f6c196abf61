"""Metric recovery of generated pointmaps."""

from __future__ import annotations

import numpy as np
import pytest

from kinema4d_core.errors import InputError
from kinema4d_core.metric import POOR_FIT_THRESHOLD_M, fit_metric

from .model_helpers import synthetic_condition


def normalized_view(cond, scale, offset):
    """The robot pointmap expressed in a normalized space: metric = scale * normalized + offset."""
    return ((cond.pointmap - offset) / scale).astype(np.float32)


def test_recovers_known_per_axis_scale_and_offset_exactly():
    cond = synthetic_condition(n_frames=9, height=24, width=48)
    scale, offset = np.array([0.8, 1.3, 0.45]), np.array([-0.4, 0.2, 0.9])
    fit = fit_metric(normalized_view(cond, scale, offset), cond.pointmap, cond.mask)
    np.testing.assert_allclose(fit.scale, scale, rtol=1e-5)
    np.testing.assert_allclose(fit.offset, offset, atol=1e-5)
    np.testing.assert_allclose(fit.pointmap[cond.mask], cond.pointmap[cond.mask], atol=1e-5)
    assert fit.residual.shape == (9,) and np.all(fit.residual < 1e-5)
    assert not fit.poor.any()


def test_corrupted_frame_is_flagged_and_does_not_spoil_the_fit():
    cond = synthetic_condition(n_frames=9, height=24, width=48)
    scale, offset = np.array([0.8, 1.3, 0.45]), np.array([-0.4, 0.2, 0.9])
    pn = normalized_view(cond, scale, offset)
    pn[4] += np.random.default_rng(0).normal(0, 0.5, pn[4].shape).astype(np.float32)
    fit = fit_metric(pn, cond.pointmap, cond.mask)
    assert fit.poor.tolist() == [i == 4 for i in range(9)]
    assert fit.residual[4] > POOR_FIT_THRESHOLD_M
    np.testing.assert_allclose(fit.scale, scale, rtol=1e-4)
    non_robust = fit_metric(pn, cond.pointmap, cond.mask, robust=False)
    assert abs(non_robust.scale - scale).max() > abs(fit.scale - scale).max()


def test_frame_without_robot_pixels_has_nan_residual_and_is_poor():
    cond = synthetic_condition(n_frames=5, height=24, width=48)
    mask = cond.mask.copy()
    mask[2] = False
    fit = fit_metric(normalized_view(cond, np.ones(3), np.zeros(3)), cond.pointmap, mask)
    assert np.isnan(fit.residual[2]) and fit.poor[2] and not fit.poor[[0, 1, 3, 4]].any()


def test_bad_input_names_the_field():
    cond = synthetic_condition(n_frames=3, height=24, width=48)
    with pytest.raises(InputError, match="robot_pointmap"):
        fit_metric(cond.pointmap, cond.pointmap[:2], cond.mask)
    with pytest.raises(InputError, match="robot_mask: only 0 robot pixels"):
        fit_metric(cond.pointmap, cond.pointmap, np.zeros_like(cond.mask))
