"""Episode: the frames and states of one scripted sim run, and its .npz file (written atomically).

Arrays are stacked over T frames: rgb (T,H,W,3) uint8, depth (T,H,W) float32 planar z in metres,
robot_mask (T,H,W) bool, joint_positions (T,N) measured (rad / m), joint_targets (T,N) commanded,
object_poses (T,7) cube [x y z qx qy qz qw] in the base frame, stamps (T,) sim seconds.
K (3,3) and T_base_camera (4,4) describe the camera that took the images.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from kinema4d_core.errors import InputError
from kinema4d_core.io import save_npz


@dataclass
class Episode:
    task: str
    seed: int
    success: bool
    rgb: np.ndarray
    depth: np.ndarray
    robot_mask: np.ndarray
    joint_positions: np.ndarray
    joint_targets: np.ndarray
    joint_names: tuple[str, ...]
    object_poses: np.ndarray
    stamps: np.ndarray
    K: np.ndarray
    T_base_camera: np.ndarray
    metrics: dict = field(default_factory=dict)
    policy: str = "scripted"    # the scripted policy that ran (simworld.tasks.POLICIES)

    @property
    def n_frames(self) -> int:
        return int(self.rgb.shape[0])

    def summary(self) -> dict:
        """JSON-ready summary: task, seed, success, frames and the judged figures."""
        return {"task": self.task, "seed": int(self.seed), "success": bool(self.success),
                "frames": self.n_frames, **{k: v for k, v in self.metrics.items() if k != "success"}}


_ARRAYS = ("rgb", "depth", "robot_mask", "joint_positions", "joint_targets", "object_poses", "stamps", "K",
           "T_base_camera")


def save_episode(episode: Episode, path: str | os.PathLike) -> None:
    """Write ``episode`` to ``path`` (.npz, compressed, atomic)."""
    arrays = {name: np.asarray(getattr(episode, name)) for name in _ARRAYS}
    arrays["joint_names"] = np.array(episode.joint_names)
    arrays["meta"] = np.array(json.dumps({"task": episode.task, "seed": int(episode.seed),
                                          "success": bool(episode.success), "metrics": episode.metrics,
                                          "policy": episode.policy}))
    save_npz(path, arrays)


def load_episode(path: str | os.PathLike) -> Episode:
    """Read an episode written by ``save_episode``; InputError naming the missing key otherwise."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in (*_ARRAYS, "joint_names", "meta") if k not in z.files]
            if missing:
                raise InputError(f"episode file lacks {missing}", field=str(path),
                                 fix="write it with kinema4d_core.simworld.save_episode")
            meta = json.loads(str(z["meta"]))
            arrays = {name: z[name] for name in _ARRAYS}
            names = tuple(str(n) for n in z["joint_names"])
    except InputError:
        raise   # an InputError is a ValueError: keep it as is rather than wrapping it below
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read episode file: {exc}", field=str(path),
                         fix="pass an .npz written by save_episode") from exc
    return Episode(task=meta["task"], seed=meta["seed"], success=meta["success"], joint_names=names,
                   metrics=meta["metrics"], policy=meta.get("policy", "scripted"), **arrays)
