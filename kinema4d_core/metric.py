"""Metric recovery of a generated (normalized) pointmap in the camera optical frame.

The model generates XYZ normalized per sequence to [0, 1] (affine-invariant control), so metric
scale is not in its output. Where the robot is, the metric robot pointmap is known (from FK and
the calibrated camera), so a per-axis affine map ``metric = scale * normalized + offset`` is fitted
by least squares over every robot pixel of the whole sequence, then applied to every pixel.

Robust mode (default) refits on inliers: pixels whose 3D residual exceeds
max(3 x 1.4826 x MAD, 1 mm) are dropped, refitting up to 10 times. The per-frame residual is the RMS 3D distance
(metres) between fitted and known robot points of that frame, over all its robot pixels.
A frame is flagged ``poor`` when that residual exceeds ``POOR_FIT_THRESHOLD_M`` (2 cm: about the
size of a gripper finger at arm's length, beyond which generated geometry is not trustworthy) or
when it has fewer than ``MIN_ROBOT_PIXELS`` robot pixels (residual NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kinema4d_core.errors import InputError

POOR_FIT_THRESHOLD_M = 0.02
MIN_ROBOT_PIXELS = 10
ROBUST_ITERATIONS = 10


@dataclass(frozen=True)
class MetricFit:
    pointmap: np.ndarray   # (T, H, W, 3) float32 metres, camera optical frame
    residual: np.ndarray   # (T,) float32 metres, RMS over the frame's robot pixels (NaN: too few)
    scale: np.ndarray      # (3,) metres per normalized unit, per axis
    offset: np.ndarray     # (3,) metres
    poor: np.ndarray       # (T,) bool


def _fit_axis(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least squares y = s x + o for one axis."""
    design = np.stack([x, np.ones_like(x)], axis=1)
    (s, o), *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(s), float(o)


def fit_metric(pointmap_normalized: np.ndarray, robot_pointmap: np.ndarray, robot_mask: np.ndarray, *,
               robust: bool = True, threshold: float = POOR_FIT_THRESHOLD_M) -> MetricFit:
    """Fit per-axis scale/offset on robot pixels; return the metric pointmap and per-frame residuals.

    pointmap_normalized (T, H, W, 3) in [0, 1]; robot_pointmap (T, H, W, 3) metres (camera frame);
    robot_mask (T, H, W) bool (where robot_pointmap is valid).
    """
    pn = np.asarray(pointmap_normalized)
    pr = np.asarray(robot_pointmap)
    mask = np.asarray(robot_mask, dtype=bool)
    if pn.ndim != 4 or pn.shape[-1] != 3:
        raise InputError(f"expected (T, H, W, 3), got {pn.shape}", field="pointmap_normalized")
    if pr.shape != pn.shape:
        raise InputError(f"shape {pr.shape} differs from the generated pointmap {pn.shape}", field="robot_pointmap",
                         fix="project the robot at the generated resolution")
    if mask.shape != pn.shape[:3]:
        raise InputError(f"shape {mask.shape}, expected {pn.shape[:3]}", field="robot_mask")
    valid = mask & np.isfinite(pn).all(-1) & np.isfinite(pr).all(-1)
    if valid.sum() < MIN_ROBOT_PIXELS:
        raise InputError(f"only {int(valid.sum())} robot pixels in the whole sequence", field="robot_mask",
                         fix="the robot must be visible in the camera to recover metric scale")
    x, y = pn[valid].astype(np.float64), pr[valid].astype(np.float64)   # (P, 3)
    inliers = np.ones(len(x), dtype=bool)
    for _ in range(ROBUST_ITERATIONS if robust else 1):
        params = [_fit_axis(x[inliers, a], y[inliers, a]) for a in range(3)]
        scale = np.array([p[0] for p in params])
        offset = np.array([p[1] for p in params])
        if not robust:
            break
        err = np.linalg.norm(x * scale + offset - y, axis=1)
        mad = np.median(np.abs(err[inliers] - np.median(err[inliers])))
        new = err <= max(3.0 * 1.4826 * mad, 1e-3)
        if new.sum() < MIN_ROBOT_PIXELS or np.array_equal(new, inliers):
            break
        inliers = new
    # frame by frame (float64 temporaries of one frame, not of the sequence; same values)
    metric = np.empty(pn.shape, np.float32)                             # (T, H, W, 3)
    residual = np.empty(len(pn), np.float64)
    counts = valid.sum(axis=(1, 2))
    for t in range(len(pn)):
        m = pn[t].astype(np.float64) * scale + offset
        metric[t] = m
        sq = np.where(valid[t], ((m - pr[t].astype(np.float64)) ** 2).sum(-1), 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            residual[t] = np.sqrt(sq.sum() / counts[t])
    residual[counts < MIN_ROBOT_PIXELS] = np.nan
    poor = ~(residual <= threshold)                                     # NaN counts as poor
    return MetricFit(pointmap=metric, residual=residual.astype(np.float32),
                     scale=scale.astype(np.float64), offset=offset.astype(np.float64), poor=poor)
