"""Benchmark of the learned mini model (kinema4d-mini) against the static-scene baseline on
HELD-OUT sim episodes: object Chamfer and final object position error (metres), success
agreement and the Table-3 policy evaluation (GT vs predicted success per scripted policy of
different quality, Pearson / Spearman across policies with bootstrap CIs), and the CPU rollout
time. Prints the figures; asserts nothing.

    .venv/bin/python bench/mini_model.py [--checkpoint runs/mini/export] [--n 4] [--first-seed 1000]
        [--out runs/bench_mini] [--policies scripted,aim-2cm,aim-4cm,aim-8cm] [--threads 2]

The mini model was trained on scripted seeds 0..23 of each task (config/training/mini_cpu.yaml);
the default --first-seed 1000 keeps every benchmark episode out of that set. Resumable: rerun
with the same --out to reuse finished episodes (a new --checkpoint needs a new --out).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")


def rollout_seconds(checkpoint: str | None, repeat: int = 3) -> dict[str, float]:
    """Load time and per-rollout time of the mini model on one sim episode (CPU, default steps)."""
    from kinema4d_core.registry import make_backend
    from kinema4d_core.service import EpisodeRequest, simulate_episode
    from kinema4d_core.simworld.world import SimWorld
    from kinema4d_core.trajectory import JointTrajectory

    opts = {} if checkpoint is None else {"checkpoint_dir": checkpoint}
    with SimWorld() as world:
        ep = world.run_episode("push", n_frames=49, seed=999)
        camera = world.camera_model()
    from kinema4d_core.robot import load_robot

    traj = JointTrajectory(tuple(ep.joint_names), ep.joint_positions, ep.stamps)
    req = EpisodeRequest(first_frame=ep.rgb[0], robot=load_robot("panda"), camera=camera, trajectory=traj,
                         frame_stamps=ep.stamps, rescale_to_stream=False, stream_source="bench")
    t = time.perf_counter()
    backend = make_backend("kinema4d-mini", **opts)
    backend.load()
    load = time.perf_counter() - t
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        simulate_episode(req, backend)
        times.append(time.perf_counter() - t)
    return {"load_s": load, "rollout_s": min(times), "rollout_median_s": sorted(times)[len(times) // 2]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench_mini"))
    ap.add_argument("--n", type=int, default=4, help="held-out episodes per task and policy")
    ap.add_argument("--first-seed", type=int, default=1000, help="first sim seed (training used 0..23)")
    ap.add_argument("--policies", default="scripted,aim-2cm,aim-4cm,aim-8cm")
    ap.add_argument("--tasks", default="push,pick_place")
    ap.add_argument("--checkpoint", default=None,
                    help="export of scripts/train_mini.sh (default: the shipped models/kinema4d-mini)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--skip-speed", action="store_true", help="skip the rollout timing")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from kinema4d_core.evaluation import BenchmarkConfig, comparison_markdown, run_backend_comparison

    mini_opts = () if args.checkpoint is None else (("checkpoint_dir", args.checkpoint),)
    cfg = BenchmarkConfig(n=args.n, tasks=tuple(args.tasks.split(",")),
                          backends=(("static-scene", ()), ("kinema4d-mini", mini_opts)),
                          policies=tuple(args.policies.split(",")), first_seed=args.first_seed, with_lpips=False)
    t = time.perf_counter()
    comparison = run_backend_comparison(args.out, cfg, progress=True)
    print(comparison_markdown(comparison))
    print(f"\n[bench] comparison of {len(cfg.policies) * len(cfg.tasks) * cfg.n} held-out episodes in "
          f"{time.perf_counter() - t:.0f} s; {args.out / 'comparison.json'}")
    if not args.skip_speed:
        speed = rollout_seconds(args.checkpoint)
        print(f"[bench] kinema4d-mini on {torch.get_num_threads()} CPU thread(s): load {speed['load_s']:.1f} s, "
              f"one 49-frame rollout (robot projection + model, default steps) {speed['rollout_s']:.1f} s "
              f"(median {speed['rollout_median_s']:.1f} s)")
        (args.out / "speed.json").write_text(json.dumps(speed, indent=2))


if __name__ == "__main__":
    main()
