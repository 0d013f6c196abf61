"""``kinema4d train CONFIG [--set key=value ...] [--resume]``: train or fine-tune Kinema4D.

Data (sim-world episodes, `kinema4d replay` output folders, Robo4D folders) -> latent cache (VAE +
CLIP once, resumable shards) -> flow matching on `accelerate` -> checkpoints, TensorBoard logs,
validation videos -> export in the released layout (pytorch_lora_weights.safetensors +
added_weights.safetensors), loadable by `kinema4d simulate`, the inference node and evaluation.

Modes (model.mode): finetune = LoRA (rank model.lora_rank) on to_q/to_k/to_v/to_out.0 + robot
layers + domain embeddings trainable, from a Wan base (+ optionally a released Kinema4D
checkpoint); scratch = every parameter trainable (small models, e.g. the tiny preset).

The same config runs on one CPU or many GPUs:
  kinema4d train config/training/tiny_cpu.yaml
  accelerate launch --config_file config/training/accelerate/ddp_4gpu.yaml -m kinema4d_core.cli train CONFIG
  scripts/train_cpu_ddp.sh 2 CONFIG     # N CPU processes, DDP over gloo on 127.0.0.1 only
Overrides use dotted keys, values parsed as YAML:
  --set optim.lr=1e-4 --set train.steps=200 --set model.base=/data/Wan2.1-I2V-14B-480P-Diffusers
Output folder (train.output_dir): checkpoints/, logs/ (tensorboard --logdir), validation/, export/.
An interrupted run continues with --resume (same step count and results as an uninterrupted run).
See docs/training.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train / fine-tune Kinema4D (accelerate; CPU to multi-GPU)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", type=Path, metavar="CONFIG", help="training YAML (see config/training/tiny_cpu.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=1e-4 (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest complete checkpoint in train.output_dir")
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from kinema4d_core.training.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    from kinema4d_core.training.trainer import train

    result = train(cfg, resume=args.resume)
    if not result.is_main_process:
        return 0
    print(f"trained {result.step} steps in {result.seconds:.0f} s"
          + (f"; exported {result.export_dir}" if result.export_dir else "")
          + (f"; last checkpoint {result.checkpoint}" if result.checkpoint else ""))
    return 0
