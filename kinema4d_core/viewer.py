"""4D viewing without RViz: a rollout as a rerun recording (.rrd).

Entities (timeline ``frame``, one step per generated frame; world = robot base frame, metres):
- ``world/camera``: the camera pose T_base_camera (static) with a pinhole (K, RDF = optical frame)
  so the viewer draws the frustum; ``world/camera/image``: the generated RGB frame;
- ``world/camera/points``: the generated metric pointmap as a point cloud in the camera frame,
  coloured by the generated RGB (subsampled to ``max_points``);
- ``world/camera/robot``: the robot pointmap (condition), if given, in orange;
- ``world/camera/ground_truth``: ground-truth RGB image (if given).
Open with ``rerun FILE.rrd``. ``read_rrd_summary`` reads a recording back (entities, rows).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from kinema4d_core.errors import InputError
from kinema4d_core.io import atomic_path

ROBOT_COLOR = (255, 140, 0)


def _cloud(points: np.ndarray, colors: np.ndarray | None, max_points: int) -> tuple[np.ndarray, np.ndarray | None]:
    pts = np.asarray(points, np.float32).reshape(-1, 3)
    keep = np.all(np.isfinite(pts), axis=1) & (pts[:, 2] > 0)
    idx = np.flatnonzero(keep)
    if max_points and idx.size > max_points:
        idx = idx[:: int(np.ceil(idx.size / max_points))]
    cols = None if colors is None else np.asarray(colors, np.uint8).reshape(-1, 3)[idx]
    return pts[idx], cols


def write_rollout_rrd(path: str | os.PathLike, rollout: Any, *, robot_pointmap: np.ndarray | None = None,
                      robot_mask: np.ndarray | None = None, ground_truth_rgb: np.ndarray | None = None,
                      max_points: int = 30000, application_id: str = "kinema4d") -> None:
    """Record a rollout (``rgb`` (T,H,W,3) u8, ``pointmap`` (T,H,W,3) metres camera frame, ``K``,
    ``T_base_camera``) into ``path`` atomically.

    robot_pointmap: (T,H,W,3) camera-frame metres with ``robot_mask`` (T,H,W) bool, optional.
    """
    import rerun as rr

    rgb = np.asarray(rollout.rgb)
    pm = np.asarray(rollout.pointmap, np.float32)
    if rgb.ndim != 4 or pm.shape[:3] != rgb.shape[:3]:
        raise InputError(f"rgb {rgb.shape} and pointmap {pm.shape} do not match", field="rollout",
                         fix="pass a rollout with per-frame RGB and pointmaps of the same size")
    K = np.asarray(rollout.K, np.float64)
    T = np.asarray(rollout.T_base_camera, np.float64)
    h, w = rgb.shape[1:3]
    with atomic_path(path) as tmp:
        rec = rr.RecordingStream(application_id, send_properties=False)
        rec.save(str(tmp))
        rec.log("world", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
        rec.log("world/camera", rr.Transform3D(translation=T[:3, 3], mat3x3=T[:3, :3]), static=True)
        rec.log("world/camera", rr.Pinhole(image_from_camera=K, width=w, height=h,
                                           camera_xyz=rr.ViewCoordinates.RDF), static=True)
        for t in range(rgb.shape[0]):
            rec.set_time("frame", sequence=t)
            rec.log("world/camera/image", rr.Image(rgb[t]))
            pts, cols = _cloud(pm[t], rgb[t], max_points)
            rec.log("world/camera/points", rr.Points3D(pts, colors=cols, radii=0.002))
            if robot_pointmap is not None:
                rp = np.asarray(robot_pointmap[t], np.float32)
                if robot_mask is not None:
                    rp = np.where(np.asarray(robot_mask[t], bool)[..., None], rp, np.nan)
                rpts, _ = _cloud(rp, None, max_points)
                rec.log("world/camera/robot", rr.Points3D(rpts, colors=ROBOT_COLOR, radii=0.002))
            if ground_truth_rgb is not None and t < len(ground_truth_rgb):
                rec.log("ground_truth/image", rr.Image(np.asarray(ground_truth_rgb[t], np.uint8)))
        rec.flush()
        rec.disconnect()


def read_rrd_summary(path: str | os.PathLike) -> dict[str, int]:
    """Entity path -> number of logged rows in the first recording of an .rrd file."""
    from rerun.chunk import RrdReader

    if not Path(path).is_file():
        raise InputError(f"{path} does not exist", field="rrd", fix="write it with `kinema4d view`")
    counts: dict[str, int] = {}
    for chunk in RrdReader(path).stream():
        counts[chunk.entity_path] = counts.get(chunk.entity_path, 0) + chunk.num_rows
    return counts
