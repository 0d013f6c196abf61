"""Training samples: (first frame, robot condition, target RGB + pointmap video) at the model's size.

Sources (all end in :class:`TrainSample`, at the model's frame count and per-modality size):
- sim world episodes (``simworld``; written once as .npz under ``data.episodes_dir`` and reused),
- replay output folders (``kinema4d replay``: ``report.json`` + ``<episode>/ground_truth.npz``),
- Robo4D folders (first_frames/, videos/, pointmap/, mask_videos/, mask_pointmap/).

For recorded episodes (sim and replay) the robot condition is built by ``service.prepare_episode``,
the same path inference uses (stream/calibration check, resize to the model size with the camera
resized alike, joint-limit slack, robot rendered at each frame's own stamp), and normalized with
``backends.robot_pointmap01`` (``conditioning.apply_normalization`` with the condition's own
extrema, 0 outside the mask). The target world pointmap is the recorded depth back-projected with
the resized camera (metres, camera optical frame), normalized per sequence by
``conditioning.apply_normalization`` with the extrema of its finite points (as Robo4D stores it);
unknown points (no depth) are 0. The metric scale is recovered at inference from the robot pixels
(``metric.fit_metric``), so any per-axis affine normalization of the world is admissible.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from kinema4d_core.errors import InputError


@dataclass(frozen=True)
class ModelGeometry:
    """What a sample must look like for the model: frames, (height, width) per modality, variant.

    Passed to ``service.prepare_episode`` in place of a loaded backend (it reads only these
    attributes and the registered spec of ``name``)."""

    num_frames: int
    size: tuple[int, int]
    variant: str = "rgb-pm"
    name: str = "kinema4d"


@dataclass
class TrainSample:
    """One training example. T frames of H x W (per modality).

    first_frame (H,W,3) uint8; robot_pointmap01 (T,H,W,3) float32 in [0,1], 0 outside the robot;
    robot_mask (T,H,W) bool; robot_rgb (T,H,W,3) uint8 or None (pm variant); rgb (T,H,W,3) uint8
    target world video; pointmap01 (T,H,W,3) float32 in [0,1] target world pointmap (normalized);
    meta: source, task, success, normalizations (metres).
    """

    name: str
    first_frame: np.ndarray
    robot_pointmap01: np.ndarray
    robot_mask: np.ndarray
    robot_rgb: np.ndarray | None
    rgb: np.ndarray
    pointmap01: np.ndarray
    meta: dict = field(default_factory=dict)

    def check(self, geometry: ModelGeometry) -> None:
        """InputError naming the first array that does not fit ``geometry``."""
        t, (h, w) = geometry.num_frames, geometry.size
        expect = {"first_frame": ((h, w, 3), np.uint8), "robot_pointmap01": ((t, h, w, 3), np.float32),
                  "robot_mask": ((t, h, w), np.bool_), "rgb": ((t, h, w, 3), np.uint8),
                  "pointmap01": ((t, h, w, 3), np.float32)}
        if geometry.variant == "rgb-pm":
            expect["robot_rgb"] = ((t, h, w, 3), np.uint8)
        for name, (shape, dtype) in expect.items():
            a = getattr(self, name)
            if a is None or a.shape != shape or a.dtype != dtype:
                got = None if a is None else (a.shape, a.dtype)
                raise InputError(f"sample {self.name}: {name} is {got}, the model needs {shape} {np.dtype(dtype)}",
                                 field=name, fix="build samples with kinema4d_core.training.data")


# ------------------------------------------------------------------------------------ helpers
def world_pointmap01(points: np.ndarray) -> tuple[np.ndarray, Any]:
    """(T,H,W,3) metres (NaN = unknown) -> ([0,1] float32 with unknown -> 0, Normalization)."""
    from kinema4d_core.conditioning import Normalization, apply_normalization

    p = np.asarray(points, np.float32)
    finite = np.all(np.isfinite(p), axis=-1)
    if not finite.any():
        raise InputError("no finite world point in any frame", field="depth", fix="record depth with the episode")
    pts = p[finite].astype(np.float64)
    norm = Normalization(low=pts.min(axis=0), high=pts.max(axis=0))
    out = apply_normalization(np.where(finite[..., None], p, 0.0), norm, finite)
    return out, norm


def resize_video(frames: np.ndarray, size: tuple[int, int], *, nearest: bool) -> np.ndarray:
    """(T,H,W[,C]) -> (T,h,w[,C]) with the service's rule (colour: area; depth/masks: nearest)."""
    from kinema4d_core.service import _resize

    return np.stack([_resize(np.asarray(f), size, nearest=nearest) for f in frames])


