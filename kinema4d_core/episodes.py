"""Episodes: splitting a recording in time, aligning camera frames with joint states, and the
Robo4D episode-folder format.

Times are seconds in the clock of the message stamps (``header.stamp``).

Splitting (``split_episodes``) by
- ``gap:SECONDS``: a new episode starts wherever the camera stream pauses longer than SECONDS;
- ``marker:TOPIC``: every message on TOPIC starts an episode (the last one runs to the end);
- ``ranges:FILE``: a YAML/JSON list of ``{name, start, end}`` (or ``[start, end]`` pairs).

Alignment (``align_nearest``): each camera frame takes the joint state nearest in time, if
within ``tolerance``; frames without one are reported (indices and the largest gap) and dropped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kinema4d_core.conditioning import pointmap_to_rgb, rgb_to_pointmap01
from kinema4d_core.errors import InputError


@dataclass(frozen=True)
class TimeRange:
    """An episode's span ``[start, end]`` in seconds (inclusive)."""

    name: str
    start: float
    end: float


@dataclass(frozen=True)
class EpisodeSplit:
    """A parsed ``--episodes-by`` value: kind in {"all", "gap", "marker", "ranges"}."""

    kind: str
    value: str = ""


def parse_episodes_by(spec: str | None) -> EpisodeSplit:
    """``gap:SECONDS`` | ``marker:TOPIC`` | ``ranges:FILE`` | ``all`` (or None) -> EpisodeSplit."""
    if not spec or spec == "all":
        return EpisodeSplit("all")
    kind, sep, value = spec.partition(":")
    if not sep or kind not in ("gap", "marker", "ranges") or not value:
        raise InputError(f"cannot parse {spec!r}", field="episodes_by",
                         fix="use gap:SECONDS, marker:TOPIC, ranges:FILE or all")
    if kind == "gap":
        try:
            gap = float(value)
        except ValueError:
            gap = -1.0
        if not gap > 0:
            raise InputError(f"gap {value!r} is not a positive number of seconds", field="episodes_by",
                             fix="e.g. gap:2.0")
    if kind == "ranges" and not Path(value).is_file():
        raise InputError(f"ranges file {value} does not exist", field="episodes_by",
                         fix="pass ranges:FILE with a YAML/JSON list of {name, start, end}")
    return EpisodeSplit(kind, value)


def split_by_gap(stamps: np.ndarray, gap_s: float, prefix: str = "episode") -> list[TimeRange]:
    """Split sorted ``stamps`` (s) wherever consecutive stamps differ by more than ``gap_s``."""
    stamps = np.sort(np.asarray(stamps, np.float64).reshape(-1))
    if stamps.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(stamps) > gap_s) + 1
    bounds = np.split(stamps, cuts)
    return [TimeRange(f"{prefix}_{i:03d}", float(b[0]), float(b[-1])) for i, b in enumerate(bounds)]


def split_by_markers(marker_stamps: np.ndarray, t_end: float, prefix: str = "episode") -> list[TimeRange]:
    """Each marker stamp starts an episode that ends just before the next one (last: ``t_end``)."""
    m = np.sort(np.asarray(marker_stamps, np.float64).reshape(-1))
    ends = np.append(m[1:] - 1e-9, t_end)
    return [TimeRange(f"{prefix}_{i:03d}", float(s), float(e)) for i, (s, e) in enumerate(zip(m, ends)) if e > s]


