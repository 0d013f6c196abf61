"""Policy evaluation: the offline replay pipeline (episode jobs -> ``service.simulate_episode`` ->
outputs), success detection on 4D output, evaluating a replay folder (metrics, success tables,
plots), the simulated-world benchmark and the backend comparison.

The parts live in their own modules and are re-exported here: the resumable batch runner
(``batch``: Job, run_batch, read_marker, MARKER, fingerprints), the statistics (``statistics``:
Wilson intervals, success tables, policy correlation) and the plots (``plots``).

Success detection lives in ``kinema4d_core.success`` (re-exported here): the same code runs on
ground truth and on simulated rollouts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from kinema4d_core.batch import (CODE_VERSION, MARKER, REPORT, BatchPlan, Job, _jsonable, bag_identity,  # noqa: F401
                                  file_identity, job_fingerprint, job_inputs, plan_batch, read_marker,
                                  remove_leftovers, run_batch, run_job, with_inputs, write_batch_report)
from kinema4d_core.errors import InputError, Kinema4DError
from kinema4d_core.io import write_npz, write_text
from kinema4d_core.registry import DEFAULT_BACKEND
from kinema4d_core.plots import PALETTE, bar_chart_png  # noqa: F401 (re-exported)
from kinema4d_core.resources import Resources
from kinema4d_core.service import LIMIT_SLACK, clip_to_limits  # noqa: F401 (re-exported: the service's rule)
from kinema4d_core.success import (MIN_OBJECT_PIXELS, ROBOT_DILATION_PX, SuccessCriteria,  # noqa: F401 (re-exported)
                                    SuccessResult, detect_success, object_metrics, object_pixels,
                                    segment_object_points)
from kinema4d_core.statistics import (Outcome, _fmt_rate, _rate, agreement, outcomes_to_json,  # noqa: F401
                                       policy_correlation, success_table, table_markdown, wilson_interval)

log = logging.getLogger("kinema4d.evaluation")


# ----------------------------------------------------------------------------------------------
# Offline replay pipeline: sensor episode -> robot pointmap -> simulation -> outputs
# ----------------------------------------------------------------------------------------------

GT_FILE = "ground_truth.npz"


@dataclass(frozen=True)
class PipelineConfig:
    """What every episode of a replay/evaluation batch shares.

    backend_options are passed to ``make_backend``; ``n_frames`` is the model's sequence length
    (49 for Kinema4D); ``write_bag`` writes the rollout as a bag (``storage``) beside it;
    ``rescale_to_stream`` accepts camera images of another size than the calibration (K rescaled).
    """

    robot: str
    calibration: str
    backend: str = DEFAULT_BACKEND
    backend_options: tuple[tuple[str, Any], ...] = ()
    n_frames: int = 49
    seed: int = 42
    steps: int = 0                 # 0: the backend's default (BackendSpec.default_steps)
    write_bag: bool = True
    bag_storage: str = "mcap"
    rescale_to_stream: bool = False


class JobProcessor:
    """Base of the batch ``process`` objects: picklable (no closures), so a Ray actor gets one
    copy and runs many jobs with it. ``resources`` (loaded robots, calibrations, backends, bags)
    belong to the process that runs the jobs: they are never pickled, a copy in another process
    makes its own on first use (one model per actor)."""

    def __init__(self, resources: Resources | None = None) -> None:
        self._resources = resources

    @property
    def resources(self) -> Resources:
        if self._resources is None:
            self._resources = Resources()
        return self._resources

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_resources"] = None
        return state

    def __call__(self, job: Job, job_dir: Path) -> dict[str, Any]:
        raise NotImplementedError


def simulate_sensor_episode(episode: Any, cfg: PipelineConfig, job_dir: Path, camera: Any = None, *,
                            trajectory: Any = None, stream_K: np.ndarray | None = None,
                            max_extrapolation: float = 0.0, resources: Resources | None = None) -> dict[str, Any]:
    """Run ``service.simulate_episode`` for one ``episodes.SensorEpisode`` and write its outputs.

    The robot is rendered at the joint state interpolated at each selected frame's stamp, from
    ``trajectory`` (the whole joint stream, a ``JointTrajectory`` with stamps; default: the
    episode's joint states at its frames). ``stream_K``: the recording's CameraInfo intrinsics,
    checked against the calibration (``cfg.rescale_to_stream`` allows another image size).
    Writes ``job_dir/rollout.npz`` (+ videos, via rollout.save_rollout), ``ground_truth.npz``
    (recorded rgb and depth at the stream size with that camera's K, the robot mask at the
    generated size, T_base_camera, frame stamps, joint positions at those frames and their joint
    names: what ``kinema4d train`` needs to use the folder as training data) and, with ``cfg.write_bag``, ``job_dir/rollout_bag``.
    Returns a summary for the report. camera: a CameraModel to use instead of loading
    ``cfg.calibration``. resources: the process's loaded robots/calibrations/backends (a new
    ``Resources`` when None: everything is loaded for this call alone).
    """
    from kinema4d_core.io import StagedOutput
    from kinema4d_core.rollout import save_rollout
    from kinema4d_core.service import EpisodeRequest, prepare_episode, simulate_episode
    from kinema4d_core.trajectory import JointTrajectory

    res = resources or Resources()
    robot = res.robot(cfg.robot)
    if camera is None:
        camera = res.camera(cfg.calibration)
    backend = res.backend(cfg.backend, cfg.backend_options)
    rgb = np.asarray(episode.rgb)
    depth = episode.depth
    stamps = np.asarray(episode.stamps, np.float64)
    if trajectory is None:
        trajectory = JointTrajectory(tuple(episode.joint_names), episode.joint_positions, stamps)
    request = EpisodeRequest(first_frame=rgb[0], robot=robot, camera=camera, trajectory=trajectory,
                             frame_stamps=stamps, first_depth=None if depth is None else np.nan_to_num(depth[0]),
                             stream_K=stream_K, rescale_to_stream=cfg.rescale_to_stream,
                             stream_source=f"episode {episode.name} camera",
                             calibration_source=str(cfg.calibration or "the simulated camera"),
                             max_extrapolation=max_extrapolation,
                             n_frames=cfg.n_frames, seed=cfg.seed, steps=cfg.steps)
    prepared = prepare_episode(request, backend)
    rollout = simulate_episode(prepared, backend)
    save_rollout(rollout, job_dir)
    stream_camera = prepared.stream_camera
    gt = {"rgb": rgb, "stamps": stamps, "robot_mask": np.asarray(prepared.condition.mask), "K": stream_camera.K,
          "T_base_camera": stream_camera.T_base_camera, "joint_positions": np.asarray(episode.joint_positions),
          "joint_names": np.array([str(n) for n in episode.joint_names])}
    if depth is not None:
        gt["depth"] = depth.astype(np.float32)
    with StagedOutput(job_dir) as st:
        write_npz(st.path(GT_FILE), gt)
    info = prepared.info
    summary: dict[str, Any] = {"frames": int(len(rgb)), "alignment": episode.alignment,
                               "positions_clipped_to_limits": info["positions_clipped_to_limits"],
                               "rescaled_to_stream": info["rescaled_to_stream"],
                               "generated_size": info["generated_size"], "robot_times": info["robot_times"],
                               "backend": cfg.backend, "start_s": float(stamps[0]), "end_s": float(stamps[-1])}
    if cfg.write_bag:
        from kinema4d_core.bags import write_rollout_bag
        import shutil

        bag_path = job_dir / "rollout_bag"
        if bag_path.exists():  # left by a run killed before its marker: regenerate
            shutil.rmtree(bag_path)
        n = len(rollout.rgb)
        bag_stamps = stamps if len(stamps) == n else np.linspace(stamps[0], stamps[-1], n)
        write_rollout_bag(bag_path, rollout, bag_stamps, storage=cfg.bag_storage,
                          frame_id=getattr(camera, "child_frame", "camera_optical_frame"))
        summary["bag"] = str(bag_path.name)
    return summary


def bag_joint_trajectory(bag: Any, start: float, end: float, margin: float) -> Any:
    """The bag's joint states between ``start - margin`` and ``end + margin`` seconds as a
    ``JointTrajectory`` (columns named as in the bag, repeated stamps: the first one kept), for
    ``trajectory.sample_at`` at the camera frames' stamps."""
    from kinema4d_core.trajectory import JointTrajectory

    j = bag.joints
    t = np.asarray(j.stamps, np.float64)
    keep = np.flatnonzero((t >= start - margin) & (t <= end + margin))
    if keep.size:
        keep = keep[np.concatenate([[True], np.diff(t[keep]) > 0])]
    if keep.size == 0:
        raise InputError(f"no joint states between {start - margin:.3f} s and {end + margin:.3f} s",
                         field="joint states", fix="record joint states for the whole episode")
    return JointTrajectory(tuple(j.names), np.asarray(j.positions)[keep], t[keep])


