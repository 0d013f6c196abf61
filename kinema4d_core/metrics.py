"""Video and geometry metrics of a generated rollout against ground truth.

Definitions (documented in docs/replay-and-evaluation.md):
- PSNR (dB): per frame ``10 log10(R^2 / MSE)`` over all pixels and channels, R = 255 for uint8
  (1 for float images), averaged over frames. Identical frames give +inf.
- SSIM: Wang et al. 2004 with an isotropic Gaussian window (sigma 1.5, 11x11), K1 0.01, K2 0.03,
  computed per channel with reflected borders and averaged over pixels, channels and frames.
- Chamfer distance between point sets P (prediction) and G (ground truth), with
  d(p, G) = min_g ||p - g||_2 (metres):
    CD-L1 = 0.5 (mean_p d(p,G) + mean_g d(g,P))            (metres)
    CD-L2 = 0.5 (mean_p d(p,G)^2 + mean_g d(g,P)^2)        (square metres)
  i.e. "L1" uses the unsquared Euclidean nearest-neighbour distance and "L2" the squared one,
  as in common 4D/3D-generation evaluation. Per-frame values are averaged over frames.
- F-score@tau (tau = 0.01 m): precision = share of P within tau of G, recall = share of G within
  tau of P, F = 2PR/(P+R) (0 when both are 0).
- Sampling (``pointmap_metrics``): both clouds of a frame are taken at the same pixels, those
  valid in both, capped at ``MAX_POINTS_PER_FRAME`` (20000) per frame by a seeded uniform draw;
  a cloud compared with itself therefore gives Chamfer 0 and F-score 1 exactly. The result's
  ``sampling`` entry records the rule, cap, seed and points per frame.
- Temporal ("temp") versions measure whether the motion matches, not the frames:
    temp-RGB = mean over t of mean |(x[t+1]-x[t]) - (y[t+1]-y[t])| / R        (0 = same motion)
    temp-CD-L1 = mean over t of |CD-L1(P[t],P[t+1]) - CD-L1(G[t],G[t+1])|   (metres)
    flow-EPE = mean over t and pixels valid in all four maps of
               ||(P[t+1]-P[t]) - (G[t+1]-G[t])||_2 (metres; pixel-aligned pointmaps only)
- LPIPS and FVD need learned networks. They run only with weights / a feature network the user
  supplies (or the ``lpips`` package with its shipped weights); otherwise they return
  ``Unavailable(reason)``, never a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from kinema4d_core.errors import InputError

FSCORE_TAU = 0.01  # metres


@dataclass(frozen=True)
class Unavailable:
    """A metric that could not be computed, and why."""

    reason: str

    def __str__(self) -> str:
        return f"unavailable: {self.reason}"


def _check_pair(pred: np.ndarray, gt: np.ndarray, field: str) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise InputError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape", field=field,
                         fix="resize / resample both to the same frames and size first")
    return pred, gt


def _data_range(x: np.ndarray) -> float:
    return 255.0 if x.dtype == np.uint8 else 1.0


def psnr(pred: np.ndarray, gt: np.ndarray, data_range: float | None = None) -> float:
    """PSNR in dB of one image (H,W[,C]) or the frame average of a video (T,H,W,C)."""
    pred, gt = _check_pair(pred, gt, "psnr")
    r = data_range or _data_range(gt)
    # frame by frame: float64 temporaries of one frame, not of the video (same values)
    frames = pred.reshape(pred.shape[0], -1) if pred.ndim == 4 else pred.reshape(1, -1)
    gframes = gt.reshape(frames.shape)
    mse = np.array([np.mean((f.astype(np.float64) - g.astype(np.float64)) ** 2) for f, g in zip(frames, gframes)])
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(r * r / mse)
    return float(np.mean(values))


def _ssim_channel(x: np.ndarray, y: np.ndarray, r: float, sigma: float) -> float:
    from scipy.ndimage import gaussian_filter

    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
    blur = lambda a: gaussian_filter(a, sigma, truncate=3.5, mode="reflect")  # noqa: E731  11x11 at 1.5
    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(np.mean(s))


def ssim(pred: np.ndarray, gt: np.ndarray, data_range: float | None = None, sigma: float = 1.5) -> float:
    """Gaussian-window SSIM of an image (H,W[,C]) or the frame average of a video (T,H,W,C)."""
    pred, gt = _check_pair(pred, gt, "ssim")
    r = data_range or _data_range(gt)
    p, g = pred, gt
    if p.ndim == 2:
        p, g = p[None, ..., None], g[None, ..., None]
    elif p.ndim == 3:
        p, g = p[None], g[None]
    values = []
    for t in range(p.shape[0]):  # float64 copies of one frame at a time
        pt, gt_ = p[t].astype(np.float64), g[t].astype(np.float64)
        values += [_ssim_channel(pt[..., c], gt_[..., c], r, sigma) for c in range(p.shape[-1])]
    return float(np.mean(values))


def temporal_rgb_error(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean |frame difference of pred - frame difference of gt| / range, over (T,H,W,C) videos."""
    pred, gt = _check_pair(pred, gt, "temporal_rgb")
    if pred.shape[0] < 2:
        raise InputError("needs at least 2 frames", field="temporal_rgb", fix="pass a video")
    r = _data_range(gt)
    if pred.dtype == np.uint8 and gt.dtype == np.uint8:
        # exact in int16 (|values| <= 510) and an int64 sum: the float64 sum of these integers is
        # exact too (far below 2**53), so this is the float64 result without its 0.4 GB copies
        dp = np.diff(pred.astype(np.int16), axis=0)
        dp -= np.diff(gt.astype(np.int16), axis=0)
        total = np.abs(dp, out=dp).sum(dtype=np.int64)
        return float(np.float64(total) / dp.size / r)
    dp = np.diff(pred.astype(np.float64), axis=0)
    dg = np.diff(gt.astype(np.float64), axis=0)
    return float(np.mean(np.abs(dp - dg)) / r)


# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PointMetrics:
    """Chamfer L1 (m), Chamfer L2 (m^2), F-score, precision, recall at ``tau`` (m)."""

    cd_l1: float
    cd_l2: float
    fscore: float
    precision: float
    recall: float
    tau: float


MAX_POINTS_PER_FRAME = 20000   # cap of the shared pixel sample per frame (Chamfer / F-score)
SAMPLING_SEED = 0


def _subsample(points: np.ndarray, max_points: int | None, seed: int) -> np.ndarray:
    if max_points and len(points) > max_points:
        idx = np.random.default_rng(seed).choice(len(points), max_points, replace=False)
        return points[np.sort(idx)]
    return points


def point_metrics(pred: np.ndarray, gt: np.ndarray, tau: float = FSCORE_TAU, max_points: int | None = 20000,
                  seed: int = 0) -> PointMetrics:
    """Chamfer L1/L2 and F-score@tau between point sets (N,3) and (M,3) in metres.

    Non-finite points are dropped; ``max_points`` randomly subsamples larger sets, both with the
    same seed (so a set compared with itself gives 0 / 1.0). Pixel-aligned pointmaps should go
    through ``pointmap_metrics``, which samples the same pixels in both.
    """
    from scipy.spatial import cKDTree

    p = np.asarray(pred, np.float64).reshape(-1, 3)
    g = np.asarray(gt, np.float64).reshape(-1, 3)
    p = _subsample(p[np.all(np.isfinite(p), axis=1)], max_points, seed)
    g = _subsample(g[np.all(np.isfinite(g), axis=1)], max_points, seed)
    if len(p) == 0 or len(g) == 0:
        raise InputError(f"empty point set (pred {len(p)}, gt {len(g)} finite points)", field="points",
                         fix="check the masks / depth validity")
    d_pg = cKDTree(g).query(p, k=1)[0]
    d_gp = cKDTree(p).query(g, k=1)[0]
    precision = float(np.mean(d_pg < tau))
    recall = float(np.mean(d_gp < tau))
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return PointMetrics(cd_l1=float(0.5 * (d_pg.mean() + d_gp.mean())),
                        cd_l2=float(0.5 * (np.mean(d_pg ** 2) + np.mean(d_gp ** 2))),
                        fscore=float(f), precision=precision, recall=recall, tau=tau)