def load_ranges(path: str | os.PathLike) -> list[TimeRange]:
    """Read time ranges from YAML/JSON: ``[{name?, start, end}, ...]`` or ``[[start, end], ...]``."""
    import yaml

    text = Path(path).read_text()
    try:
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except Exception as exc:
        raise InputError(f"cannot parse {path}: {exc}", field="ranges", fix="write a YAML/JSON list") from exc
    if isinstance(data, dict) and "episodes" in data:
        data = data["episodes"]
    if not isinstance(data, list) or not data:
        raise InputError(f"{path} holds no list of ranges", field="ranges",
                         fix="write a list of {name, start, end} or [start, end]")
    out: list[TimeRange] = []
    for i, item in enumerate(data):
        if isinstance(item, dict):
            name, start, end = str(item.get("name", f"episode_{i:03d}")), item.get("start"), item.get("end")
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            name, (start, end) = f"episode_{i:03d}", item
        else:
            raise InputError(f"entry {i} is {item!r}", field=f"ranges[{i}]", fix="use {name, start, end}")
        try:
            start, end = float(start), float(end)
        except (TypeError, ValueError):
            raise InputError(f"entry {i} needs numeric start and end seconds", field=f"ranges[{i}]",
                             fix="write start: <s> and end: <s>") from None
        if not end > start:
            raise InputError(f"end {end} is not after start {start}", field=f"ranges[{i}]", fix="swap them")
        out.append(TimeRange(name, start, end))
    names = [r.name for r in out]
    if len(set(names)) != len(names):
        raise InputError("episode names repeat", field="ranges", fix="give each range a unique name")
    return out


def split_episodes(split: EpisodeSplit, image_stamps: np.ndarray, marker_stamps: np.ndarray | None = None,
                   prefix: str = "episode") -> list[TimeRange]:
    """Episode ranges for a recording whose camera frames are at ``image_stamps`` (s)."""
    stamps = np.asarray(image_stamps, np.float64)
    if stamps.size == 0:
        return []
    if split.kind == "all":
        return [TimeRange(f"{prefix}_000", float(stamps.min()), float(stamps.max()))]
    if split.kind == "gap":
        return split_by_gap(stamps, float(split.value), prefix)
    if split.kind == "marker":
        if marker_stamps is None or len(marker_stamps) == 0:
            raise InputError(f"marker topic {split.value!r} has no messages", field="episodes_by",
                             fix="record the marker topic or split by gap:SECONDS")
        return split_by_markers(marker_stamps, float(stamps.max()), prefix)
    if split.kind == "ranges":
        return load_ranges(split.value)
    raise InputError(f"unknown split kind {split.kind!r}", field="episodes_by")


# ----------------------------------------------------------------------------------------------
# Stamp alignment
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Alignment:
    """Result of matching target stamps (camera frames) to source stamps (joint states).

    matched: (K,) indices into the targets that found a source within the tolerance;
    source_index: (K,) the chosen source per matched target; offset: (K,) source - target (s);
    unmatched: indices of targets without a source; max_gap: largest |offset| over all targets (s).
    """

    matched: np.ndarray
    source_index: np.ndarray
    offset: np.ndarray
    unmatched: np.ndarray
    max_gap: float
    tolerance: float

    def summary(self) -> dict[str, Any]:
        """JSON-friendly report of the alignment quality."""
        return {"matched": int(self.matched.size), "unmatched": int(self.unmatched.size),
                "max_gap_s": float(self.max_gap), "tolerance_s": float(self.tolerance),
                "mean_abs_offset_s": float(np.mean(np.abs(self.offset))) if self.offset.size else None}


def align_nearest(target: np.ndarray, source: np.ndarray, tolerance: float) -> Alignment:
    """For each ``target`` stamp pick the nearest ``source`` stamp (both sorted seconds)."""
    target = np.asarray(target, np.float64).reshape(-1)
    source = np.asarray(source, np.float64).reshape(-1)
    if source.size == 0 or target.size == 0:
        return Alignment(np.zeros(0, int), np.zeros(0, int), np.zeros(0), np.arange(target.size),
                         float("inf"), tolerance)
    right = np.clip(np.searchsorted(source, target), 1, source.size - 1) if source.size > 1 else \
        np.zeros(target.size, int)
    left = np.maximum(right - 1, 0)
    pick = np.where(np.abs(source[left] - target) <= np.abs(source[right] - target), left, right)
    offset = source[pick] - target
    ok = np.abs(offset) <= tolerance
    return Alignment(np.flatnonzero(ok), pick[ok], offset[ok], np.flatnonzero(~ok),
                     float(np.max(np.abs(offset))), tolerance)


