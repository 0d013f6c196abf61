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