def bag_stream_K(bag: Any, image_hw: tuple[int, int]) -> np.ndarray | None:
    """The recording's CameraInfo K (None without CameraInfo); InputError when the CameraInfo's
    size is not the size of the images it describes."""
    info = bag.camera_info
    if info is None:
        return None
    if (info.height, info.width) != tuple(image_hw):
        raise InputError(f"CameraInfo says {info.width}x{info.height} but the images are "
                         f"{image_hw[1]}x{image_hw[0]}", field=str(bag.topics.camera_info),
                         fix="record the CameraInfo of the image topic that is replayed")
    return np.asarray(info.K, np.float64)


def pipeline_inputs(cfg: PipelineConfig) -> dict[str, Any]:
    """The inputs every job of a replay/evaluation batch shares, for the job fingerprints
    (``batch.with_inputs``): robot config and URDF content, calibration content, backend and
    options, and the pipeline settings."""
    from kinema4d_core.robot import load_robot_config

    rc = load_robot_config(cfg.robot)
    return {"robot config": f"{file_identity(rc.source)}+urdf {file_identity(rc.urdf)}",
            "calibration": file_identity(cfg.calibration) if cfg.calibration else "the simulated camera",
            "backend": {"name": cfg.backend, "options": dict(cfg.backend_options)},
            "pipeline": {"n_frames": cfg.n_frames, "seed": cfg.seed, "steps": cfg.steps, "write_bag": cfg.write_bag,
                         "bag_storage": cfg.bag_storage, "rescale_to_stream": cfg.rescale_to_stream}}


def bag_jobs(bag_paths: Sequence[str | Path], topics: Any, split: Any, *, tolerance: float,
             n_frames: int, resources: Resources | None = None) -> tuple[list[Job], list[dict[str, Any]]]:
    """Episode jobs for every bag. A bag that cannot be read becomes one failed entry (returned
    separately) instead of stopping the others. With ``resources``, the opened bags are kept
    there for ``process_bag_job``."""
    from kinema4d_core.bags import read_bag
    from kinema4d_core.episodes import split_episodes

    jobs: list[Job] = []
    failures: list[dict[str, Any]] = []
    multi = len(bag_paths) > 1
    for path in bag_paths:
        prefix = (Path(path).name.replace(".", "_") + "_" if multi else "") + "episode"
        try:
            bag = read_bag(path, topics)
            ranges = split_episodes(split, bag.images.stamps, bag.marker_stamps, prefix=prefix)
        except Kinema4DError as exc:
            failures.append({"name": Path(path).name, "kind": "bag", "source": str(path), "status": "failed",
                             "reason": str(exc)})
            continue
        if resources is not None:
            resources.put("bag", (str(path), topics), bag)
        identity = (("bag", bag_identity(path)),)
        for r in ranges:
            jobs.append(Job(r.name, "bag", str(path), {"start": r.start, "end": r.end, "tolerance": tolerance,
                                                       "n_frames": n_frames}, identity))
    return jobs, failures


def process_bag_job(job: Job, job_dir: Path, topics: Any, cfg: PipelineConfig,
                    resources: Resources | None = None) -> dict[str, Any]:
    """Batch ``process`` for a bag episode job (see ``bag_jobs``)."""
    from kinema4d_core.bags import read_bag
    from kinema4d_core.episodes import TimeRange, episode_from_bag

    res = resources or Resources()
    bag = res.get("bag", (job.source, topics), lambda: read_bag(job.source, topics))
    p = job.params
    ep = episode_from_bag(bag, TimeRange(job.name, p["start"], p["end"]), tolerance=p["tolerance"],
                          min_frames=p["n_frames"], n_frames=p["n_frames"])
    stamps = np.asarray(ep.stamps, np.float64)
    traj = bag_joint_trajectory(bag, float(stamps[0]), float(stamps[-1]), p["tolerance"])
    return simulate_sensor_episode(ep, cfg, job_dir, trajectory=traj,
                                   stream_K=bag_stream_K(bag, np.asarray(ep.rgb).shape[1:3]),
                                   max_extrapolation=p["tolerance"], resources=res)


class BagJobProcessor(JobProcessor):
    """Batch ``process`` of ``kinema4d replay``: ``process_bag_job`` with the topics and config."""

    def __init__(self, topics: Any, cfg: PipelineConfig, resources: Resources | None = None) -> None:
        super().__init__(resources)
        self.topics, self.cfg = topics, cfg

    def __call__(self, job: Job, job_dir: Path) -> dict[str, Any]:
        return process_bag_job(job, job_dir, self.topics, self.cfg, self.resources)


# ----------------------------------------------------------------------------------------------
# Evaluating a replay / batch folder
# ----------------------------------------------------------------------------------------------

def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _resize_video(frames: np.ndarray, hw: tuple[int, int], nearest: bool = False) -> np.ndarray:
    import cv2

    if frames.shape[1:3] == hw:
        return frames
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    return np.stack([cv2.resize(f, (hw[1], hw[0]), interpolation=interp) for f in frames])