# ----------------------------------------------------------------------------------------------
# Episodes from a bag
# ----------------------------------------------------------------------------------------------

@dataclass
class SensorEpisode:
    """One episode of aligned sensor data.

    stamps: (T,) seconds of the camera frames; rgb: (T,H,W,3) uint8; joint_positions: (T,N) at
    the aligned joint states; depth: (T,H,W) float32 metres or None.
    """

    name: str
    stamps: np.ndarray
    rgb: np.ndarray
    joint_names: tuple[str, ...]
    joint_positions: np.ndarray
    depth: np.ndarray | None
    alignment: dict[str, Any]


def episode_from_bag(bag: Any, rng: TimeRange, *, tolerance: float = 0.05, min_frames: int = 2,
                     n_frames: int | None = None) -> SensorEpisode:
    """Cut ``rng`` out of a ``bags.BagData`` and align camera frames with joint states.

    n_frames: keep this many aligned frames spread uniformly over the episode (the model's
    length); None keeps all. Raises InputError (field names the episode) when
    the episode has fewer than ``min_frames`` aligned camera frames or stamps never overlap.
    """
    field = f"episode {rng.name}"
    img_stamps = bag.images.stamps
    in_range = np.flatnonzero((img_stamps >= rng.start) & (img_stamps <= rng.end))
    if in_range.size == 0:
        raise InputError(f"no camera frames between {rng.start:.3f} s and {rng.end:.3f} s", field=field,
                         fix="check the episode ranges against the bag's stamps")
    j = bag.joints
    al = align_nearest(img_stamps[in_range], j.stamps, tolerance)
    if al.matched.size == 0:
        raise InputError(f"camera and joint stamps never overlap within {tolerance:.3f} s "
                         f"(nearest gap {al.max_gap:.3f} s; camera {img_stamps[in_range][0]:.3f}.."
                         f"{img_stamps[in_range][-1]:.3f} s, joints {j.stamps[0]:.3f}..{j.stamps[-1]:.3f} s)",
                         field=field, fix="check both clocks (header stamps) or raise --tolerance")
    if al.matched.size < min_frames:
        raise InputError(f"only {al.matched.size} aligned camera frames, the model needs {min_frames}",
                         field=field, fix="record a longer episode or lower --frames")
    frames = in_range[al.matched]
    positions = j.positions[al.source_index]
    chosen = np.arange(frames.size) if n_frames is None else uniform_indices(frames.size, n_frames)
    rgb = np.stack(bag.images.decode_many(frames[chosen]))   # only the selected frames are read back
    depth = None
    if bag.depth is not None and len(bag.depth):
        d_al = align_nearest(img_stamps[frames[chosen]], bag.depth.stamps, tolerance)
        if d_al.unmatched.size == 0:
            depth = np.stack(bag.depth.decode_depth_many(d_al.source_index))
    summary = al.summary()
    summary["unmatched_stamps_s"] = [float(img_stamps[in_range][k]) for k in al.unmatched[:20]]
    return SensorEpisode(name=rng.name, stamps=img_stamps[frames][chosen], rgb=rgb, joint_names=j.names,
                         joint_positions=positions[chosen], depth=depth, alignment=summary)


def uniform_indices(n_available: int, n_frames: int) -> np.ndarray:
    """Indices of ``n_frames`` frames spread uniformly over ``n_available`` (first and last kept)."""
    return np.round(np.linspace(0, n_available - 1, n_frames)).astype(int)


# ----------------------------------------------------------------------------------------------
# Robo4D episode folders
# ----------------------------------------------------------------------------------------------

ROBO4D_PARTS = ("first_frames", "videos", "pointmap", "mask_videos", "mask_pointmap")


@dataclass
class Robo4DEpisode:
    """One Robo4D-200k episode ``<n>``.

    first_frame (H,W,3) u8; rgb (T,H,W,3) u8 world video; pointmap01 (T,H,W,3) float32 in [0,1]
    (per-sequence min-max normalized XYZ, no metric scale); robot_rgb (T,H,W,3) u8 robot-only
    render on black; robot_pointmap01 (T,H,W,3) float32 [0,1]; robot_mask (T,H,W) bool.
    """

    name: str
    first_frame: np.ndarray
    rgb: np.ndarray
    pointmap01: np.ndarray
    robot_rgb: np.ndarray
    robot_pointmap01: np.ndarray
    robot_mask: np.ndarray


