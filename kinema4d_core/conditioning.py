"""Robot-condition encodings used by Kinema4D: pointmap normalization, pseudo-RGB, latent masks.

- Pointmaps are normalized per sequence: per axis, min-max over the robot pixels of ALL frames
  (the paper's "affine-invariant control"); the extrema are returned as ``Normalization`` so the
  metric scale is never lost, and ``denormalize_pointmap`` inverts it.
- Pseudo-RGB: [0,1] -> uint8 by rounding ``v * 255`` (what is stored in the mp4 videos).
- Latent mask: the VAE compresses 49 frames to 13 (frame 0 alone, then groups of 4) and space by
  8. Time: max over each group. Space: nearest neighbour exactly like
  ``torch.nn.functional.interpolate(mode="nearest")``: output index i reads input index
  ``min(floor(i * in / out), in - 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kinema4d_core.errors import InputError

VAE_TEMPORAL = 4
VAE_SPATIAL = 8
#: metres: a per-axis span below this is degenerate (a flat axis) and is mapped with span 1 (to 0).
#: Pointmaps are float32 metres, whose rounding step is 0.1-1 um at 1-8 m from the camera; dividing
#: by a smaller span would stretch rounding noise over the whole [0, 1] range.
MIN_SPAN_M = 1e-6


@dataclass(frozen=True, eq=False)
class Normalization:
    """Per-axis extrema (metres, camera frame) used to map a pointmap sequence into [0,1]."""

    low: np.ndarray
    high: np.ndarray

    def __post_init__(self) -> None:
        low = np.asarray(self.low, dtype=np.float64).reshape(3)
        high = np.asarray(self.high, dtype=np.float64).reshape(3)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(high >= low)):
            raise InputError(f"needs finite low <= high, got low={low} high={high}", field="normalization",
                             fix="compute it with normalize_pointmap")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @property
    def span(self) -> np.ndarray:
        """(3,) high - low, with degenerate spans (< ``MIN_SPAN_M``) replaced by 1 so the mapping stays
        invertible (a flat axis maps to 0 and back to ``low``, within ``MIN_SPAN_M``)."""
        span = self.high - self.low
        return np.where(span >= MIN_SPAN_M, span, 1.0)


def _check_pointmap(pointmap: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pointmap)
    m = np.asarray(mask)
    if p.ndim < 3 or p.shape[-1] != 3:
        raise InputError(f"must be (..., H, W, 3), got {p.shape}", field="pointmap", fix="pass XYZ per pixel")
    if m.shape != p.shape[:-1]:
        raise InputError(f"shape {m.shape} does not match pointmap {p.shape[:-1]}", field="mask",
                         fix="pass one boolean per pointmap pixel")
    return p, m.astype(bool)


def normalize_pointmap(pointmap: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, Normalization]:
    """Map robot pixels of a (T,H,W,3) pointmap sequence into [0,1] per axis; 0 outside the mask.

    Returns (float32 normalized pointmap, Normalization with the sequence extrema in metres).
    """
    norm = pointmap_normalization(pointmap, mask)
    return apply_normalization(pointmap, norm, mask), norm


def pointmap_normalization(pointmap: np.ndarray, mask: np.ndarray) -> Normalization:
    """The ``Normalization`` (per-axis extrema of the robot pixels of all frames, metres) that
    ``normalize_pointmap`` applies, without building the normalized sequence."""
    p, m = _check_pointmap(pointmap, mask)
    if not m.any():
        raise InputError("the mask is empty: no robot pixel in any frame", field="mask",
                         fix="check the camera extrinsics; the robot must be visible")
    pts = p[m].astype(np.float64)
    if not np.all(np.isfinite(pts)):
        raise InputError("contains NaN or infinity at robot pixels", field="pointmap", fix="render it again")
    return Normalization(low=pts.min(axis=0), high=pts.max(axis=0))


def _frames(shape: tuple[int, ...]) -> range:
    """Indices of the leading (frame) axis of a (..., H, W, 3) array, or one pass for a single image.
    The elementwise conversions below run frame by frame so that their float64 temporaries are one
    frame (8 MB at 480x720), not the sequence (0.4 GB per copy for 49 frames); same values."""
    return range(shape[0]) if len(shape) >= 4 else range(1)


def _per_frame(shape: tuple[int, ...], t: int) -> tuple:
    return (t,) if len(shape) >= 4 else ()


def apply_normalization(pointmap: np.ndarray, norm: Normalization, mask: np.ndarray | None = None) -> np.ndarray:
    """THE pointmap normalization: metres -> [0,1] per axis, ``(p - norm.low) / norm.span``, clipped.

    With ``mask`` (..., H, W) bool: 0 outside it (the robot condition the model was trained on).
    Without: every pixel is mapped (points outside the extrema clip to 0/1; NaN stays NaN), as the
    static-scene baseline maps its world pointmap. Returns float32 of the pointmap's shape
    (computed in float64, frame by frame).
    """
    p = np.asarray(pointmap)
    if p.shape[-1:] != (3,):
        raise InputError(f"must be (..., 3), got {p.shape}", field="pointmap", fix="pass XYZ per pixel")
    m = None if mask is None else _check_pointmap(p, mask)[1]
    low, span = norm.low, norm.span
    out = np.empty(p.shape, np.float32)
    for t in _frames(p.shape):
        i = _per_frame(p.shape, t)
        v = np.clip((p[i].astype(np.float64) - low) / span, 0.0, 1.0)
        if m is not None:
            v = np.where(m[i][..., None], v, 0.0)
        out[i] = v
    return out


def denormalize_pointmap(pointmap01: np.ndarray, norm: Normalization, mask: np.ndarray | None = None) -> np.ndarray:
    """Inverse of ``normalize_pointmap``: metres (float32); with ``mask``, 0 outside it."""
    p = np.asarray(pointmap01)
    if p.shape[-1:] != (3,):
        raise InputError(f"must be (..., 3), got {p.shape}", field="pointmap01", fix="pass XYZ per pixel")
    out = np.empty(p.shape, np.float32)
    for t in _frames(p.shape):
        i = _per_frame(p.shape, t)
        out[i] = p[i].astype(np.float64) * norm.span + norm.low
    if mask is not None:
        _, m = _check_pointmap(p, mask)
        out[~m] = 0.0
    return out


def pointmap_to_rgb(pointmap01: np.ndarray) -> np.ndarray:
    """[0,1] pointmap -> uint8 pseudo-RGB (x -> R, y -> G, z -> B), round(v * 255), clipped
    (frame by frame, in float64)."""
    p = np.asarray(pointmap01)
    out = np.empty(p.shape, np.uint8)
    for t in _frames(p.shape):
        i = _per_frame(p.shape, t)
        out[i] = np.rint(np.clip(p[i].astype(np.float64), 0.0, 1.0) * 255.0)
    return out


def rgb_to_pointmap01(rgb: np.ndarray) -> np.ndarray:
    """uint8 pseudo-RGB -> float32 [0,1] pointmap (inverse of ``pointmap_to_rgb`` within 1/510)."""
    return (np.asarray(rgb, dtype=np.float32) / np.float32(255.0)).astype(np.float32)


def latent_frame_count(n_frames: int) -> int:
    """Latent frames for ``n_frames`` video frames: 1 + (n_frames - 1) / 4 (49 -> 13)."""
    if n_frames < 1 or (n_frames - 1) % VAE_TEMPORAL:
        raise InputError(f"{n_frames} frames is not 1 + 4k", field="mask", fix="use 49 frames (or 1 + 4k)")
    return 1 + (n_frames - 1) // VAE_TEMPORAL


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source indices of torch ``interpolate(mode="nearest")``: min(floor(i * n_in / n_out), n_in - 1).

    The scale is computed in float32 as torch does on CPU.
    """
    scale = np.float32(n_in) / np.float32(n_out)
    idx = np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, n_in - 1)


