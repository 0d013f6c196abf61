"""``kinema4d make-tiny-checkpoint DIR``: a tiny random Kinema4D checkpoint in the real layouts.

Writes DIR/base (Wan I2V diffusers folder at toy sizes), DIR/kinema4d_ckpt and
DIR/kinema4d_pmcond_ckpt, for CPU tests and demos of ``kinema4d simulate`` (48 x 96 per modality).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("make-tiny-checkpoint", help="write a tiny random Kinema4D checkpoint (CPU tests)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, metavar="DIR", help="output folder (created; files are replaced atomically)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kinema4d_core.model.config import TINY_ARM
    from kinema4d_core.model.tiny import make_tiny_checkpoint

    out = make_tiny_checkpoint(args.out, seed=args.seed)
    print(f"tiny checkpoint written to {out}: --base {out / 'base'} --checkpoint {out} "
          f"(images {TINY_ARM.width}x{TINY_ARM.height} per modality, {TINY_ARM.num_frames} frames)")
    return 0