def _match_length(gt: np.ndarray, n: int) -> np.ndarray:
    if len(gt) == n:
        return gt
    from kinema4d_core.episodes import uniform_indices

    return gt[uniform_indices(len(gt), n)]


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """K of an image resized by ``sx`` (width) and ``sy`` (height), about pixel centres (a centre
    u maps to (u + 0.5) * s - 0.5, as ``CameraModel.resized``)."""
    S = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    return S @ np.asarray(K, np.float64)


def evaluate_episode(job_dir: Path, criteria: SuccessCriteria | None, *, robo4d_root: Path | None = None,
                     with_lpips: bool = True) -> dict[str, Any]:
    """Metrics (and success on GT and prediction) of one completed episode folder.

    With ``criteria`` and ground-truth depth, ``object`` compares the object segmented on the
    ground truth and on the prediction by the same detector (``success.object_metrics``:
    object Chamfer and final object position error, metres, base frame); otherwise it is
    "unavailable: reason"."""
    from kinema4d_core.metrics import depth_to_pointmap, pointmap_metrics, video_metrics

    roll = _load_npz(job_dir / "rollout.npz")
    pred_rgb = roll["rgb"]
    cache: dict[str, np.ndarray] = {}

    def pred_pm() -> np.ndarray:
        """The predicted pointmap as float64 metres, built once and only when geometry or success
        needs it (0.4 GB at 49 x 480 x 720)."""
        if "pm" not in cache:
            cache["pm"] = roll["pointmap"].astype(np.float64)
        return cache["pm"]

    T_bc = roll["T_base_camera"]
    n, hw = len(pred_rgb), pred_rgb.shape[1:3]
    out: dict[str, Any] = {}
    gt_path = job_dir / GT_FILE
    gt = _load_npz(gt_path) if gt_path.is_file() else None
    if gt is None and robo4d_root is not None:
        from kinema4d_core.episodes import read_robo4d_episode

        ep = read_robo4d_episode(robo4d_root, job_dir.name)
        gt = {"rgb": ep.rgb, "robot_mask": ep.robot_mask}
        out["ground_truth"] = "robo4d"
    if gt is None:
        out["video"] = "unavailable: no ground truth (ground_truth.npz or --robo4d)"
        return out
    gt_rgb = _resize_video(_match_length(gt["rgb"], n), hw)
    out["video"] = video_metrics(pred_rgb, gt_rgb, with_lpips=with_lpips)
    mask = gt.get("robot_mask")
    if mask is not None:
        mask = _resize_video(_match_length(mask.astype(np.uint8), n), hw, nearest=True).astype(bool)
    if "depth" in gt:
        depth = _resize_video(_match_length(gt["depth"], n), hw, nearest=True)
        K = scale_intrinsics(gt["K"], hw[1] / gt["depth"].shape[2], hw[0] / gt["depth"].shape[1])
        # at the rollout's float32 precision, so a recording compared with itself scores exactly 0 / 1
        gt_pm = depth_to_pointmap(depth, K).astype(np.float32).astype(np.float64)
        valid = np.isfinite(depth) & np.all(np.isfinite(roll["pointmap"]), axis=-1)
        out["geometry"] = pointmap_metrics(pred_pm(), gt_pm, valid)
        if criteria is None:
            out["object"] = "unavailable: no success criteria (the object is segmented by the task's detector)"
        else:
            g = detect_success(gt_pm, mask, T_bc, criteria)
            out["gt_success"] = g.success
            out["gt_max_lift_m"] = float(np.nanmax(g.lift)) if g.frames_with_object else None
            out["gt_detection"] = g.summary()
    else:
        out["geometry"] = "unavailable: no ground-truth depth was recorded"
        out["object"] = "unavailable: no ground-truth depth was recorded"
    if criteria is not None:
        s = detect_success(pred_pm(), mask, T_bc, criteria)
        out["sim_success"] = s.success
        out["sim_max_lift_m"] = float(np.nanmax(s.lift)) if s.frames_with_object else None
        out["sim_detection"] = s.summary()
        if "depth" in gt:
            out["object"] = object_metrics(g.object_points, s.object_points)
    return out


def evaluate_directory(run_dir: str | Path, criteria: SuccessCriteria | None = None, *,
                       robo4d_root: str | Path | None = None, with_lpips: bool = True,
                       criteria_by_scenario: dict[str, SuccessCriteria] | None = None) -> dict[str, Any]:
    """Evaluate every completed episode of a replay/batch folder and write ``evaluation.json``,
    ``evaluation.md`` and ``plots/*.png`` into it. Episodes that cannot be evaluated are listed
    with their reason; the rest are evaluated.

    criteria_by_scenario: success criteria per episode ``scenario`` (e.g. per sim task); episodes
    of other scenarios use ``criteria``. Where the episode's marker carries ``gt_success`` (the
    sim world's physics judgement), that is the ground-truth outcome; the detector's verdict on
    the ground-truth 4D is kept as ``gt_detected_success``.
    """
    run_dir = Path(run_dir)
    report_path = run_dir / REPORT
    if not report_path.is_file():
        raise InputError(f"{report_path} does not exist", field="DIR",
                         fix="pass a folder written by `kinema4d replay` (or the batch runner)")
    report = json.loads(report_path.read_text())
    episodes: list[dict[str, Any]] = []
    outcomes: list[Outcome] = []
    for entry in report.get("episodes", []):
        row: dict[str, Any] = {"name": entry["name"], "status": entry.get("status")}
        if entry.get("status") != "ok":
            row["reason"] = entry.get("reason")
            episodes.append(row)
            continue
        crit = (criteria_by_scenario or {}).get(entry.get("scenario", "default"), criteria)
        try:
            row.update(evaluate_episode(run_dir / entry["name"], crit,
                                        robo4d_root=Path(robo4d_root) if robo4d_root else None,
                                        with_lpips=with_lpips))
        except Kinema4DError as exc:
            row.update(status="not evaluated", reason=str(exc))
        except Exception as exc:  # a missing/corrupt file or a bug must not sink the other episodes
            log.exception("evaluating episode %s crashed", entry["name"])
            row.update(status="not evaluated", reason=f"unexpected {type(exc).__name__}: {exc}")
        if entry.get("gt_success") is not None:  # the sim world's own (physics) judgement is the GT
            if "gt_success" in row:
                row["gt_detected_success"] = row["gt_success"]
            row["gt_success"] = bool(entry["gt_success"])
        episodes.append(row)
        if row.get("gt_success") is not None or row.get("sim_success") is not None:
            outcomes.append(Outcome(entry.get("scenario", "default"), entry.get("policy", "default"), entry["name"],
                                    row.get("gt_success"), row.get("sim_success")))
    summary = _summarize(episodes)
    table = success_table(outcomes)
    corr = policy_correlation(outcomes)
    result = {"run_dir": str(run_dir), "criteria": asdict(criteria) if criteria else None, "summary": summary,
              "episodes": episodes, "success_table": table, "policy_correlation": corr}
    write_text(run_dir / "evaluation.json", json.dumps(_jsonable(result), indent=2))
    write_text(run_dir / "evaluation.md", _evaluation_markdown(result))
    _evaluation_plots(run_dir / "plots", episodes, table)
    return result


