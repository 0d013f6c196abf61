"""Backend comparison on the simulated world: the same scripted-policy episodes through every
backend, one table (GT vs simulated success with Wilson intervals, PSNR, SSIM, CD-L1, CD-L2,
F-score@0.01, temporal metrics, seconds per episode). Prints the table; asserts nothing.

    MUJOCO_GL=egl .venv/bin/python bench/evaluation.py [--episodes 2] [--backends static-scene,kinema4d-tiny]
        [--steps 2] [--out runs/bench_evaluation] [--base WAN --checkpoint CKPT  (adds kinema4d)]

Small defaults (2 episodes per task, the tiny model at 2 sampling steps, 48x96 because the tiny
model generates that size) so that it runs in a couple of minutes on a CPU. Rerunning with the
same --out resumes; use a fresh --out for other settings.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("MUJOCO_GL", "egl")

from kinema4d_core.cli import main as cli  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=2, help="episodes per task (default 2)")
    ap.add_argument("--tasks", nargs="+", default=["pick_place", "push"])
    ap.add_argument("--backends", default="static-scene,kinema4d-tiny")
    ap.add_argument("--steps", type=int, default=2, help="sampling steps of the model backends (default 2)")
    ap.add_argument("--out", default="runs/bench_evaluation")
    ap.add_argument("--base", help="Wan2.1 base folder: adds the real kinema4d backend with --checkpoint")
    ap.add_argument("--checkpoint", help="Kinema4D checkpoint folder")
    ap.add_argument("--device", help="torch device for the model backends")
    args = ap.parse_args()
    backends = args.backends
    extra = []
    if args.base and args.checkpoint:
        if "kinema4d" not in backends.split(","):
            backends += ",kinema4d"
        extra += ["--base", args.base, "--checkpoint", args.checkpoint]
    if args.device:
        extra += ["--device", args.device]
    t = time.perf_counter()
    code = cli(["evaluate", args.out, "--sim-benchmark", str(args.episodes), "--tasks", *args.tasks,
                "--backends", backends, "--steps", str(args.steps), "--no-lpips", "--quiet", *extra])
    print(f"bench/evaluation.py: {time.perf_counter() - t:.1f} s in total")
    return code


if __name__ == "__main__":
    sys.exit(main())
