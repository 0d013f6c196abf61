"""Study throughput on Ray: the same batch of episode jobs (kinema4d-tiny on recorded sim
episodes) on a private local Ray cluster on 127.0.0.1 with 1 worker and with 2 workers, and with
the local executor for reference. Prints episodes per second and the 2-worker / 1-worker ratio;
asserts nothing.

    MUJOCO_GL=egl .venv/bin/python bench/ray_study.py [--episodes 4] [--steps 2] [--backend kinema4d-tiny]

The episodes are recorded once (local executor), then each run processes all of them into a
fresh folder. Each Ray run includes starting its actors and loading the model once per actor
(that is what a study pays), not starting the cluster. On a machine with 2 shared cores expect a
modest ratio: the two workers compete with each other and with the driver for the same cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

from kinema4d_core import evaluation as V  # noqa: E402
from kinema4d_core.executors import LocalExecutor, RayExecutor, init_private_cluster  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=4, help="episodes per task (default 4; 2 tasks)")
    ap.add_argument("--steps", type=int, default=2, help="sampling steps (default 2)")
    ap.add_argument("--backend", default="kinema4d-tiny")
    ap.add_argument("--out", default=None, help="work folder (default: a temp folder)")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="k4d-bench-ray-"))
    size = (48, 96)
    jobs = V.with_inputs(V.sim_jobs(args.episodes, ["pick_place", "push"]), {"recording": {"size": list(size)}})
    episodes_dir = out / V.SIM_EPISODES_DIR
    t = time.perf_counter()
    V.run_batch(jobs, episodes_dir, V.RecordSimProcessor(size), progress=False)
    print(f"recorded {len(jobs)} sim episodes in {time.perf_counter() - t:.1f} s")
    from kinema4d_core.simworld.calibration import sim_camera_model
    from kinema4d_core.simworld.scene import SimConfig

    camera = sim_camera_model(SimConfig()).resized(*size)
    cfg = V.PipelineConfig(robot="panda", calibration="", backend=args.backend, steps=args.steps, write_bag=False)
    bjobs = V.with_inputs(jobs, V.pipeline_inputs(cfg))

    def run(name: str, executor: object) -> float:
        t0 = time.perf_counter()
        V.run_batch(bjobs, out / name, V.RecordedSimProcessor(episodes_dir, cfg, camera), progress=False,
                    executor=executor)
        dt = time.perf_counter() - t0
        print(f"{name:>9}: {len(bjobs)} episodes in {dt:6.1f} s = {len(bjobs) / dt:.2f} episodes/s")
        return dt

    local = run("local", LocalExecutor())
    shutdown = init_private_cluster(num_cpus=2)   # one private 127.0.0.1 cluster for both runs
    try:
        one = run("ray x1", RayExecutor(workers=1))
        two = run("ray x2", RayExecutor(workers=2))
    finally:
        shutdown()
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    print(f"throughput ratio ray 2 workers / 1 worker: {one / two:.2f}x; ray 1 worker / local: {local / one:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