def list_robo4d_episodes(root: str | os.PathLike) -> list[str]:
    """Episode names (``<n>``) present in every part of a Robo4D folder, naturally sorted."""
    root = Path(root)
    missing = [p for p in ROBO4D_PARTS if not (root / p).is_dir()]
    if missing:
        raise InputError(f"{root} lacks {missing}", field="robo4d",
                         fix=f"a Robo4D folder holds {', '.join(ROBO4D_PARTS)}")
    names = {p.stem for p in (root / "videos").glob("*.mp4")}
    complete = [n for n in names if (root / "first_frames" / f"{n}.png").is_file()
                and all((root / p / f"{n}.mp4").is_file() for p in ROBO4D_PARTS[1:])]
    return sorted(complete, key=lambda s: (len(s), s))


def read_robo4d_episode(root: str | os.PathLike, name: str, *, mask_threshold: int = 16) -> Robo4DEpisode:
    """Read episode ``name``; the robot mask is 'any channel of mask_videos above the threshold'
    (video compression leaves small non-zero values on the black background)."""
    import cv2

    from kinema4d_core.io import read_mp4

    root = Path(root)
    first = cv2.imread(str(root / "first_frames" / f"{name}.png"), cv2.IMREAD_COLOR)
    if first is None:
        raise InputError(f"cannot read first_frames/{name}.png", field="robo4d", fix="check the file")
    parts = {}
    for part in ROBO4D_PARTS[1:]:
        path = root / part / f"{name}.mp4"
        try:
            parts[part] = read_mp4(path)
        except Exception as exc:
            raise InputError(f"cannot read {part}/{name}.mp4: {exc}", field="robo4d",
                             fix="the video is missing or corrupt") from exc
    lengths = {k: v.shape[:3] for k, v in parts.items()}
    if len(set(lengths.values())) != 1:
        raise InputError(f"episode {name} parts disagree in shape: {lengths}", field="robo4d",
                         fix="all videos of an episode must share frame count and size")
    return Robo4DEpisode(
        name=name, first_frame=np.ascontiguousarray(first[..., ::-1]), rgb=parts["videos"],
        pointmap01=rgb_to_pointmap01(parts["pointmap"]), robot_rgb=parts["mask_videos"],
        robot_pointmap01=rgb_to_pointmap01(parts["mask_pointmap"]),
        robot_mask=parts["mask_videos"].max(axis=-1) > mask_threshold)


def write_robo4d_episode(root: str | os.PathLike, name: str, rgb: np.ndarray, pointmap01: np.ndarray,
                         robot_rgb: np.ndarray, robot_pointmap01: np.ndarray, fps: float = 12.0) -> None:
    """Write one episode in the Robo4D layout (pointmaps in [0,1] stored as pseudo-RGB mp4), all
    five files or none (staged)."""
    import cv2

    from kinema4d_core.io import StagedOutput, write_mp4

    with StagedOutput(root) as st:
        write_mp4(st.path(f"videos/{name}.mp4"), np.asarray(rgb, np.uint8), fps)
        write_mp4(st.path(f"pointmap/{name}.mp4"), pointmap_to_rgb(pointmap01), fps)
        write_mp4(st.path(f"mask_videos/{name}.mp4"), np.asarray(robot_rgb, np.uint8), fps)
        write_mp4(st.path(f"mask_pointmap/{name}.mp4"), pointmap_to_rgb(robot_pointmap01), fps)
        first = st.path(f"first_frames/{name}.png")
        if not cv2.imwrite(str(first), np.ascontiguousarray(np.asarray(rgb[0], np.uint8)[..., ::-1])):
            raise InputError(f"could not write {first.name}", field="robo4d", fix="check the first frame")
