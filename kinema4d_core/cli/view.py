"""``kinema4d view ROLLOUT_DIR --out FILE.rrd``: a rerun recording of a rollout (no RViz needed).

Time-indexed generated point clouds (camera frame, metres, coloured), generated RGB, the camera
frustum at its calibrated pose and, when the folder has them, the robot pointmap
(robot_pointmap.npz from `kinema4d project`) and ground-truth RGB (ground_truth.npz from
`kinema4d replay`). Open the file with `rerun FILE.rrd`.
"""

from __future__ import annotations

import argparse
import types
from pathlib import Path

import numpy as np

from kinema4d_core.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("view", help="write a rerun .rrd recording of a rollout",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rollout_dir", type=Path, help="folder with rollout.npz")
    p.add_argument("--out", required=True, type=Path, help="output .rrd file")
    p.add_argument("--max-points", type=int, default=30000, help="points per frame (subsampled)")
    p.set_defaults(func=run)


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def run(args: argparse.Namespace) -> int:
    from kinema4d_core.viewer import read_rrd_summary, write_rollout_rrd

    npz = args.rollout_dir / "rollout.npz"
    if not npz.is_file():
        raise InputError(f"{npz} does not exist", field="ROLLOUT_DIR",
                         fix="pass a folder written by `kinema4d simulate` or `kinema4d replay`")
    if args.out.suffix != ".rrd":
        raise InputError(f"{args.out} does not end in .rrd", field="--out", fix="name the file FILE.rrd")
    data = _load(npz)
    missing = [k for k in ("rgb", "pointmap", "K", "T_base_camera") if k not in data]
    if missing:
        raise InputError(f"rollout.npz lacks {missing}", field="rollout.npz", fix="rewrite it with save_rollout")
    rollout = types.SimpleNamespace(rgb=data["rgb"], pointmap=data["pointmap"], K=data["K"],
                                    T_base_camera=data["T_base_camera"])
    robot_pm = robot_mask = gt_rgb = None
    cond = args.rollout_dir / "robot_pointmap.npz"
    if cond.is_file():
        c = _load(cond)
        if "pointmap" in c and c["pointmap"].shape[:3] == data["rgb"].shape[:3]:
            robot_pm, robot_mask = c["pointmap"], c.get("mask")
    gt = args.rollout_dir / "ground_truth.npz"
    if gt.is_file():
        gt_rgb = _load(gt)["rgb"]
    write_rollout_rrd(args.out, rollout, robot_pointmap=robot_pm, robot_mask=robot_mask,
                      ground_truth_rgb=gt_rgb, max_points=args.max_points)
    summary = read_rrd_summary(args.out)
    print(f"view: wrote {args.out} ({len(data['rgb'])} frames, entities: {', '.join(sorted(summary))}); "
          f"open it with `rerun {args.out}`")
    return 0
