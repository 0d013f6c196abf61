"""Overlay scores: IoU and mean boundary distance, on shapes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from kinema4d_core.calibration.overlay import mask_iou, mean_boundary_distance, overlay_image, score_masks
from kinema4d_core.errors import InputError


def _square(x0, y0, size=40, shape=(120, 160)):
    m = np.zeros(shape, bool)
    m[y0:y0 + size, x0:x0 + size] = True
    return m


def test_identical_masks_score_perfectly():
    m = _square(30, 20)
    s = score_masks(m, m)
    assert s.iou == 1.0 and s.boundary_px == 0.0 and s.rendered_pixels == s.reference_pixels == 1600


def test_shifted_square_has_the_analytic_iou_and_a_boundary_distance_near_the_shift():
    a, b = _square(30, 20), _square(34, 20)
    assert mask_iou(a, b) == pytest.approx((40 * 36) / (40 * 44))
    d = mean_boundary_distance(a, b)
    # Vertical edges are 4 px apart, horizontal edges overlap mostly: the mean lies between 0 and 4.
    assert 0.5 < d < 4.0
    assert mean_boundary_distance(a, _square(40, 20)) > d


def test_empty_rendering_scores_zero_iou_and_infinite_distance():
    s = score_masks(np.zeros((50, 50), bool), _square(5, 5, 10, (50, 50)))
    assert s.iou == 0.0 and s.boundary_px == float("inf")


def test_overlay_marks_outlines_and_keeps_the_background():
    rgb = np.full((120, 160, 3), 50, np.uint8)
    a, b = _square(30, 20), _square(34, 20)
    out = overlay_image(rgb, a, b)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    assert (out[0, 0] == 50).all()                         # untouched background
    assert tuple(out[20, 50]) == (0, 255, 0)               # rendered outline (top edge)
    assert tuple(out[40, 73]) == (255, 0, 0)               # reference outline (right edge)
    assert not (out[40, 50] == 50).all()                   # tinted inside


def test_mismatched_shapes_are_rejected():
    with pytest.raises(InputError):
        mask_iou(np.zeros((10, 10), bool), np.zeros((10, 12), bool))