def sample_from_recording(name: str, rgb: np.ndarray, depth: np.ndarray | None, stamps: np.ndarray,
                          trajectory: Any, robot: Any, camera: Any, geometry: ModelGeometry, *,
                          meta: dict | None = None, rescale_to_stream: bool = False) -> TrainSample:
    """A recorded episode (camera frames + joint trajectory) -> TrainSample via ``prepare_episode``.

    rgb (T,H,W,3) uint8 at the stream size with T = geometry.num_frames; depth (T,H,W) metres (NaN
    or <= 0: unknown) registered to rgb; stamps (T,) seconds of those frames; trajectory: a
    ``JointTrajectory`` (stamped) of the robot's joints; camera: the calibration."""
    from kinema4d_core.backends import backproject_depth, robot_pointmap01
    from kinema4d_core.service import EpisodeRequest, prepare_episode

    rgb = np.asarray(rgb, np.uint8)
    if len(rgb) != geometry.num_frames:
        raise InputError(f"episode {name} has {len(rgb)} frames, the model {geometry.num_frames}", field="frames",
                         fix=f"record/select {geometry.num_frames} frames per episode")
    if depth is None:
        raise InputError(f"episode {name} has no depth: the target pointmap cannot be built", field="depth",
                         fix="record a depth stream registered to the colour image")
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float32)
    req = EpisodeRequest(first_frame=rgb[0], robot=robot, camera=camera, trajectory=trajectory,
                         frame_stamps=np.asarray(stamps, np.float64), first_depth=np.nan_to_num(depth[0]),
                         rescale_to_stream=rescale_to_stream, stream_source=f"episode {name}")
    prepared = prepare_episode(req, geometry)
    cond = prepared.condition
    size = geometry.size
    world_rgb = resize_video(rgb, size, nearest=False)
    world_depth = resize_video(depth, size, nearest=True)
    K = prepared.camera.K
    points = np.stack([backproject_depth(d, K) for d in world_depth])
    pm01, norm = world_pointmap01(points)
    info = dict(meta or {}, source_frames=int(len(rgb)),
                robot_normalization={"low": cond.normalization.low.tolist(), "high": cond.normalization.high.tolist()},
                world_normalization={"low": norm.low.tolist(), "high": norm.high.tolist()})
    return TrainSample(name=name, first_frame=np.ascontiguousarray(world_rgb[0]),
                       robot_pointmap01=robot_pointmap01(cond), robot_mask=np.asarray(cond.mask, bool),
                       robot_rgb=None if geometry.variant == "pm" else np.asarray(cond.rgb, np.uint8),
                       rgb=world_rgb, pointmap01=pm01, meta=info)


# ------------------------------------------------------------------------------------ sources
def sim_episode_paths(cfg: Any, geometry: ModelGeometry) -> list[tuple[str, Path]]:
    """(name, episodes_dir/name.npz) of every configured sim episode (tasks x seeds). The file name
    carries the render size, frame count and a digest of the sim camera, so episodes of another
    camera are never reused."""
    import hashlib

    from kinema4d_core.simworld.scene import SimConfig

    sim = cfg.data.sim
    d = SimConfig()
    camera = hashlib.sha1(repr((d.fovy_deg, d.camera_eye, d.camera_target)).encode()).hexdigest()[:6]
    tag = f"{sim.render_width}x{sim.render_height}_{geometry.num_frames}f_cam{camera}"
    return [(f"sim_{task}_{seed:04d}", cfg.data.episodes_dir / f"sim_{task}_{seed:04d}_{tag}.npz")
            for task in sim.tasks for seed in range(sim.first_seed, sim.first_seed + sim.episodes_per_task)]