_SUMMARY_KEYS = (("video", "psnr"), ("video", "ssim"), ("video", "temp_rgb"), ("geometry", "cd_l1"),
                 ("geometry", "cd_l2"), ("geometry", "fscore"), ("geometry", "temp_cd_l1"), ("geometry", "flow_epe"),
                 ("object", "object_chamfer_m"), ("object", "final_object_error_m"))


def _summarize(episodes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"episodes": len(episodes),
                           "evaluated": sum(1 for e in episodes if isinstance(e.get("video"), dict))}
    for group, key in _SUMMARY_KEYS:
        vals = [e[group][key] for e in episodes if isinstance(e.get(group), dict) and key in e[group]]
        vals = [v for v in vals if isinstance(v, (int, float)) and np.isfinite(v)]
        out[f"{group}.{key}"] = float(np.mean(vals)) if vals else None
    return out


def _evaluation_markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = [f"# Evaluation of {result['run_dir']}", "",
             f"{s['evaluated']} of {s['episodes']} episodes evaluated.", "",
             "| Metric | Mean |", "|---|---|"]
    for group, key in _SUMMARY_KEYS:
        v = s.get(f"{group}.{key}")
        lines.append(f"| {key} | {'n/a' if v is None else f'{v:.4g}'} |")
    lines += ["", "## Episodes", "", "| Episode | Status | PSNR | SSIM | CD-L1 (m) | F@0.01 | GT success | Sim success |",
              "|---|---|---|---|---|---|---|---|"]
    for e in result["episodes"]:
        v = e.get("video") if isinstance(e.get("video"), dict) else {}
        g = e.get("geometry") if isinstance(e.get("geometry"), dict) else {}
        f = lambda d, k: f"{d[k]:.4g}" if isinstance(d.get(k), (int, float)) else "n/a"  # noqa: E731
        status = e["status"] + (f" ({e['reason']})" if e.get("reason") else "")
        lines.append(f"| {e['name']} | {status} | {f(v, 'psnr')} | {f(v, 'ssim')} | {f(g, 'cd_l1')} | "
                     f"{f(g, 'fscore')} | {e.get('gt_success', 'n/a')} | {e.get('sim_success', 'n/a')} |")
    if result["success_table"]:
        lines += ["", "## Policy evaluation (success rate, 95 % Wilson interval)", "",
                  table_markdown(result["success_table"], result["policy_correlation"])]
    return "\n".join(lines) + "\n"


def _evaluation_plots(plot_dir: Path, episodes: Sequence[dict[str, Any]], table: Sequence[dict[str, Any]]) -> None:
    evaluated = [e for e in episodes if isinstance(e.get("video"), dict)]
    if evaluated:
        names = [e["name"] for e in evaluated]
        bar_chart_png(plot_dir / "psnr.png", names, {"PSNR (dB)": [e["video"]["psnr"] for e in evaluated]},
                      "PSNR per episode", "dB")
        bar_chart_png(plot_dir / "ssim.png", names, {"SSIM": [e["video"]["ssim"] for e in evaluated]},
                      "SSIM per episode")
        geo = [e for e in evaluated if isinstance(e.get("geometry"), dict)]
        if geo:
            bar_chart_png(plot_dir / "chamfer.png", [e["name"] for e in geo],
                          {"CD-L1 (m)": [e["geometry"]["cd_l1"] for e in geo]}, "Chamfer L1 per episode", "m")
    if table:
        bar_chart_png(plot_dir / "success_rate.png", [r["scenario"] for r in table],
                      {"ground truth": [r["gt_rate"] for r in table], "simulated": [r["sim_rate"] for r in table]},
                      "Success rate per scenario")


# ----------------------------------------------------------------------------------------------
# Simulated-world policy rollouts as episodes (benchmark)
# ----------------------------------------------------------------------------------------------

def sim_jobs(n: int, tasks: Sequence[str], *, policy: str | Sequence[str] = "scripted",
             n_frames: int = 49, first_seed: int = 0) -> list[Job]:
    """``n`` simulated episodes per task and policy (seeds first_seed..first_seed+n-1), scenario =
    task, named ``<task>_<policy>_<seed>``. policy: one name or several of
    ``simworld.tasks.POLICIES`` (InputError naming the known ones otherwise). first_seed: start
    past the seeds a model was trained on (``data.sim.first_seed + episodes_per_task`` of its
    training config) so that the episodes are held out."""
    from kinema4d_core.simworld.tasks import check_policy

    policies = (policy,) if isinstance(policy, str) else tuple(policy)
    if not policies or len(set(policies)) != len(policies):
        raise InputError(f"policies {list(policies)}", field="policy", fix="name each policy once")
    for pol in policies:
        check_policy(pol)
    if not isinstance(first_seed, (int, np.integer)) or first_seed < 0:
        raise InputError(f"first seed {first_seed!r}", field="--first-seed", fix="use an integer >= 0")
    return [Job(f"{task}_{pol}_{seed:03d}", "sim", task, {"seed": seed, "policy": pol, "n_frames": n_frames})
            for task in tasks for pol in policies for seed in range(int(first_seed), int(first_seed) + n)]


def sim_sensor_episode(name: str, ep: Any) -> Any:
    """A sim world recording (``simworld.episode``) as an ``episodes.SensorEpisode``: its depth
    with NaN where the sim rendered none (<= 0), as a depth camera reports it."""
    from kinema4d_core.episodes import SensorEpisode

    return SensorEpisode(name=name, stamps=np.asarray(ep.stamps, np.float64), rgb=ep.rgb,
                         joint_names=tuple(ep.joint_names), joint_positions=ep.joint_positions,
                         depth=np.where(ep.depth > 0, ep.depth, np.nan).astype(np.float32),
                         alignment={"source": "simworld"})


def process_sim_job(job: Job, job_dir: Path, cfg: PipelineConfig, resources: Resources | None = None) -> dict[str, Any]:
    """Run the sim world's scripted policy (the job's ``policy``) for the job's task and seed, then
    the pipeline on its recording (the sim's own depth is the geometry ground truth; its success
    is the GT outcome)."""
    from kinema4d_core.simworld.world import SimWorld

    p = job.params
    with SimWorld() as world:
        ep = world.run_episode(job.source, n_frames=p["n_frames"], seed=p["seed"],
                               policy=p.get("policy", "scripted"))
        camera = world.camera_model()
    summary = simulate_sensor_episode(sim_sensor_episode(job.name, ep), cfg, job_dir, camera=camera,
                                      resources=resources)
    summary.update(scenario=job.source, policy=p["policy"], seed=p["seed"], gt_success=bool(ep.success))
    return summary


