"""``kinema4d evaluate``: metrics and policy-success tables of a replay / batch folder.

``kinema4d evaluate DIR`` reads ``DIR/report.json`` and each completed episode's rollout.npz and
ground_truth.npz (or ``--robo4d ROOT`` episodes of the same name) and writes
``DIR/evaluation.json``, ``DIR/evaluation.md`` and ``DIR/plots/*.png``: PSNR, SSIM, LPIPS (only
with weights; otherwise "unavailable: reason"), temporal RGB error, Chamfer L1/L2, F-score@0.01,
temporal Chamfer and flow error, and - with ``--task`` - success on ground truth vs simulation
per scenario with Wilson intervals and the correlation across policies.

``kinema4d evaluate DIR --sim-benchmark N --robot panda`` first runs N simulated-world
episodes per task with the scripted policy through the chosen backend (resumable), then
evaluates them.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from kinema4d_core.cli.replay import add_backend_args, backend_options
from kinema4d_core.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="metrics and success tables of a replay folder",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=Path, help="folder written by `kinema4d replay` (or the output of --sim-benchmark)")
    p.add_argument("--task", choices=["lift", "place"], help="success criterion on the 4D output")
    p.add_argument("--table-height", type=float, default=0.0, help="table plane z in the base frame (m)")
    p.add_argument("--lift-height", type=float, default=0.05, help="lift success: object bottom above table (m)")
    p.add_argument("--region", type=float, nargs=4, metavar=("XMIN", "XMAX", "YMIN", "YMAX"),
                   help="place success: target region in the base frame (m)")
    p.add_argument("--workspace", type=float, nargs=4, metavar=("XMIN", "XMAX", "YMIN", "YMAX"),
                   help="only points inside this base-frame box count as the object (m)")
    p.add_argument("--robo4d", type=Path, help="Robo4D folder with ground truth for episodes of the same name")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    p.add_argument("--sim-benchmark", type=int, metavar="N", help="first run N sim episodes per task")
    p.add_argument("--tasks", nargs="+", default=["pick_place", "push"],
                   help="sim benchmark tasks of the sim world (default: pick_place push)")
    p.add_argument("--robot", default="panda", help="sim benchmark robot config (default panda)")
    add_backend_args(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kinema4d_core.evaluation import (PipelineConfig, SuccessCriteria, evaluate_directory, process_sim_job,
                                          run_batch, sim_jobs)

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    task = args.task or ("lift" if args.sim_benchmark else None)
    criteria = None
    if task:
        criteria = SuccessCriteria(task=task, table_height=args.table_height, lift_height=args.lift_height,
                                   target_region=tuple(args.region) if args.region else None,
                                   workspace=tuple(args.workspace) if args.workspace else None)
    if args.sim_benchmark is not None:
        if args.sim_benchmark < 1:
            raise InputError(f"{args.sim_benchmark}", field="--sim-benchmark", fix="use N >= 1")
        cfg = PipelineConfig(robot=args.robot, calibration="", backend=args.backend,
                             backend_options=backend_options(args), n_frames=args.frames, seed=args.seed,
                             steps=args.steps, write_bag=False)
        jobs = sim_jobs(args.sim_benchmark, args.tasks, n_frames=args.frames)
        run_batch(jobs, args.dir, lambda job, d: process_sim_job(job, d, cfg), progress=not args.quiet,
                  extra_report={"backend": args.backend, "robot": args.robot, "sim_benchmark": args.sim_benchmark})
    result = evaluate_directory(args.dir, criteria, robo4d_root=args.robo4d, with_lpips=not args.no_lpips)
    s = result["summary"]
    fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
    print(f"evaluate: {s['evaluated']}/{s['episodes']} episodes; PSNR {fmt(s['video.psnr'])} dB, "
          f"SSIM {fmt(s['video.ssim'])}, CD-L1 {fmt(s['geometry.cd_l1'])} m, F@0.01 {fmt(s['geometry.fscore'])} "
          f"-> {args.dir / 'evaluation.md'}")
    return 0
