"""A generated rollout and its on-disk form.

Folder layout (written all-or-nothing through io.StagedOutput):
  rollout.npz        rgb (T,H,W,3) uint8; pointmap_normalized (T,H,W,3) float32 in [0,1];
                     pointmap (T,H,W,3) float32 metres in the camera optical frame (NaN = unknown);
                     metric_fit_residual (T,) float32 metres; K (3,3); T_base_camera (4,4);
                     metadata_json: 1-element string array holding the metadata dict as JSON.
  rgb.mp4            the RGB video
  pointmap.mp4       pointmap_normalized as pseudo-RGB (x->R, y->G, z->B)
  side_by_side.mp4   [rgb | pointmap] per frame
  points/frame_000.ply ...  binary little-endian PLY per frame: float xyz (metres, camera frame)
                     + uchar rgb, finite points with z > 0 only
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kinema4d_core.conditioning import pointmap_to_rgb
from kinema4d_core.errors import InputError
from kinema4d_core.io import StagedOutput, write_mp4, write_npz

FPS = 12.0
ARRAYS = ("rgb", "pointmap_normalized", "pointmap", "metric_fit_residual", "K", "T_base_camera", "metadata_json")
"""The members of ``rollout.npz``."""


@dataclass
class Rollout:
    rgb: np.ndarray                    # (T, H, W, 3) uint8
    pointmap_normalized: np.ndarray    # (T, H, W, 3) float32 in [0, 1]
    pointmap: np.ndarray               # (T, H, W, 3) float32 metres, camera optical frame
    metric_fit_residual: np.ndarray    # (T,) float32 metres
    K: np.ndarray                      # (3, 3)
    T_base_camera: np.ndarray          # (4, 4)
    metadata: dict = field(default_factory=dict)

    def validate(self) -> None:
        """InputError naming the first array whose shape/dtype breaks the layout above."""
        if np.ndim(self.rgb) != 4:
            raise InputError(f"has shape {np.shape(self.rgb)}, expected (T,H,W,3) uint8", field="rgb")
        t, h, w = self.rgb.shape[:3]
        checks = {
            "rgb": (self.rgb.shape == (t, h, w, 3) and self.rgb.dtype == np.uint8, "(T,H,W,3) uint8"),
            "pointmap_normalized": (self.pointmap_normalized.shape == (t, h, w, 3), f"({t},{h},{w},3)"),
            "pointmap": (self.pointmap.shape == (t, h, w, 3), f"({t},{h},{w},3)"),
            "metric_fit_residual": (np.shape(self.metric_fit_residual) == (t,), f"({t},)"),
            "K": (np.shape(self.K) == (3, 3), "(3,3)"),
            "T_base_camera": (np.shape(self.T_base_camera) == (4, 4), "(4,4)"),
        }
        for name, (ok, expected) in checks.items():
            if not ok:
                raise InputError(f"has shape {np.shape(getattr(self, name))}, expected {expected}", field=name)


def pointmap_to_rgb8(pointmap01: np.ndarray) -> np.ndarray:
    """(…, 3) in [0, 1] -> uint8 pseudo-RGB (``conditioning.pointmap_to_rgb``, with NaN -> 0),
    frame by frame for a (T, H, W, 3) sequence (no float copy of the whole sequence)."""
    p = np.asarray(pointmap01)
    if p.ndim < 4:
        return pointmap_to_rgb(np.nan_to_num(p, nan=0.0))
    out = np.empty(p.shape, np.uint8)
    for t in range(len(p)):
        out[t] = pointmap_to_rgb(np.nan_to_num(p[t], nan=0.0))
    return out


def frame_points(pointmap: np.ndarray, rgb: np.ndarray | None = None, max_points: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Point cloud of one (H, W, 3) camera-frame pointmap (metres): finite points in front of the
    camera (z > 0) as (N, 3) float32, with their (N, 3) uint8 colours from ``rgb`` (H, W, 3) if
    given. ``max_points`` keeps every k-th such point so that at most that many remain."""
    xyz = np.asarray(pointmap, np.float32).reshape(-1, 3)
    idx = np.flatnonzero(np.isfinite(xyz).all(axis=1) & (xyz[:, 2] > 0))
    if max_points and idx.size > max_points:
        idx = idx[:: int(np.ceil(idx.size / max_points))]
    colors = None if rgb is None else np.asarray(rgb, np.uint8).reshape(-1, 3)[idx]
    return xyz[idx], colors