class SimJobProcessor(JobProcessor):
    """Batch ``process`` of ``kinema4d evaluate --sim-benchmark``: ``process_sim_job``."""

    def __init__(self, cfg: PipelineConfig, resources: Resources | None = None) -> None:
        super().__init__(resources)
        self.cfg = cfg

    def __call__(self, job: Job, job_dir: Path) -> dict[str, Any]:
        return process_sim_job(job, job_dir, self.cfg, self.resources)


# ----------------------------------------------------------------------------------------------
# Backend comparison on shared simulated episodes
# ----------------------------------------------------------------------------------------------

SIM_EPISODE_FILE = "episode.npz"
SIM_EPISODES_DIR = "sim_episodes"
BACKENDS_DIR = "backends"
COMPARISON = "comparison"


def _role(name: str) -> str:
    """What a backend is, as the comparison table says it (the registry's summary)."""
    from kinema4d_core.registry import backend_spec

    return backend_spec(name).summary


def _is_baseline(name: str) -> bool:
    from kinema4d_core.registry import backend_spec

    return backend_spec(name).is_baseline


def sim_success_criteria(tasks: Sequence[str], config: Any = None) -> dict[str, SuccessCriteria]:
    """Success criteria on 4D output that mirror the sim world's own judgement per task (base
    frame, table top at z = 0): ``pick_place`` = lifted more than the sim's lift threshold and
    ending in the target square; ``push`` = ending in the target square. Only points in a box
    around the cube's and the target's areas count as the object."""
    from kinema4d_core.simworld.scene import SimConfig
    from kinema4d_core.simworld.tasks import LIFT_THRESHOLD

    cfg = config or SimConfig()
    (cx, cy), (tx, ty), h = cfg.cube_nominal_xy, cfg.target_xy, cfg.target_half_size
    region = (tx - h, tx + h, ty - h, ty + h)
    m = 0.1 + cfg.cube_noise
    workspace = (min(cx, tx) - m, max(cx, tx) + m, min(cy, ty) - m, max(cy, ty) + m)
    out = {}
    for task in tasks:
        kind = "lift+place" if task == "pick_place" else "place"
        out[task] = SuccessCriteria(task=kind, table_height=0.0, lift_height=LIFT_THRESHOLD, target_region=region,
                                    workspace=workspace)
    return out


@dataclass(frozen=True)
class BenchmarkConfig:
    """A backend comparison: ``n`` scripted episodes per task and policy (``policies``, names of
    ``simworld.tasks.POLICIES``), recorded once at ``size`` (H, W) with ``n_frames`` frames, then
    run through every backend in ``backends`` (name -> options). ``bootstrap``: replicates of
    the bootstrap confidence intervals of the correlations across policies (seeded with ``seed``).
    ``first_seed``: the episodes use sim seeds first_seed..first_seed+n-1 (start past a model's
    training seeds for held-out episodes)."""

    n: int
    tasks: tuple[str, ...]
    backends: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]
    size: tuple[int, int] | None = None
    n_frames: int = 49
    seed: int = 42
    steps: int = 0                 # 0: each backend's default
    robot: str = "panda"
    with_lpips: bool = True
    retry_failed: bool = False
    policies: tuple[str, ...] = ("scripted",)
    bootstrap: int = 1000
    first_seed: int = 0


def benchmark_size(cfg: BenchmarkConfig, resources: Resources | None = None) -> tuple[tuple[int, int], dict[str, str]]:
    """The common image size (H, W) of a comparison and the backends that cannot run at all.

    Model backends generate at their checkpoint's fixed size, so every backend runs (and is
    scored) at that size; with only the baseline it is ``cfg.size`` or 240 x 360 (half the sim's
    480 x 720). Model backends of different sizes, or a ``cfg.size`` that differs, are refused.
    """
    sizes: dict[str, tuple[int, int]] = {}
    unavailable: dict[str, str] = {}
    from kinema4d_core.registry import backend_spec

    res = resources or Resources()
    for name, options in cfg.backends:
        if not backend_spec(name).fixed_geometry:
            continue
        try:
            sizes[name] = tuple(int(v) for v in res.backend(name, options).size)  # type: ignore[assignment]
        except Kinema4DError as exc:
            unavailable[name] = str(exc)
    distinct = set(sizes.values())
    if len(distinct) > 1:
        raise InputError(f"model backends generate different sizes {sizes}", field="--backends",
                         fix="compare backends of one size per run")
    if distinct:
        size = distinct.pop()
        if cfg.size is not None and tuple(cfg.size) != size:
            raise InputError(f"--size {cfg.size} differs from the model size {size}", field="--size",
                             fix=f"omit --size (the comparison runs at the model's {size[0]} x {size[1]})")
        return size, unavailable
    return (tuple(cfg.size) if cfg.size is not None else (240, 360)), unavailable  # type: ignore[return-value]


def record_sim_job(job: Job, job_dir: Path, size: tuple[int, int]) -> dict[str, Any]:
    """Batch ``process``: run the job's scripted policy for its task and seed and store the
    recording at ``size`` (rgb area-averaged, depth and robot mask nearest) with the camera's K
    scaled to it, as ``job_dir/episode.npz``. The marker carries the sim's own success verdict
    and where the policy believed the cube was."""
    from kinema4d_core.simworld.episode import save_episode
    from kinema4d_core.simworld.tasks import believed_cube_xy
    from kinema4d_core.simworld.world import SimWorld

    p = job.params
    policy = p.get("policy", "scripted")
    with SimWorld() as world:
        ep = world.run_episode(job.source, n_frames=p["n_frames"], seed=p["seed"], policy=policy)
        camera = world.camera_model().resized(*size)
        believed = believed_cube_xy(policy, world.config, p["seed"])
    ep.rgb = _resize_video(np.asarray(ep.rgb), size)
    ep.depth = _resize_video(ep.depth.astype(np.float32), size, nearest=True)
    ep.robot_mask = _resize_video(ep.robot_mask.astype(np.uint8), size, nearest=True).astype(bool)
    ep.K = np.asarray(camera.K)
    save_episode(ep, job_dir / SIM_EPISODE_FILE)
    return {"scenario": job.source, "policy": policy, "seed": p["seed"], "gt_success": bool(ep.success),
            "sim_judgement": ep.summary(), "believed_cube_xy": list(believed), "frames": int(ep.n_frames),
            "size": list(size)}


