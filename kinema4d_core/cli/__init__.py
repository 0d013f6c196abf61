"""``kinema4d`` command line: one sub-command per module in this package.

Each sub-command module defines ``register(subparsers)`` which adds its parser and sets
``func=run`` where ``run(args) -> int``. Errors derived from ``Kinema4DError`` are printed as
one clear line and exit with status 2; nothing partial is written (outputs are staged).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from kinema4d_core.errors import Kinema4DError

# Sub-command modules, in --help order. A module missing here is simply not offered.
SUBCOMMANDS = [
    "project",
    "simulate",
    "make_tiny_checkpoint",
    "calibrate",
    "replay",
    "evaluate",
    "view",
    "train",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kinema4d",
        description="Kinema4D tools: robot pointmaps from actions, 4D simulation with the Kinema4D "
                    "model, calibration, offline replay and policy evaluation. "
                    "Run `kinema4d <command> --help` for each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"kinema4d_core.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"kinema4d_core.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except Kinema4DError as exc:
        print(f"kinema4d {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kinema4d {args.command}: interrupted; no partial output was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