def write_ply(path: str | Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """Binary little-endian PLY: N vertices with float x,y,z and uchar red,green,blue."""
    n = len(xyz)
    vertex = np.empty(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for i, axis in enumerate("xyz"):
        vertex[axis] = xyz[:, i]
    for i, ch in enumerate(("red", "green", "blue")):
        vertex[ch] = rgb[:, i]
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {n}\n"
              "property float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    with open(path, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(vertex.tobytes())


def read_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a PLY written by :func:`write_ply` -> xyz (N,3) float32, rgb (N,3) uint8."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    n = int(next(line.split()[2] for line in data[:end].decode("ascii").splitlines()
                 if line.startswith("element vertex")))
    vertex = np.frombuffer(data[end:], dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                              ("red", "u1"), ("green", "u1"), ("blue", "u1")], count=n)
    xyz = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1)
    rgb = np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1)
    return xyz, rgb


def save_rollout(rollout: Rollout, out_dir: str | Path, *, points: bool = True) -> None:
    """Write the folder layout above into ``out_dir`` (nothing is changed there on failure).

    PLY files of an earlier, longer rollout in ``out_dir`` (or all of them with ``points=False``)
    are removed afterwards, so ``points/`` never mixes two rollouts.
    """
    rollout.validate()
    pm_rgb = pointmap_to_rgb8(rollout.pointmap_normalized)
    with StagedOutput(out_dir) as staged:
        write_npz(staged.path("rollout.npz"), dict(
            rgb=rollout.rgb, pointmap_normalized=np.asarray(rollout.pointmap_normalized, np.float32),
            pointmap=np.asarray(rollout.pointmap, np.float32),
            metric_fit_residual=np.asarray(rollout.metric_fit_residual, dtype=np.float32),
            K=np.asarray(rollout.K, dtype=np.float64), T_base_camera=np.asarray(rollout.T_base_camera, np.float64),
            metadata_json=np.array([json.dumps(rollout.metadata, sort_keys=True, default=str)])))
        write_mp4(staged.path("rgb.mp4"), rollout.rgb, fps=FPS)
        write_mp4(staged.path("pointmap.mp4"), pm_rgb, fps=FPS)
        write_mp4(staged.path("side_by_side.mp4"), np.concatenate([rollout.rgb, pm_rgb], axis=2), fps=FPS)
        written = set()
        if points:
            for t in range(len(rollout.rgb)):
                name = f"frame_{t:03d}.ply"
                write_ply(staged.path(f"points/{name}"), *frame_points(rollout.pointmap[t], rollout.rgb[t]))
                written.add(name)
    for stale in sorted(Path(out_dir, "points").glob("frame_*.ply")):
        if stale.name not in written:
            stale.unlink()


def load_rollout(out_dir: str | Path) -> Rollout:
    """Read ``out_dir/rollout.npz`` back into a Rollout; InputError when it is missing, unreadable
    or lacks one of the ``ARRAYS``."""
    path = Path(out_dir) / "rollout.npz"
    if not path.is_file():
        raise InputError(f"{path} does not exist", field="rollout", fix="pass a folder written by `kinema4d simulate`")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ARRAYS if k not in data.files]
            if missing:
                raise InputError(f"{path} lacks {missing}", field="rollout",
                                 fix="write the folder again with `kinema4d simulate` (save_rollout)")
            arrays = {k: data[k] for k in ARRAYS}
        metadata = json.loads(str(arrays.pop("metadata_json")[0]))
    except InputError:
        raise
    except (OSError, ValueError, IndexError, zipfile.BadZipFile) as exc:  # truncated / corrupt file, bad JSON
        raise InputError(f"{path} is not a readable rollout ({type(exc).__name__}: {exc})", field="rollout",
                         fix="write the folder again with `kinema4d simulate` (save_rollout)") from exc
    return Rollout(**arrays, metadata=metadata)