def process_recorded_sim_job(job: Job, job_dir: Path, episodes_dir: Path, cfg: PipelineConfig,
                             camera: Any, resources: Resources | None = None) -> dict[str, Any]:
    """Batch ``process`` of one backend: the shared recording of ``job`` -> robot pointmap ->
    backend -> outputs (as ``simulate_sensor_episode``). A failed recording fails this job too."""
    from kinema4d_core.simworld.episode import load_episode

    marker = read_marker(episodes_dir / job.name)
    if marker is None or marker.get("status") != "ok":
        reason = "not recorded" if marker is None else marker.get("reason")
        raise InputError(f"the simulated episode is unavailable ({reason})", field=f"episode {job.name}",
                         fix="see sim_episodes/report.json")
    ep = load_episode(episodes_dir / job.name / SIM_EPISODE_FILE)
    if ep.rgb.shape[1:3] != (camera.height, camera.width):
        raise InputError(f"recorded at {ep.rgb.shape[2]}x{ep.rgb.shape[1]}, the comparison runs at "
                         f"{camera.width}x{camera.height}", field=f"episode {job.name}",
                         fix="use a new output folder for another size")
    summary = simulate_sensor_episode(sim_sensor_episode(job.name, ep), cfg, job_dir, camera=camera,
                                      resources=resources)
    summary.update(scenario=job.source, policy=job.params.get("policy", "scripted"), seed=job.params["seed"],
                   gt_success=bool(marker["gt_success"]))
    return summary


