"""Peak resident memory of `kinema4d replay` against the size of the bag it replays (prints
figures; asserts nothing). Replay streams a bag one message at a time (first pass: stamps and
joint states; second pass: only the selected camera frames), so the peak must stay flat as the
bag grows, not grow linearly.

For each size a synthetic bag is written (streamed to disk: uncompressed 480x720 rgb8 frames at
30 Hz, CameraInfo per frame, Panda joint states at 100 Hz), replayed in a child process with the
static-scene backend, its peak RSS (VmHWM of the child) printed, and the bag deleted.

    PYTHONPATH=. .venv/bin/python bench/bag_memory.py                       # 0.25 0.5 1 2 GB
    PYTHONPATH=. .venv/bin/python bench/bag_memory.py --sizes 1 20 --storage mcap   # the 20 GB case
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CALIBRATION = REPO / "calibration" / "sim_camera.yaml"

CHILD = """
import json, sys
from kinema4d_core.cli import main
rc = main(sys.argv[2:])
hwm = [int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]
with open(sys.argv[1], 'w') as fh:
    json.dump({'rc': rc, 'peak_rss_bytes': hwm}, fh)
"""


def write_large_bag(path: str | os.PathLike, size_bytes: float, *, storage: str = "mcap", rate_hz: float = 30.0,
                    seed: int = 0) -> dict:
    """Write a bag of about ``size_bytes`` to ``path``, one message at a time (never more than a
    frame in memory): uncompressed rgb8 frames at the sim calibration's size (480x720) at
    ``rate_hz``, a CameraInfo per frame and Panda joint states (home + slow swings) at 100 Hz,
    starting at t = 100 s. Returns {frames, seconds (recording length), bytes (on disk)}."""
    from kinema4d_core import bags as B
    from kinema4d_core.camera import load_calibration
    from kinema4d_core.robot import load_robot

    cam = load_calibration(CALIBRATION)
    robot = load_robot("panda")
    h, w = cam.height, cam.width
    n_frames = max(int(np.ceil(size_bytes / (h * w * 3))), 2)
    base = np.random.default_rng(seed).integers(0, 256, (h, w + 64, 3), dtype=np.uint8)  # incompressible
    t0, dt_j = 100.0, 0.01
    t_joint = t0
    with B.BagWriter(path, storage=storage) as bag:
        for k in range(n_frames):
            t = t0 + k / rate_hz
            while t_joint <= t + 0.02:
                q = robot.home() + 0.05 * np.sin(t_joint + np.arange(robot.n_joints))
                q = np.clip(q, robot.lower, robot.upper)
                bag.write("/joint_states", t_joint, B.joint_state_msg(t_joint, robot.joint_names, q))
                t_joint += dt_j
            off = k % 64
            bag.write("/camera/image_raw", t, B.image_msg(t, np.ascontiguousarray(base[:, off:off + w]), "cam"))
            bag.write("/camera/camera_info", t, B.camera_info_msg(t, cam.K, w, h, "cam"))
    on_disk = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    return {"frames": n_frames, "seconds": n_frames / rate_hz, "bytes": on_disk}


def replay_peak_rss(bag: str | os.PathLike, out: str | os.PathLike, *, frames: int = 8, with_bag: bool = False,
                    extra: tuple[str, ...] = ()) -> dict:
    """Replay ``bag`` (static-scene, sim calibration; the rollout bag only ``with_bag``) in a child
    process; returns {rc, peak_rss_bytes (the child's VmHWM), seconds}."""
    result = Path(tempfile.mkdtemp(prefix="bagmem-")) / "result.json"
    argv = [sys.executable, "-c", CHILD, str(result), "replay", str(bag), "--robot", "panda",
            "--calibration", str(CALIBRATION), "--out", str(out), "--frames", str(frames),
            *(() if with_bag else ("--no-bag",)), "--quiet", *extra]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.monotonic()
    subprocess.run(argv, env=env, check=True, cwd=REPO)
    seconds = time.monotonic() - start
    data = json.loads(result.read_text())
    shutil.rmtree(result.parent, ignore_errors=True)
    return {**data, "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0], help="bag sizes in GB")
    ap.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    ap.add_argument("--frames", type=int, default=49, help="frames per episode (default 49)")
    ap.add_argument("--dir", type=Path, default=None, help="where the bags are written (default: a temp folder)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bag-memory-", dir=args.dir))
    print(f"load average {os.getloadavg()[0]:.1f}; storage {args.storage}; {args.frames} frames per episode")
    print(f"{'bag GB':>8} {'frames':>7} {'write s':>8} {'replay s':>9} {'peak RSS MB':>12} {'RSS / bag':>10}")
    try:
        for gb in args.sizes:
            bag = work / f"bag_{gb:g}"
            t = time.monotonic()
            info = write_large_bag(bag, gb * 1e9, storage=args.storage)
            t_write = time.monotonic() - t
            r = replay_peak_rss(bag, work / f"out_{gb:g}", frames=args.frames)
            print(f"{info['bytes'] / 1e9:8.2f} {info['frames']:7d} {t_write:8.1f} {r['seconds']:9.1f} "
                  f"{r['peak_rss_bytes'] / 1e6:12.0f} {r['peak_rss_bytes'] / info['bytes']:10.3f}"
                  + ("" if r["rc"] == 0 else f"  (replay exit status {r['rc']})"), flush=True)
            shutil.rmtree(bag, ignore_errors=True)
            shutil.rmtree(work / f"out_{gb:g}", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
