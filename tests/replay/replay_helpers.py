"""Synthetic recordings for the replay tests: real rosbag2 bags written with rosbags.

A "recording" has a camera at ``rate_hz`` and joint states at twice that rate, with a small
clock offset between them, optional depth and a marker topic at each episode start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from kinema4d_core import bags as B

JOINTS = ("j1", "j2", "j3")


def frame_image(i: int, h: int = 48, w: int = 72) -> np.ndarray:
    """A distinct, smooth RGB frame for index i (uint8, (h, w, 3))."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 3 + i * 7) % 256, (yy * 4 + i * 5) % 256, np.full_like(xx, (i * 11) % 256)], -1)
    return img.astype(np.uint8)


def write_recording(path: Path, *, storage: str = "sqlite3", episodes: Sequence[tuple[float, int]] = ((100.0, 10),),
                    rate_hz: float = 10.0, encoding: str = "rgb8", compressed: str | None = None,
                    depth: bool = False, joint_offset_s: float = 0.004, h: int = 48, w: int = 72,
                    K: np.ndarray | None = None, joint_names: Sequence[str] = JOINTS,
                    home: np.ndarray | None = None) -> Path:
    """Write a bag; ``episodes`` = (start time s, camera frames). Returns the bag path.

    Joint positions: ``home + 0.1 sin(t + j)`` per joint j when ``home`` is given, else a fixed
    3-joint pattern.
    """
    K = np.array([[60.0, 0, (w - 1) / 2], [0, 60.0, (h - 1) / 2], [0, 0, 1]]) if K is None else K
    with B.BagWriter(path, storage=storage) as bag:
        k = 0
        for start, n in episodes:
            bag.write("/episode_start", start - 0.05, B.typestore().types[B.STRING](data="start"))
            for i in range(n * 2):
                t = start + i / (2 * rate_hz) + joint_offset_s
                if home is not None:
                    q = np.asarray(home) + 0.1 * np.sin(t + np.arange(len(home)))
                    q[-1] = home[-1]
                else:
                    q = np.array([0.1 * np.sin(t), 0.2 * np.cos(t), 0.01 * i])[: len(joint_names)]
                bag.write("/joint_states", t, B.joint_state_msg(t, joint_names, q))
            for i in range(n):
                t = start + i / rate_hz
                img = frame_image(k, h, w)
                k += 1
                if compressed:
                    bag.write("/camera/image_raw", t, B.compressed_image_msg(t, img, "cam", compressed))
                else:
                    bag.write("/camera/image_raw", t, B.image_msg(t, img, "cam", encoding))
                bag.write("/camera/camera_info", t, B.camera_info_msg(t, K, w, h, "cam"))
                if depth:
                    bag.write("/camera/depth", t, B.depth_msg(t, np.full((h, w), 1.0 + 0.01 * i), "cam"))
    return path


def write_split_recording(path: Path, *, storage: str = "sqlite3", episodes: Sequence[tuple[float, int]],
                          **kwargs) -> Path:
    """A multi-file (split) rosbag2 bag, as ``ros2 bag record --max-bag-duration`` leaves it:
    one storage file per entry of ``episodes`` (each written by ``write_recording``) in one
    folder whose metadata.yaml lists them all in time order."""
    import shutil

    import yaml

    parts = []
    tmp = path.parent / f".{path.name}.parts"
    for i, ep in enumerate(episodes):
        parts.append(write_recording(tmp / f"part_{i}", storage=storage, episodes=[ep], **kwargs))
    path.mkdir(parents=True)
    merged = None
    counts: dict[str, int] = {}
    ext = ".db3" if storage == "sqlite3" else ".mcap"
    for i, part in enumerate(parts):
        meta = yaml.safe_load((part / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        name = f"{path.name}_{i}{ext}"
        shutil.copy(next(part.glob(f"*{ext}")), path / name)
        meta["files"][0]["path"] = name
        for t in meta["topics_with_message_count"]:
            counts[t["topic_metadata"]["name"]] = counts.get(t["topic_metadata"]["name"], 0) + t["message_count"]
        entry = meta["files"][0]
        if merged is None:
            merged = meta
            merged["files"], merged["relative_file_paths"], merged["message_count"] = [], [], 0
        merged["files"].append(entry)
        merged["relative_file_paths"].append(name)
        merged["message_count"] += meta["message_count"]
    start = merged["files"][0]["starting_time"]["nanoseconds_since_epoch"]
    last = merged["files"][-1]
    merged["duration"]["nanoseconds"] = (last["starting_time"]["nanoseconds_since_epoch"]
                                         + last["duration"]["nanoseconds"] - start)
    for t in merged["topics_with_message_count"]:
        t["message_count"] = counts[t["topic_metadata"]["name"]]
    (path / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": merged}))
    shutil.rmtree(tmp)
    return path