class RecordSimProcessor(JobProcessor):
    """Batch ``process`` recording the comparison's sim episodes at ``size`` (``record_sim_job``)."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = tuple(size)

    def __call__(self, job: Job, job_dir: Path) -> dict[str, Any]:
        return record_sim_job(job, job_dir, self.size)  # type: ignore[arg-type]


class RecordedSimProcessor(JobProcessor):
    """Batch ``process`` of one backend of a comparison (``process_recorded_sim_job``)."""

    def __init__(self, episodes_dir: Path, cfg: PipelineConfig, camera: Any,
                 resources: Resources | None = None) -> None:
        super().__init__(resources)
        self.episodes_dir, self.cfg, self.camera = Path(episodes_dir), cfg, camera

    def __call__(self, job: Job, job_dir: Path) -> dict[str, Any]:
        return process_recorded_sim_job(job, job_dir, self.episodes_dir, self.cfg, self.camera, self.resources)


def run_backend_comparison(out_dir: str | Path, cfg: BenchmarkConfig, *, progress: bool = True,
                           resources: Resources | None = None, executor: Any = None) -> dict[str, Any]:
    """Record ``cfg.n`` scripted sim episodes per task and policy once (``OUT/sim_episodes/``), run
    them through every backend (``OUT/backends/<name>/``, each evaluated as by
    ``evaluate_directory``) and write the comparison ``OUT/comparison.json`` and
    ``OUT/comparison.md`` (``comparison_table``: per-task rows and the policy-evaluation table).
    Every stage is resumable (completion markers) and a failing episode or backend fails alone,
    with its reason. ``executor``: who runs the episodes (``executors.LocalExecutor`` by default,
    or ``RayExecutor``)."""
    from kinema4d_core.simworld.calibration import sim_camera_model
    from kinema4d_core.simworld.scene import SimConfig

    out_dir = Path(out_dir)
    if cfg.n < 1:
        raise InputError(f"{cfg.n} episodes", field="--sim-benchmark", fix="use N >= 1")
    if not cfg.backends:
        raise InputError("no backends", field="--backends", fix="list at least one, e.g. static-scene")
    if cfg.bootstrap < 0:
        raise InputError(f"{cfg.bootstrap} bootstrap replicates", field="bootstrap", fix="use 0 (none) or more")
    jobs = sim_jobs(cfg.n, cfg.tasks, policy=cfg.policies, n_frames=cfg.n_frames,  # checks the policies first
                    first_seed=cfg.first_seed)
    res = resources or Resources()
    size, unavailable = benchmark_size(cfg, res)
    episodes_dir = out_dir / SIM_EPISODES_DIR
    previous = episodes_dir / REPORT
    if previous.is_file():
        old = json.loads(previous.read_text())
        if tuple(old.get("size", size)) != tuple(size) or old.get("frames", cfg.n_frames) != cfg.n_frames:
            raise InputError(f"{out_dir} holds episodes of {old.get('frames')} frames at {old.get('size')}, this "
                             f"run needs {cfg.n_frames} at {list(size)}", field="OUT",
                             fix="use a new output folder (or the same --frames/--size as before)")
    jobs = with_inputs(jobs, {"recording": {"size": list(size), "frames": cfg.n_frames}})
    log.info("comparison: %d episodes at %dx%d, backends %s", len(jobs), size[1], size[0],
             ", ".join(n for n, _ in cfg.backends))
    run_batch(jobs, episodes_dir, RecordSimProcessor(size), retry_failed=cfg.retry_failed, executor=executor,
              progress=progress, extra_report={"size": list(size), "frames": cfg.n_frames, "tasks": list(cfg.tasks),
                                               "policy": ", ".join(cfg.policies), "policies": list(cfg.policies),
                                               "first_seed": cfg.first_seed, "robot": cfg.robot})
    camera = sim_camera_model(SimConfig()).resized(*size)
    criteria = sim_success_criteria(cfg.tasks)
    results: dict[str, Any] = {}
    for name, options in cfg.backends:
        bdir = out_dir / BACKENDS_DIR / name
        if name in unavailable:
            results[name] = {"unavailable": unavailable[name]}
            continue
        pcfg = PipelineConfig(robot=cfg.robot, calibration="", backend=name, backend_options=options,
                              n_frames=cfg.n_frames, seed=cfg.seed, steps=cfg.steps, write_bag=False)
        report = run_batch(with_inputs(jobs, pipeline_inputs(pcfg)), bdir,
                           RecordedSimProcessor(episodes_dir, pcfg, camera, res),
                           retry_failed=cfg.retry_failed, progress=progress, executor=executor,
                           extra_report={"backend": name, "role": _role(name),
                                         "size": list(size), "frames": cfg.n_frames, "steps": cfg.steps})
        res.release_backend(name, options)  # free a model's weights before the next backend
        evaluation = evaluate_directory(bdir, None, with_lpips=cfg.with_lpips, criteria_by_scenario=criteria)
        results[name] = {"report": report, "evaluation": evaluation}
    episodes_report = json.loads((episodes_dir / REPORT).read_text())
    comparison = comparison_table(results, episodes_report, cfg, size)
    write_text(out_dir / f"{COMPARISON}.json", json.dumps(_jsonable(comparison), indent=2))
    write_text(out_dir / f"{COMPARISON}.md", comparison_markdown(comparison))
    return comparison


def _mean(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


_COMPARISON_METRICS = (("video", "psnr"), ("video", "ssim"), ("geometry", "cd_l1"), ("geometry", "cd_l2"),
                       ("geometry", "fscore"), ("video", "temp_rgb"), ("geometry", "temp_cd_l1"),
                       ("geometry", "flow_epe"), ("object", "object_chamfer_m"), ("object", "final_object_error_m"))


def _outcome(name: str, recorded: dict[str, Any], evaluated: dict[str, Any]) -> Outcome:
    return Outcome(recorded.get("source", "default"), recorded.get("policy", "scripted"), name,
                   evaluated.get("gt_success"), evaluated.get("sim_success"))


def comparison_table(results: dict[str, Any], episodes_report: dict[str, Any], cfg: BenchmarkConfig,
                     size: tuple[int, int]) -> dict[str, Any]:
    """The comparison of backends on the same recorded episodes.

    ``rows``: per backend and task (and "all"): GT (sim physics) vs simulated (detector on the
    backend's 4D output) success rates with Wilson 95 % CIs and difference, the episode-level
    agreement (share of episodes where simulated success == GT success, Wilson 95 % CI), the
    detector's rate on the ground-truth 4D, mean PSNR/SSIM/CD-L1/CD-L2/F@0.01/temporal metrics,
    mean object Chamfer and final object error (``object_n`` episodes had them) and the
    backend's seconds per episode.

    ``policy_evaluation`` (the paper's Table 3): ``rows`` per backend, task (and "all") and policy
    (and "all"): GT vs simulated success rate, agreement, each with a Wilson 95 % CI, and the
    same detector's rate on the ground-truth 4D (``detected_gt_rate``) with the agreement of the
    simulated verdict with it; ``correlation`` per backend and task (and "all"): Pearson and
    Spearman correlation of the GT vs simulated success rates across policies with seeded
    bootstrap 95 % CIs (``statistics.policy_correlation``; "unavailable: reason" where
    undefined), and ``vs_detected_gt``: the same against the detector-on-GT rates.
    """
    rec = {e["name"]: e for e in episodes_report.get("episodes", [])}
    policies = list(cfg.policies)
    bootstrap = int(cfg.bootstrap)
    rows: list[dict[str, Any]] = []
    table3: list[dict[str, Any]] = []
    correlations: list[dict[str, Any]] = []
    for name, _ in cfg.backends:
        res = results.get(name, {})
        role = _role(name)
        if "unavailable" in res:
            rows.append({"backend": name, "baseline": _is_baseline(name), "role": role, "task": "all",
                         "unavailable": res["unavailable"]})
            continue
        markers = {e["name"]: e for e in res["report"]["episodes"]}
        evaluated = {e["name"]: e for e in res["evaluation"]["episodes"]}
        for task in [*cfg.tasks, "all"]:
            names = [n for n, e in rec.items() if task == "all" or e.get("source") == task]
            ok = [n for n in names if markers.get(n, {}).get("status") == "ok"]
            ev = [evaluated[n] for n in ok if n in evaluated]
            outcomes = [_outcome(n, rec[n], evaluated[n]) for n in ok if n in evaluated]
            kg, ng = _rate(e.get("gt_success") for e in ev)
            ks, ns = _rate(e.get("sim_success") for e in ev)
            kd, nd = _rate(e.get("gt_detected_success") for e in ev)
            ka, na = agreement(outcomes)
            gt, sim = (kg / ng if ng else None), (ks / ns if ns else None)
            row: dict[str, Any] = {
                "backend": name, "baseline": _is_baseline(name), "role": role, "task": task,
                "episodes": len(names), "ok": len(ok),
                "failed": {n: markers[n].get("reason") for n in names
                           if markers.get(n, {}).get("status") not in ("ok", None)},
                "gt_rate": gt, "gt_ci": wilson_interval(kg, ng), "gt_n": ng,
                "sim_rate": sim, "sim_ci": wilson_interval(ks, ns), "sim_n": ns,
                "difference": (sim - gt) if gt is not None and sim is not None else None,
                "agreement": ka / na if na else None, "agreement_ci": wilson_interval(ka, na), "agreement_n": na,
                "detector_on_gt_rate": kd / nd if nd else None,
                "seconds_per_episode": _mean(markers[n].get("seconds") for n in ok),
            }
            for group, key in _COMPARISON_METRICS:
                row[key] = _mean(e[group].get(key) for e in ev if isinstance(e.get(group), dict))
            row["object_n"] = sum(1 for e in ev if isinstance(e.get("object"), dict)
                                  and e["object"].get("object_chamfer_m") is not None)
            rows.append(row)
            base = {"backend": name, "baseline": _is_baseline(name), "task": task}
            # the same detector on the ground-truth 4D as the reference: what the prediction should
            # reproduce when the detector itself cannot see the outcome (small images, occlusion)
            detected = [Outcome(o.scenario, o.policy, o.episode, evaluated[o.episode].get("gt_detected_success"),
                                o.sim_success) for o in outcomes]
            by_policy = {r["policy"]: r for r in success_table(outcomes, by="policy")}
            by_policy_det = {r["policy"]: r for r in success_table(detected, by="policy")}
            empty = {"episodes": 0, "gt_rate": None, "gt_ci": wilson_interval(0, 0), "gt_n": 0, "sim_rate": None,
                     "sim_ci": wilson_interval(0, 0), "sim_n": 0, "difference": None, "agreement": None,
                     "agreement_ci": wilson_interval(0, 0), "agreement_n": 0}
            for pol in [*policies, "all"]:
                r = by_policy.get(pol, {"policy": pol, **empty})
                d = by_policy_det.get(pol, {"policy": pol, **empty})
                table3.append({**base, **r, "detected_gt_rate": d["gt_rate"], "detected_gt_ci": d["gt_ci"],
                               "agreement_with_detected_gt": d["agreement"],
                               "agreement_with_detected_gt_ci": d["agreement_ci"]})
            corr = policy_correlation(outcomes, bootstrap=bootstrap, seed=cfg.seed)
            vs_det = policy_correlation(detected, bootstrap=bootstrap, seed=cfg.seed)
            corr["vs_detected_gt"] = {k: v for k, v in vs_det.items() if k != "bootstrap"}
            correlations.append({**base, **corr})
    rec_ok = [e for e in rec.values() if e.get("status") == "ok"]
    return {"episodes_per_task": cfg.n, "tasks": list(cfg.tasks), "policy": ", ".join(policies),
            "policies": policies, "sim_seeds": [cfg.first_seed, cfg.first_seed + cfg.n - 1], "frames": cfg.n_frames,
            "size": list(size), "steps": cfg.steps, "seed": cfg.seed,
            "backends": [{"name": n, "baseline": _is_baseline(n), "role": _role(n)}
                         for n, _ in cfg.backends],
            "sim_episodes": {"ok": len(rec_ok), "total": len(rec),
                             "seconds_per_episode": _mean(e.get("seconds") for e in rec_ok),
                             "failed": {e["name"]: e.get("reason") for e in rec.values() if e.get("status") == "failed"}},
            "ground_truth": "success: the sim world's physics judgement; video and geometry: the sim's rendered RGB "
                            "and depth at the comparison size; object: the task detector's object segmented on "
                            "the sim's depth",
            "criteria": {t: asdict(c) for t, c in sim_success_criteria(cfg.tasks).items()},
            "rows": rows,
            "policy_evaluation": {"rows": table3, "correlation": correlations, "bootstrap": bootstrap}}


def _fmt_corr(value: Any, ci: Any) -> str:
    if not isinstance(value, float):
        return str(value)
    if isinstance(ci, (list, tuple)):
        return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{value:.3f} (CI {ci})" if ci is not None else f"{value:.3f}"


def comparison_markdown(comparison: dict[str, Any]) -> str:
    """The comparison as markdown: the per-task table, the policy-evaluation table (Table 3) and
    the correlations across policies (plus notes)."""
    f = lambda v, d=3: "n/a" if v is None else f"{v:.{d}g}" if isinstance(v, float) else str(v)  # noqa: E731
    h, w = comparison["size"]
    policies = comparison.get("policies", [comparison.get("policy", "scripted")])
    who = "scripted policy" if policies == ["scripted"] else f"policies {', '.join(policies)}"
    per = "task" if len(policies) == 1 else "task and policy"
    role_of = lambda r: ("**baseline**" if r["baseline"] else  # noqa: E731
                         "untrained reference" if r["backend"] == "kinema4d-tiny" else "model")
    seeds = comparison.get("sim_seeds")
    lines = [f"# Backend comparison: {who}, {comparison['episodes_per_task']} episode(s) per {per}",
             "",
             f"Simulated world, tasks {', '.join(comparison['tasks'])}"
             + (f", sim seeds {seeds[0]}-{seeds[1]}" if seeds else "") + f"; {comparison['frames']} frames at {w}x{h}; "
             f"the same recorded episodes for every backend ({comparison['sim_episodes']['ok']}/"
             f"{comparison['sim_episodes']['total']} recorded, {f(comparison['sim_episodes']['seconds_per_episode'])} s "
             f"each). GT success = the sim's physics judgement; Sim success = the same task's detector on the "
             f"backend's 4D output; 'Det. on GT' = that detector on the ground-truth 4D (its own error); "
             f"Agreement = share of episodes where Sim success equals GT success. Success rates with 95 % Wilson "
             f"intervals. Object Chamfer / final object error: the detector's object points on the backend's 4D "
             f"output vs on the ground-truth 4D (base frame; 'obj. n' episodes had the object on both sides).",
             "",
             "| Backend | Role | Task | OK/Episodes | GT success | Sim success | Sim - GT | Det. on GT | PSNR (dB) "
             "| SSIM | CD-L1 (m) | CD-L2 (m²) | F@0.01 | temp RGB | temp CD-L1 (m) | flow EPE (m) | s/episode "
             "| Agreement | Obj. Chamfer (m) | Final obj. error (m) | obj. n |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in comparison["rows"]:
        role = role_of(r)
        if "unavailable" in r:
            lines.append(f"| {r['backend']} | {role} | all | unavailable: {r['unavailable']} |"
                         + " |" * 17)
            continue
        diff = "n/a" if r["difference"] is None else f"{r['difference']:+.2f}"
        lines.append(
            f"| {r['backend']} | {role} | {r['task']} | {r['ok']}/{r['episodes']} | "
            f"{_fmt_rate(r['gt_rate'], r['gt_ci'])} | {_fmt_rate(r['sim_rate'], r['sim_ci'])} | {diff} | "
            f"{'n/a' if r['detector_on_gt_rate'] is None else format(r['detector_on_gt_rate'], '.2f')} | "
            f"{f(r['psnr'], 4)} | {f(r['ssim'])} | {f(r['cd_l1'])} | {f(r['cd_l2'])} | {f(r['fscore'])} | "
            f"{f(r['temp_rgb'])} | {f(r['temp_cd_l1'])} | {f(r['flow_epe'])} | {f(r['seconds_per_episode'])} | "
            f"{_fmt_rate(r.get('agreement'), r.get('agreement_ci', (0.0, 1.0)))} | {f(r.get('object_chamfer_m'))} | "
            f"{f(r.get('final_object_error_m'))} | {r.get('object_n', 'n/a')} |")
    pe = comparison.get("policy_evaluation")
    if pe:
        lines += ["", "## Policy evaluation (Table 3)", "",
                  "Per backend, task and policy: GT success rate (sim physics) vs the rate predicted from the "
                  "backend's 4D output, and the episode-level agreement, each with its 95 % Wilson interval. "
                  "'Det. on GT' = the same detector on the ground-truth 4D: where it misses the GT outcome (e.g. "
                  "a lift hidden in the gripper at small sizes) no backend can be judged against the physics, "
                  "only against it ('Agreement w/ det. on GT', 'vs det. on GT').",
                  "",
                  "| Backend | Role | Task | Policy | Episodes | GT success | Predicted success | Pred - GT "
                  "| Agreement | Det. on GT | Agreement w/ det. on GT |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        agree_det = "agreement_with_detected_gt_ci"
        for r in pe["rows"]:
            diff = "n/a" if r["difference"] is None else f"{r['difference']:+.2f}"
            lines.append(f"| {r['backend']} | {role_of(r)} | {r['task']} | {r['policy']} | {r['episodes']} | "
                         f"{_fmt_rate(r['gt_rate'], r['gt_ci'])} | {_fmt_rate(r['sim_rate'], r['sim_ci'])} | {diff} | "
                         f"{_fmt_rate(r['agreement'], r['agreement_ci'])} | "
                         f"{_fmt_rate(r.get('detected_gt_rate'), r.get('detected_gt_ci', (0.0, 1.0)))} | "
                         f"{_fmt_rate(r.get('agreement_with_detected_gt'), r.get(agree_det, (0.0, 1.0)))} |")
        lines += ["", f"Correlation of GT vs predicted success rates across policies, with seeded bootstrap 95 % "
                      f"intervals ({pe.get('bootstrap', 0)} replicates resampling episodes within each policy):", "",
                  "| Backend | Role | Task | Policies | Pearson | Spearman | Pearson vs det. on GT "
                  "| Spearman vs det. on GT |", "|---|---|---|---|---|---|---|---|"]
        for c in pe["correlation"]:
            v = c.get("vs_detected_gt", {})
            lines.append(f"| {c['backend']} | {role_of(c)} | {c['task']} | {len(c['policies'])} | "
                         f"{_fmt_corr(c['pearson'], c.get('pearson_ci'))} | "
                         f"{_fmt_corr(c['spearman'], c.get('spearman_ci'))} | "
                         f"{_fmt_corr(v.get('pearson', 'n/a'), v.get('pearson_ci'))} | "
                         f"{_fmt_corr(v.get('spearman', 'n/a'), v.get('spearman_ci'))} |")
    lines += ["", "Roles:"] + [f"- {b['name']}: {b['role']}" for b in comparison["backends"]]
    failed = [(r["backend"], n, why) for r in comparison["rows"] if r.get("task") == "all"
              for n, why in (r.get("failed") or {}).items()]
    failed += [("(recording)", n, why) for n, why in comparison["sim_episodes"]["failed"].items()]
    if failed:
        lines += ["", "Failed episodes:"] + [f"- {b} {n}: {why}" for b, n, why in failed]
    return "\n".join(lines) + "\n"