def sample_pixels(valid: np.ndarray, max_points: int | None, seed: int) -> np.ndarray:
    """Flat indices (sorted) of at most ``max_points`` pixels drawn uniformly without replacement
    (``numpy.random.default_rng(seed)``) from the True pixels of ``valid`` (H,W); all of them
    when there are fewer or ``max_points`` is None."""
    idx = np.flatnonzero(np.asarray(valid, bool).reshape(-1))
    if max_points and idx.size > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_points, replace=False))
    return idx


def pointmap_metrics(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None, tau: float = FSCORE_TAU,
                     max_points: int | None = MAX_POINTS_PER_FRAME, seed: int = SAMPLING_SEED) -> dict[str, Any]:
    """Per-frame point metrics of pixel-aligned (T,H,W,3) pointmaps (metres), averaged, plus
    temporal metrics.

    Sampling: in frame t both clouds are taken at the same pixels: those valid in both (finite
    prediction and ground truth, and ``valid`` (T,H,W) where given, e.g. where GT depth exists),
    at most ``max_points`` of them drawn uniformly at random with seed ``seed + t`` (None: all).
    So a pointmap compared with itself gives CD 0 and F-score 1 exactly. Frames without a valid
    pixel are skipped (counted in ``sampling``). Returns cd_l1, cd_l2, fscore, temp_cd_l1,
    flow_epe (see module docstring) and ``sampling`` (the rule, cap, seed and points per frame).
    """
    pred, gt = _check_pair(np.asarray(pred, np.float64), np.asarray(gt, np.float64), "pointmap")
    T = pred.shape[0]
    ok = np.all(np.isfinite(pred), axis=-1) & np.all(np.isfinite(gt), axis=-1)
    if valid is not None:
        ok &= np.asarray(valid, bool).reshape(ok.shape)
    flat_p, flat_g = pred.reshape(T, -1, 3), gt.reshape(T, -1, 3)
    picks = [sample_pixels(ok[t], max_points, seed + t) for t in range(T)]
    frames = [t for t in range(T) if picks[t].size]
    if not frames:
        raise InputError("no pixel is valid in both the prediction and the ground truth", field="points",
                         fix="check the masks / depth validity")
    per = [point_metrics(flat_p[t, picks[t]], flat_g[t, picks[t]], tau, None) for t in frames]
    counts = [int(picks[t].size) for t in range(T)]
    out: dict[str, Any] = {"cd_l1": float(np.mean([m.cd_l1 for m in per])),
                           "cd_l2": float(np.mean([m.cd_l2 for m in per])),
                           "fscore": float(np.mean([m.fscore for m in per]))}
    if T >= 2:
        dp, dg = [], []
        for t in range(T - 1):
            if picks[t].size and picks[t + 1].size:
                dp.append(point_metrics(flat_p[t, picks[t]], flat_p[t + 1, picks[t + 1]], tau, None).cd_l1)
                dg.append(point_metrics(flat_g[t, picks[t]], flat_g[t + 1, picks[t + 1]], tau, None).cd_l1)
        out["temp_cd_l1"] = float(np.mean(np.abs(np.asarray(dp) - np.asarray(dg)))) if dp else float("nan")
        fp, fg = np.diff(pred, axis=0), np.diff(gt, axis=0)
        both = ok[1:] & ok[:-1]
        out["flow_epe"] = float(np.mean(np.linalg.norm((fp - fg)[both], axis=-1))) if both.any() else float("nan")
    out["sampling"] = {
        "rule": "same pixels in both clouds: valid in both, at most max_points_per_frame per frame drawn "
                "uniformly without replacement (numpy default_rng(seed + frame index))",
        "max_points_per_frame": max_points, "seed": seed,
        "points_per_frame": {"min": int(min(counts)), "mean": float(np.mean(counts)), "max": int(max(counts))},
        "frames_without_points": T - len(frames)}
    return out