def make_sim_episodes(cfg: Any, geometry: ModelGeometry, progress: bool = True) -> list[tuple[str, Path]]:
    """Run the missing sim episodes (seeded; each file written atomically, existing ones reused)."""
    from dataclasses import replace

    paths = sim_episode_paths(cfg, geometry)
    todo = [(n, p) for n, p in paths if not p.is_file()]
    if todo:
        from kinema4d_core.simworld import SimConfig, SimWorld, save_episode

        sim = cfg.data.sim
        with SimWorld(replace(SimConfig(), width=sim.render_width, height=sim.render_height)) as world:
            for i, (name, path) in enumerate(todo):
                task, seed = name.split("_", 1)[1].rsplit("_", 1)
                ep = world.run_episode(task, n_frames=geometry.num_frames, seed=int(seed))
                save_episode(ep, path)
                if progress:
                    print(f"[data] sim episode {i + 1}/{len(todo)}: {name} success={ep.success}", flush=True)
    return paths


def sim_sample(name: str, path: Path, geometry: ModelGeometry) -> TrainSample:
    from kinema4d_core.robot import load_robot
    from kinema4d_core.simworld import load_episode
    from kinema4d_core.trajectory import JointTrajectory

    ep = load_episode(path)
    camera = _episode_camera(ep)
    traj = JointTrajectory(tuple(ep.joint_names), np.asarray(ep.joint_positions, np.float64),
                           np.asarray(ep.stamps, np.float64))
    return sample_from_recording(name, ep.rgb, ep.depth, ep.stamps, traj, load_robot("panda"), camera, geometry,
                                 meta={"source": "sim", "task": ep.task, "seed": int(ep.seed),
                                       "success": bool(ep.success), "file": str(path)})


def _episode_camera(ep: Any) -> Any:
    """The camera that took a sim episode (its stored K and pose, the sim's frame names)."""
    from kinema4d_core.camera import CameraModel
    from kinema4d_core.simworld.scene import SimConfig

    h, w = ep.rgb.shape[1:3]
    sim = SimConfig()
    return CameraModel(width=int(w), height=int(h), K=np.asarray(ep.K, np.float64), D=np.zeros(5),
                       distortion_model="plumb_bob", T_base_camera=np.asarray(ep.T_base_camera, np.float64),
                       camera_name=sim.camera_name, parent_frame=sim.base_frame, child_frame=sim.optical_frame)


def replay_entries(folder: Path) -> list[tuple[str, Path]]:
    """(name, episode folder) of every completed episode of a ``kinema4d replay`` output folder."""
    from kinema4d_core.evaluation import GT_FILE, REPORT

    report_path = Path(folder) / REPORT
    if not report_path.is_file():
        raise InputError(f"{report_path} does not exist", field="data.replay",
                         fix="pass a folder written by `kinema4d replay`")
    report = json.loads(report_path.read_text())
    return [(f"replay_{Path(folder).name}_{e['name']}", Path(folder) / e["name"]) for e in report.get("episodes", [])
            if e.get("status") == "ok" and (Path(folder) / e["name"] / GT_FILE).is_file()]


def replay_sample(name: str, job_dir: Path, geometry: ModelGeometry) -> TrainSample:
    """One replay episode: its ground_truth.npz (recorded frames, depth, joint states and names) with
    the robot and calibration named in the folder's report.json."""
    from kinema4d_core.camera import load_calibration
    from kinema4d_core.evaluation import GT_FILE, REPORT
    from kinema4d_core.robot import load_robot
    from kinema4d_core.trajectory import JointTrajectory

    report = json.loads((job_dir.parent / REPORT).read_text())
    with np.load(job_dir / GT_FILE, allow_pickle=False) as z:
        gt = {k: z[k] for k in z.files}
    if "joint_names" not in gt:
        raise InputError(f"{job_dir / GT_FILE} has no joint_names", field="data.replay",
                         fix="replay the bag again with this version into a new output folder (ground_truth.npz "
                             "now stores the joint names)")
    robot = load_robot(report["robot"])
    camera = load_calibration(report["calibration"])
    stamps = np.asarray(gt["stamps"], np.float64)
    traj = JointTrajectory(tuple(str(n) for n in gt["joint_names"]), np.asarray(gt["joint_positions"], np.float64),
                           stamps)
    rgb = gt["rgb"]
    if len(rgb) != geometry.num_frames:
        raise InputError(f"{job_dir.name} holds {len(rgb)} frames, the model trains on {geometry.num_frames}",
                         field="data.replay", fix=f"replay with `kinema4d replay --frames {geometry.num_frames}`")
    return sample_from_recording(name, rgb, gt.get("depth"), stamps, traj, robot, camera, geometry,
                                 meta={"source": "replay", "folder": str(job_dir)}, rescale_to_stream=True)