def latent_mask(mask: np.ndarray) -> np.ndarray:
    """Robot mask (T,H,W) on the VAE latent grid: (1 + (T-1)/4, H//8, W//8) float32 in {0,1}.

    Frame 0 stays alone; frames 1..T-1 are grouped by 4 and max-pooled in time; space is
    sampled nearest-neighbour (torch rule, see ``nearest_indices``). 49 frames -> 13.
    """
    m = np.asarray(mask)
    if m.ndim != 3:
        raise InputError(f"must be (T,H,W), got {m.shape}", field="mask", fix="pass one mask image per frame")
    t, h, w = m.shape
    n_lat = latent_frame_count(t)
    if h < VAE_SPATIAL or w < VAE_SPATIAL:
        raise InputError(f"image {h}x{w} is smaller than the VAE stride 8", field="mask", fix="use a larger image")
    m = m != 0
    pooled = np.empty((n_lat, h, w), dtype=bool)
    pooled[0] = m[0]
    if n_lat > 1:
        pooled[1:] = m[1:].reshape(n_lat - 1, VAE_TEMPORAL, h, w).any(axis=1)
    rows = nearest_indices(h, h // VAE_SPATIAL)
    cols = nearest_indices(w, w // VAE_SPATIAL)
    return pooled[:, rows][:, :, cols].astype(np.float32)


def soft_mask(latent_mask: np.ndarray, fraction: float = 0.1, seed: int = 0) -> np.ndarray:
    """Training-time soft mask: round(fraction * n) randomly chosen occupied positions set to 0.5.

    Occupied means > 0. Seeded (numpy default_rng), the input is not modified.
    """
    if not 0.0 <= fraction <= 1.0:
        raise InputError(f"must be in [0, 1], got {fraction}", field="fraction", fix="use e.g. 0.1")
    out = np.array(latent_mask, dtype=np.float32, copy=True)
    occupied = np.flatnonzero(out > 0)
    n = int(round(fraction * occupied.size))
    if n:
        chosen = np.random.default_rng(seed).choice(occupied, size=n, replace=False)
        out.flat[chosen] = 0.5
    return out


def uniform_z(row_fraction: np.ndarray) -> np.ndarray:
    """Z channel of the uniform pointmap: ``1 - row_fraction`` (row_fraction = row / (H-1) in [0,1])
    mapped linearly from [0,1] into [-1,1], i.e. ``Z = 2 * (1 - row_fraction) - 1 = 1 - 2 * row_fraction``.

    Z is +1 on the top row and -1 on the bottom row. (Reading of the reference "Z = 1 - row
    fraction, all in [-1,1]"; not verified against the released code.)
    """
    f = np.asarray(row_fraction, dtype=np.float64)
    return 2.0 * (1.0 - f) - 1.0


def uniform_pointmap_image(height: int, width: int) -> np.ndarray:
    """The fixed first-frame "uniform pointmap" (H,W,3) float32 in [-1,1].

    X = linspace(-1, 1, W) along columns, Y = linspace(-1, 1, H) along rows, Z = ``uniform_z``.
    """
    if height < 2 or width < 2:
        raise InputError(f"needs at least 2x2, got {height}x{width}", field="height/width", fix="use the video size")
    x = np.linspace(-1.0, 1.0, width)
    y = np.linspace(-1.0, 1.0, height)
    z = uniform_z(np.arange(height) / (height - 1))
    out = np.empty((height, width, 3), dtype=np.float32)
    out[..., 0] = x[None, :]
    out[..., 1] = y[:, None]
    out[..., 2] = z[:, None]
    return out
