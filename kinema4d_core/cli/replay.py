"""``kinema4d replay``: run the simulator offline over the episodes of recorded rosbag2 bags.

Per episode: camera frames aligned with joint states by stamp -> robot pointmap in the
calibrated camera -> backend -> ``OUT/<episode>/rollout.npz`` (+ videos, ground_truth.npz and a
``rollout_bag`` with the predicted images and point clouds). ``OUT/report.json`` lists every
episode with its status and, for failures, the reason. Rerunning continues where a previous run
stopped: episodes completed with the same inputs (bag, robot config, calibration, backend and
options, settings, code version) are not recomputed; episodes whose inputs changed are, and the
log says which inputs changed. Exit status: 0 all episodes ok, 1 some failed.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from kinema4d_core.errors import InputError


def add_backend_args(p: argparse.ArgumentParser) -> None:
    """Backend options shared by replay and evaluate: ``--backend`` and every registered backend
    option (``kinema4d_core.registry``), plus the sampling flags."""
    from kinema4d_core.registry import add_backend_arguments

    add_backend_arguments(p)
    p.add_argument("--frames", type=int, default=49, help="frames per episode the model generates (default 49)")
    p.add_argument("--steps", type=int, default=0, help="sampling steps (default 0: the backend's own default)")
    p.add_argument("--seed", type=int, default=42, help="sampling seed (default 42)")


def backend_options(args: argparse.Namespace, backend: str | None = None) -> tuple[tuple[str, object], ...]:
    """The options of ``backend`` (default ``args.backend``) that were given, as a sorted hashable
    tuple for make_backend(**options)."""
    from kinema4d_core.registry import options_from_args

    taken, _ = options_from_args(args, backend or args.backend)
    return tuple(sorted((k, str(v) if isinstance(v, Path) else v) for k, v in taken.items()))


def check_backend_args(args: argparse.Namespace, backend: str | None = None) -> None:
    """Refuse, before any episode runs, options that the backend does not take and a backend
    without its required options (otherwise every episode would fail with the same error)."""
    from kinema4d_core.registry import backend_spec, options_from_args

    name = backend or args.backend
    taken, ignored = options_from_args(args, name)
    if ignored:
        flags = ", ".join("--" + k for k in ignored)
        raise InputError(f"{flags} {'does' if len(ignored) == 1 else 'do'} not apply to --backend {name}",
                         field="--backend", fix=f"drop {flags} or pick a backend that takes it")
    missing = backend_spec(name).missing(taken)
    if missing:
        flags = " ".join(f"--{o.cli_flag} {o.name.upper()}" for o in missing)
        raise InputError(f"backend {name} needs the model", field="--backend",
                         fix=f"pass {flags}, or use --backend static-scene")


def add_executor_args(p: argparse.ArgumentParser) -> None:
    """Where the episodes run: ``--executor local`` (default, this process) or ``ray``
    (``kinema4d_core.executors``), shared by replay and evaluate."""
    g = p.add_argument_group("executor (where the episodes run; see docs/batch-evaluation.md)")
    g.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: one after another in this process (default, needs no Ray); ray: on a Ray "
                        "cluster, one model replica per worker, episodes as tasks, a dead worker replaced "
                        "and its episode rerun")
    g.add_argument("--address", default=None,
                   help="ray: address HOST:PORT of an existing cluster (`ray start --head` printed it); "
                        "default: start a private cluster on 127.0.0.1 for this run")
    g.add_argument("--workers", type=int, default=1,
                   help="ray: worker actors = model replicas running at once (default 1)")
    g.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="G",
                   help="ray: GPUs each worker reserves (default 0; a 14B kinema4d replica needs 1, or 0.5 to share "
                        "a 141 GB GPU; see docs/batch-evaluation.md)")
    g.add_argument("--cpus-per-worker", type=float, default=1.0, metavar="C",
                   help="ray: CPUs each worker reserves (default 1)")
    g.add_argument("--node-ip-address", default="127.0.0.1",
                   help="ray: this host's address in the cluster (default 127.0.0.1, loopback only; on a "
                        "multi-node cluster this host's cluster-network address)")


def executor_from_args(args: argparse.Namespace):  # -> LocalExecutor | RayExecutor
    """The executor the flags ask for; ray-only flags without ``--executor ray`` are refused."""
    from kinema4d_core.executors import make_executor

    if args.executor == "local":
        given = [f for f, v, d in (("--address", args.address, None), ("--workers", args.workers, 1),
                                   ("--gpus-per-worker", args.gpus_per_worker, 0.0),
                                   ("--cpus-per-worker", args.cpus_per_worker, 1.0),
                                   ("--node-ip-address", args.node_ip_address, "127.0.0.1")) if v != d]
        if given:
            raise InputError(f"{', '.join(given)} only apply to the Ray executor", field=given[0],
                             fix="add --executor ray, or drop them")
    return make_executor(args.executor, address=args.address, workers=args.workers,
                         gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
                         node_ip_address=args.node_ip_address)


def register(subparsers: argparse._SubParsersAction) -> None:
    from kinema4d_core.bags import BagTopics

    p = subparsers.add_parser("replay", help="simulate the episodes of recorded bags offline",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bags", nargs="+", type=Path,
                   help="rosbag2 folders (split bags: the folder with all its files) or .db3/.mcap files; "
                        "a ROS 1 .bag must be converted first (rosbags-convert --src X.bag --dst X_ros2)")
    p.add_argument("--robot", required=True, help="robot config name or yaml (e.g. panda)")
    p.add_argument("--calibration", required=True, type=Path, help="camera calibration YAML")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    add_backend_args(p)
    p.add_argument("--joint-topic", default=BagTopics.joint,
                   help="sensor_msgs/JointState topic (default: %(default)s)")
    p.add_argument("--image-topic", default=BagTopics.image,
                   help="sensor_msgs/Image or CompressedImage topic (default: %(default)s)")
    p.add_argument("--camera-info-topic", default=BagTopics.camera_info,
                   help="sensor_msgs/CameraInfo topic, checked against the calibration; '' for none "
                        "(default: %(default)s)")
    p.add_argument("--depth-topic", default=BagTopics.depth,
                   help="optional depth Image (32FC1 m / 16UC1 mm): geometry GT (default: none)")
    p.add_argument("--episodes-by", default="all",
                   help="gap:SECONDS | marker:TOPIC | ranges:FILE | all (default: whole bag)")
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="max |camera stamp - joint stamp| in seconds for alignment (default 0.05)")
    p.add_argument("--rescale-to-stream", action="store_true",
                   help="accept camera images of another size than the calibration by rescaling the calibration's "
                        "K to them (same aspect ratio); without it such a bag is refused, never stretched")
    p.add_argument("--no-bag", action="store_true", help="do not write the rollout as a bag")
    p.add_argument("--bag-storage", default="mcap", choices=["mcap", "sqlite3"])
    p.add_argument("--retry-failed", action="store_true", help="rerun episodes that failed before")
    add_executor_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kinema4d_core.bags import BagTopics
    from kinema4d_core.episodes import parse_episodes_by
    from kinema4d_core.evaluation import BagJobProcessor, PipelineConfig, bag_jobs, pipeline_inputs, run_batch, with_inputs
    from kinema4d_core.resources import Resources

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    if args.frames < 2:
        raise InputError(f"{args.frames} frames", field="--frames", fix="use at least 2 (49 for Kinema4D)")
    check_backend_args(args)
    executor = executor_from_args(args)
    if not args.calibration.is_file():
        raise InputError(f"{args.calibration} does not exist", field="--calibration",
                         fix="pass a calibration YAML (see `kinema4d calibrate`)")
    split = parse_episodes_by(args.episodes_by)
    marker = split.value if split.kind == "marker" else None
    topics = BagTopics(joint=args.joint_topic, image=args.image_topic, camera_info=args.camera_info_topic or None,
                       depth=args.depth_topic, marker=marker)
    cfg = PipelineConfig(robot=args.robot, calibration=str(args.calibration), backend=args.backend,
                         backend_options=backend_options(args), n_frames=args.frames, seed=args.seed,
                         steps=args.steps, write_bag=not args.no_bag, bag_storage=args.bag_storage,
                         rescale_to_stream=args.rescale_to_stream)
    resources = Resources()   # the bags and the model, loaded once for every episode
    jobs, bag_failures = bag_jobs([str(b) for b in args.bags], topics, split, tolerance=args.tolerance,
                                  n_frames=args.frames, resources=resources)
    jobs = with_inputs(jobs, pipeline_inputs(cfg))   # fingerprints: a rerun recomputes what changed
    extra = {"bag_failures": bag_failures, "backend": args.backend, "robot": args.robot,
             "calibration": str(args.calibration), "frames": args.frames}
    report = run_batch(jobs, args.out, BagJobProcessor(topics, cfg, resources), executor=executor,
                       retry_failed=args.retry_failed, progress=not args.quiet, extra_report=extra)
    counts = report["counts"]
    print(summary_text(report, bag_failures, args.out / "report.json"))
    return 0 if not bag_failures and counts.get("failed", 0) == 0 and jobs else 1


def summary_text(report: dict, bag_failures: list[dict], report_path: Path) -> str:
    """The terminal summary: counts, then every unreadable bag and failed episode with its reason."""
    counts = report.get("counts", {})
    lines = [f"replay: {counts.get('ok', 0)} ok, {counts.get('failed', 0)} failed episodes, "
             f"{len(bag_failures)} unreadable bags -> {report_path}"]
    for f in bag_failures:
        lines.append(f"  unreadable bag {f['source']}: {f['reason']}")
    for e in report.get("episodes", []):
        if e.get("status") not in ("ok", None):
            lines.append(f"  failed episode {e['name']} ({e.get('source', '?')}): {e.get('reason')}")
    return "\n".join(lines)
