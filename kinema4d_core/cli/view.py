"""``kinema4d view ROLLOUT_DIR --out FILE.rrd | --serve [--port P]``: 4D viewing of a rollout
without RViz, as a rerun recording.

Time-indexed generated point clouds (camera frame, metres, coloured), generated RGB, the camera
frustum at its calibrated pose and, when the folder has them, the robot pointmap
(robot_pointmap.npz from `kinema4d project`) and ground-truth RGB (ground_truth.npz from
`kinema4d replay`).

--out FILE.rrd   write the recording; open it with `rerun FILE.rrd`.
--serve          serve rerun's web viewer (bundled in rerun-sdk, no internet needed) with the
                 recording on 127.0.0.1 only and print the URL to open in a browser; runs until
                 Ctrl-C. --port picks the HTTP port (default 9090, 0 = any free port),
                 --grpc-port the port the viewer fetches the recording from (default: free).
                 Loopback only: from another machine, forward both ports (ssh -L).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

from kinema4d_core.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("view", help="a rerun recording of a rollout (.rrd file or served to a browser)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rollout_dir", type=Path, help="folder with rollout.npz")
    p.add_argument("--out", type=Path, help="output .rrd file (required unless --serve)")
    p.add_argument("--serve", action="store_true", help="serve the web viewer on 127.0.0.1 until Ctrl-C")
    p.add_argument("--port", type=int, default=9090, help="--serve: HTTP port of the web viewer (0: free port)")
    p.add_argument("--grpc-port", type=int, default=0, help="--serve: port of the recording's gRPC proxy (0: free)")
    p.add_argument("--max-points", type=int, default=30000, help="points per frame (subsampled)")
    p.set_defaults(func=run)


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def write_recording(rollout_dir: Path, out: Path, max_points: int) -> tuple[int, dict[str, int]]:
    """Write the .rrd of a rollout folder; returns (frames, entity -> rows)."""
    from kinema4d_core.viewer import read_rrd_summary, write_rollout_rrd

    npz = rollout_dir / "rollout.npz"
    if not npz.is_file():
        raise InputError(f"{npz} does not exist", field="ROLLOUT_DIR",
                         fix="pass a folder written by `kinema4d simulate` or `kinema4d replay`")
    data = _load(npz)
    missing = [k for k in ("rgb", "pointmap", "K", "T_base_camera") if k not in data]
    if missing:
        raise InputError(f"rollout.npz lacks {missing}", field="rollout.npz", fix="rewrite it with save_rollout")
    rollout = types.SimpleNamespace(rgb=data["rgb"], pointmap=data["pointmap"], K=data["K"],
                                    T_base_camera=data["T_base_camera"])
    robot_pm = robot_mask = gt_rgb = None
    cond = rollout_dir / "robot_pointmap.npz"
    if cond.is_file():
        c = _load(cond)
        if "pointmap" in c and c["pointmap"].shape[:3] == data["rgb"].shape[:3]:
            robot_pm, robot_mask = c["pointmap"], c.get("mask")
    gt = rollout_dir / "ground_truth.npz"
    if gt.is_file():
        gt_rgb = _load(gt)["rgb"]
    write_rollout_rrd(out, rollout, robot_pointmap=robot_pm, robot_mask=robot_mask,
                      ground_truth_rgb=gt_rgb, max_points=max_points)
    return len(data["rgb"]), read_rrd_summary(out)


def run(args: argparse.Namespace) -> int:
    if args.out is None and not args.serve:
        raise InputError("nothing to do", field="--out", fix="pass --out FILE.rrd and/or --serve")
    if args.out is not None and args.out.suffix != ".rrd":
        raise InputError(f"{args.out} does not end in .rrd", field="--out", fix="name the file FILE.rrd")
    if not (args.rollout_dir / "rollout.npz").is_file():
        raise InputError(f"{args.rollout_dir / 'rollout.npz'} does not exist", field="ROLLOUT_DIR",
                         fix="pass a folder written by `kinema4d simulate` or `kinema4d replay`")
    with tempfile.TemporaryDirectory(prefix="kinema4d-view-") as tmp:
        out = args.out if args.out is not None else Path(tmp) / "recording.rrd"
        frames, summary = write_recording(args.rollout_dir, out, args.max_points)
        if not args.serve:
            print(f"view: wrote {out} ({frames} frames, entities: {', '.join(sorted(summary))}); "
                  f"open it with `rerun {out}`")
            return 0
        return _serve(out, frames, args.port, args.grpc_port)


def _serve(rrd: Path, frames: int, port: int, grpc_port: int) -> int:
    from kinema4d_core.viewer import serve_rrd

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with serve_rrd(rrd, web_port=port, grpc_port=grpc_port) as viewer:
            print(f"view: serving {frames} frames on 127.0.0.1 only - open {viewer.url}  (Ctrl-C stops)",
                  flush=True)
            try:
                code = viewer.wait()
            except KeyboardInterrupt:
                print("view: stopped", file=sys.stderr)
                return 0
            raise InputError(f"the rerun web viewer exited with status {code}: {viewer.log_tail(600).strip()}",
                             field="rerun --serve-web", fix="see its log above")
    finally:
        signal.signal(signal.SIGTERM, previous)
