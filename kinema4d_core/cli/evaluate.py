"""``kinema4d evaluate``: metrics and policy-success tables of a replay / batch folder.

``kinema4d evaluate DIR`` reads ``DIR/report.json`` and each completed episode's rollout.npz and
ground_truth.npz (or ``--robo4d ROOT`` episodes of the same name) and writes
``DIR/evaluation.json``, ``DIR/evaluation.md`` and ``DIR/plots/*.png``: PSNR, SSIM, LPIPS (only
with weights; otherwise "unavailable: reason"), temporal RGB error, Chamfer L1/L2, F-score@0.01,
temporal Chamfer and flow error, and - with ``--task`` - success on ground truth vs simulation
per scenario with Wilson intervals and the correlation across policies.

``kinema4d evaluate DIR --sim-benchmark N --robot panda`` first runs N simulated-world
episodes per task with the scripted policy through the chosen backend (resumable), then
evaluates them. ``--policies scripted,aim-2cm,aim-4cm`` runs N episodes per task and policy
instead (policies of decreasing quality: the script plans from a cube position off by 2 / 4 cm;
aim-8cm is worse still).

``kinema4d evaluate OUT --sim-benchmark N --backends static-scene,kinema4d-tiny[,kinema4d]``
records the N episodes per task once (OUT/sim_episodes), runs the same episodes through every
listed backend (OUT/backends/<name>, each evaluated) and writes one comparison table,
OUT/comparison.md and OUT/comparison.json: per backend and task the GT (sim physics) vs
simulated success rate with Wilson intervals, episode-level agreement, PSNR, SSIM, CD-L1, CD-L2,
F-score@0.01, temporal metrics, object Chamfer and final object error and seconds per episode;
then the policy-evaluation table (Table 3): per backend, task and policy the GT vs predicted
success rate and agreement, and across policies the Pearson and Spearman correlation of the
rates with bootstrap 95 % intervals (needs >= 3 policies, e.g. --policies
scripted,aim-2cm,aim-4cm). static-scene is marked as the baseline. kinema4d needs --base
and --checkpoint. Resumable; a failing episode or backend fails alone.

``--executor ray`` runs the episodes of --sim-benchmark (and of every backend of a comparison)
on Ray: ``--workers N`` model replicas, each reserving ``--gpus-per-worker G`` and
``--cpus-per-worker C``; a private cluster on 127.0.0.1 unless ``--address HOST:PORT`` names an
existing one. Same outputs and tables as the local executor; resumable across executors.
Example (4 GPUs, one 14B replica each):
  kinema4d evaluate OUT --sim-benchmark 50 --backend kinema4d --base B --checkpoint C \
      --executor ray --workers 4 --gpus-per-worker 1
See docs/batch-evaluation.md (multi-GPU box, multi-node cluster, GPUs per replica).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from kinema4d_core.cli.replay import (add_backend_args, add_executor_args, backend_options, check_backend_args,
                                      executor_from_args)
from kinema4d_core.errors import InputError
from kinema4d_core.success import MIN_OBJECT_PIXELS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="metrics and success tables of a replay folder",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=Path, help="folder written by `kinema4d replay` (or the output of --sim-benchmark)")
    p.add_argument("--task", choices=["lift", "place", "lift+place"], help="success criterion on the 4D output")
    p.add_argument("--table-height", type=float, default=0.0, help="table plane z in the base frame (m)")
    p.add_argument("--lift-height", type=float, default=0.05,
                   help="lift success: rise of the object's median height above its first seen height (m)")
    p.add_argument("--region", type=float, nargs=4, metavar=("XMIN", "XMAX", "YMIN", "YMAX"),
                   help="place success: target region in the base frame (m)")
    p.add_argument("--workspace", type=float, nargs=4, metavar=("XMIN", "XMAX", "YMIN", "YMAX"),
                   help="only points inside this base-frame box count as the object (m)")
    p.add_argument("--min-object-pixels", type=int, default=None,
                   help="smallest object (connected pixels outside the dilated robot masks) that counts "
                        "(default %d)" % MIN_OBJECT_PIXELS)
    p.add_argument("--robo4d", type=Path, help="Robo4D folder with ground truth for episodes of the same name")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    p.add_argument("--sim-benchmark", type=int, metavar="N", help="first run N sim episodes per task")
    p.add_argument("--tasks", nargs="+", default=["pick_place", "push"],
                   help="sim benchmark tasks of the sim world (default: pick_place push)")
    p.add_argument("--robot", default="panda", help="sim benchmark robot config (default panda)")
    p.add_argument("--policies", default="scripted",
                   help="comma-separated sim benchmark policies, N episodes each: scripted (default), aim-2cm, "
                        "aim-4cm, aim-8cm (the script plans from a cube position off by that much)")
    p.add_argument("--first-seed", type=int, default=0,
                   help="sim benchmark seeds are FIRST..FIRST+N-1 (default 0); start past a model's training "
                        "seeds (its config's data.sim.first_seed + episodes_per_task) for held-out episodes")
    p.add_argument("--backends", help="comma-separated backends to compare on the same sim episodes, "
                                      "e.g. static-scene,kinema4d-tiny,kinema4d (with --sim-benchmark)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                   help="comparison image size (default: the model backends' size, else 240 360)")
    p.add_argument("--retry-failed", action="store_true", help="rerun episodes that failed before")
    add_backend_args(p)
    add_executor_args(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kinema4d_core.evaluation import (PipelineConfig, SimJobProcessor, SuccessCriteria, evaluate_directory,
                                          pipeline_inputs, run_batch, sim_jobs, with_inputs)

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    executor = executor_from_args(args)
    if args.executor == "ray" and args.sim_benchmark is None:
        raise InputError("--executor ray runs episodes; evaluating a finished folder runs none",
                         field="--executor", fix="add --sim-benchmark N, or drop --executor ray")
    policies = _policies(args)
    if args.sim_benchmark is None and args.first_seed != 0:
        raise InputError("--first-seed chooses the sim benchmark's seeds", field="--first-seed",
                         fix="add --sim-benchmark N, or drop --first-seed")
    if args.backends is not None:
        return _compare(args, executor, policies)
    if args.size is not None:
        raise InputError("--size only applies to a comparison", field="--size", fix="add --backends, or drop --size")
    task = args.task
    criteria = None
    by_scenario = None
    if args.sim_benchmark is not None and not task:
        from kinema4d_core.evaluation import sim_success_criteria

        by_scenario = sim_success_criteria(args.tasks)  # each sim task's own judgement, on the 4D output
    if task:
        criteria = SuccessCriteria(task=task, table_height=args.table_height, lift_height=args.lift_height,
                                   target_region=tuple(args.region) if args.region else None,
                                   workspace=tuple(args.workspace) if args.workspace else None,
                                   min_object_pixels=args.min_object_pixels or MIN_OBJECT_PIXELS)
    if args.sim_benchmark is not None:
        if args.sim_benchmark < 1:
            raise InputError(f"{args.sim_benchmark}", field="--sim-benchmark", fix="use N >= 1")
        check_backend_args(args)
        cfg = PipelineConfig(robot=args.robot, calibration="", backend=args.backend,
                             backend_options=backend_options(args), n_frames=args.frames, seed=args.seed,
                             steps=args.steps, write_bag=False)
        jobs = with_inputs(sim_jobs(args.sim_benchmark, args.tasks, policy=policies, n_frames=args.frames,
                                    first_seed=args.first_seed), pipeline_inputs(cfg))
        # the model is loaded once per process that runs episodes (this one, or each Ray worker)
        run_batch(jobs, args.dir, SimJobProcessor(cfg), progress=not args.quiet, executor=executor,
                  retry_failed=args.retry_failed,
                  extra_report={"backend": args.backend, "robot": args.robot, "sim_benchmark": args.sim_benchmark,
                                "policies": list(policies)})
    result = evaluate_directory(args.dir, criteria, robo4d_root=args.robo4d, with_lpips=not args.no_lpips,
                                criteria_by_scenario=by_scenario)
    s = result["summary"]
    fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
    print(f"evaluate: {s['evaluated']}/{s['episodes']} episodes; PSNR {fmt(s['video.psnr'])} dB, "
          f"SSIM {fmt(s['video.ssim'])}, CD-L1 {fmt(s['geometry.cd_l1'])} m, F@0.01 {fmt(s['geometry.fscore'])} "
          f"-> {args.dir / 'evaluation.md'}")
    return 0


def _policies(args: argparse.Namespace) -> tuple[str, ...]:
    """The --policies list, checked (only with --sim-benchmark: a finished folder runs no policy)."""
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    if args.sim_benchmark is None:
        if names != ["scripted"]:
            raise InputError("--policies chooses the sim benchmark's policies", field="--policies",
                             fix="add --sim-benchmark N, or drop --policies")
        return ("scripted",)
    from kinema4d_core.simworld.tasks import POLICIES

    unknown = [n for n in names if n not in POLICIES]
    if not names or unknown or len(set(names)) != len(names):
        raise InputError(f"{args.policies!r}" + (f" (unknown: {unknown})" if unknown else ""), field="--policies",
                         fix=f"a comma-separated list of distinct policies from {list(POLICIES)}")
    return tuple(names)


def _compare(args: argparse.Namespace, executor: object = None, policies: tuple[str, ...] = ("scripted",)) -> int:
    from kinema4d_core.evaluation import BenchmarkConfig, run_backend_comparison
    from kinema4d_core.registry import backend_names, backend_spec, options_from_args

    if args.sim_benchmark is None:
        raise InputError("--backends compares backends on simulated episodes", field="--backends",
                         fix="add --sim-benchmark N")
    if args.task or args.robo4d:
        raise InputError("--task/--robo4d do not apply to a comparison (each sim task has its own criterion)",
                         field="--backends", fix="drop --task/--robo4d")
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    unknown = [n for n in names if n not in backend_names()]
    if not names or unknown or len(set(names)) != len(names):
        raise InputError(f"{args.backends!r}", field="--backends",
                         fix=f"a comma-separated list of distinct backends from {list(backend_names())}")
    for name in names:
        taken, _ = options_from_args(args, name)
        missing = backend_spec(name).missing(taken)
        if missing:
            raise InputError(f"backend {name} needs the model", field="--backends",
                             fix=f"pass {' '.join('--' + o.cli_flag for o in missing)}, or leave {name} out")
    backends = tuple((n, backend_options(args, n)) for n in names)   # the options each backend takes
    cfg = BenchmarkConfig(n=args.sim_benchmark, tasks=tuple(args.tasks), backends=backends,
                          size=tuple(args.size) if args.size else None, n_frames=args.frames, seed=args.seed,
                          steps=args.steps, robot=args.robot, with_lpips=not args.no_lpips,
                          retry_failed=args.retry_failed, policies=policies, first_seed=args.first_seed)
    comparison = run_backend_comparison(args.dir, cfg, progress=not args.quiet, executor=executor)
    from kinema4d_core.evaluation import comparison_markdown

    print(comparison_markdown(comparison))
    print(f"evaluate: comparison of {len(names)} backends -> {args.dir / 'comparison.md'} "
          f"and {args.dir / 'comparison.json'}")
    return 0