def depth_to_pointmap(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(…,H,W) depth in metres -> (…,H,W,3) camera-frame points (pinhole, no distortion; NaN stays NaN)."""
    depth = np.asarray(depth, np.float64)
    h, w = depth.shape[-2:]
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    x = (u - K[0, 2]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    return np.stack([x * depth, y * depth, depth], axis=-1)


# ----------------------------------------------------------------------------------------------
# Learned metrics: only with real weights
# ----------------------------------------------------------------------------------------------

def lpips(pred: np.ndarray, gt: np.ndarray, *, net: str = "alex", weights: str | None = None) -> float | Unavailable:
    """LPIPS (lower is better) over (T,H,W,3) uint8 videos, frame-averaged.

    Runs only when the ``lpips`` package is installed (its linear-layer weights ship with it) and
    its backbone weights are available locally (``weights``: a torch state-dict path whose keys
    match ``lpips.LPIPS(net=net).net`` exactly, otherwise torchvision's cache). Otherwise returns
    ``Unavailable`` with the reason.
    """
    try:
        import lpips as lpips_pkg  # type: ignore[import-not-found]
        import torch
    except ImportError as exc:
        return Unavailable(f"the lpips package is not installed ({exc.name}); pip install lpips and provide "
                           "backbone weights")
    pred, gt = _check_pair(pred, gt, "lpips")
    try:
        model = lpips_pkg.LPIPS(net=net, pretrained=True, pnet_rand=weights is not None, verbose=False)
        if weights is not None:
            # Strict: a backbone with missing or unexpected keys would give meaningless scores.
            state = torch.load(weights, map_location="cpu")
            model.net.load_state_dict(state, strict=True)
    except Exception as exc:  # no network: torchvision cannot fetch backbone weights; or mismatched keys
        return Unavailable(f"LPIPS weights could not be loaded: {type(exc).__name__}: {exc}")
    to_t = lambda v: torch.from_numpy(np.asarray(v, np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)  # noqa: E731
    with torch.no_grad():
        return float(model(to_t(pred), to_t(gt)).mean())


def frechet_distance(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets (N,D) and (M,D)."""
    from scipy import linalg

    a, b = np.asarray(feat_a, np.float64), np.asarray(feat_b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise InputError("needs at least 2 samples per set", field="features", fix="evaluate more videos")
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(ca @ cb)
    covmean = np.real(covmean)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(ca + cb - 2 * covmean))


def fvd(pred_videos: np.ndarray, gt_videos: np.ndarray,
        feature_net: Callable[[np.ndarray], np.ndarray] | None = None) -> float | Unavailable:
    """FVD over sets of videos (N,T,H,W,3): Fréchet distance of ``feature_net`` embeddings.

    ``feature_net`` maps (N,T,H,W,3) uint8 -> (N,D) features (e.g. an I3D the user supplies);
    without it the result is ``Unavailable``.
    """
    if feature_net is None:
        return Unavailable("FVD needs a video feature network (e.g. I3D); none was supplied")
    return frechet_distance(feature_net(np.asarray(pred_videos)), feature_net(np.asarray(gt_videos)))


def jsonable(value: Any) -> Any:
    """Make metric values JSON-safe: Unavailable -> "unavailable: ...", inf/nan -> strings."""
    if isinstance(value, Unavailable):
        return str(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if np.isfinite(v) else ("inf" if v > 0 else "-inf" if v < 0 else "nan")
    if isinstance(value, np.integer):
        return int(value)
    return value


def video_metrics(pred_rgb: np.ndarray, gt_rgb: np.ndarray, *, with_lpips: bool = True) -> dict[str, Any]:
    """PSNR, SSIM, LPIPS (or unavailable) and temp-RGB of (T,H,W,3) uint8 videos."""
    out: dict[str, Any] = {"psnr": psnr(pred_rgb, gt_rgb), "ssim": ssim(pred_rgb, gt_rgb)}
    out["lpips"] = lpips(pred_rgb, gt_rgb) if with_lpips else Unavailable("not requested")
    if len(pred_rgb) >= 2:
        out["temp_rgb"] = temporal_rgb_error(pred_rgb, gt_rgb)
    return out