def robo4d_sample(root: Path, episode: str, geometry: ModelGeometry) -> TrainSample:
    """One Robo4D episode resized to the model size (pointmaps already normalized in the files;
    the robot pointmap is zeroed outside the robot mask, as ``apply_normalization`` leaves it)."""
    from kinema4d_core.episodes import read_robo4d_episode, uniform_indices

    ep = read_robo4d_episode(root, episode)
    idx = uniform_indices(len(ep.rgb), geometry.num_frames)
    size = geometry.size
    mask = resize_video(ep.robot_mask[idx].astype(np.uint8), size, nearest=True).astype(bool)
    rpm = resize_video(ep.robot_pointmap01[idx], size, nearest=True).astype(np.float32) * mask[..., None]
    rgb = resize_video(ep.rgb[idx], size, nearest=False)
    first = resize_video(ep.first_frame[None], size, nearest=False)[0]
    return TrainSample(name=f"robo4d_{Path(root).name}_{episode}", first_frame=first, robot_pointmap01=rpm,
                       robot_mask=mask,
                       robot_rgb=None if geometry.variant == "pm" else resize_video(ep.robot_rgb[idx], size,
                                                                                    nearest=False),
                       rgb=rgb, pointmap01=resize_video(ep.pointmap01[idx], size, nearest=True).astype(np.float32),
                       meta={"source": "robo4d", "folder": str(root), "episode": episode})


@dataclass(frozen=True)
class SampleSpec:
    """A sample that can be built on demand: its name, source kind and location."""

    name: str
    kind: str       # sim | replay | robo4d
    location: str   # episode file, replay episode folder, or "robo4d root::episode"


def list_samples(cfg: Any, geometry: ModelGeometry, *, make_episodes: bool = True) -> list[SampleSpec]:
    """Every configured sample in a fixed order (sim tasks x seeds, replay folders, Robo4D folders)."""
    from kinema4d_core.episodes import list_robo4d_episodes

    specs: list[SampleSpec] = []
    sims = make_sim_episodes(cfg, geometry) if make_episodes else sim_episode_paths(cfg, geometry)
    specs += [SampleSpec(n, "sim", str(p)) for n, p in sims]
    for folder in cfg.data.replay:
        specs += [SampleSpec(n, "replay", str(p)) for n, p in replay_entries(folder)]
    for root in cfg.data.robo4d:
        specs += [SampleSpec(f"robo4d_{Path(root).name}_{e}", "robo4d", f"{root}::{e}")
                  for e in list_robo4d_episodes(root)]
    if not specs:
        raise InputError("the configured sources hold no episodes", field="data",
                         fix="check data.replay / data.robo4d folders or set data.sim.episodes_per_task")
    return specs


def build_sample(spec: SampleSpec, geometry: ModelGeometry) -> TrainSample:
    if spec.kind == "sim":
        sample = sim_sample(spec.name, Path(spec.location), geometry)
    elif spec.kind == "replay":
        sample = replay_sample(spec.name, Path(spec.location), geometry)
    elif spec.kind == "robo4d":
        root, episode = spec.location.split("::", 1)
        sample = robo4d_sample(Path(root), episode, geometry)
    else:
        raise InputError(f"unknown sample kind {spec.kind!r}", field="data", fix="sim, replay or robo4d")
    sample.name = spec.name
    sample.check(geometry)
    return sample


def iter_samples(specs: list[SampleSpec], geometry: ModelGeometry) -> Iterator[TrainSample]:
    for spec in specs:
        yield build_sample(spec, geometry)
