"""`kinema4d-ros bringup sim`, end to end, as a user runs it (real processes, loopback DDS)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from tests.ros.rosproc import executable

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_bringup_sim_writes_a_complete_run_and_exits_zero(ros_env, tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.run([executable("kinema4d-ros"), "bringup", "sim", "--run-dir", str(runs),
                           "--domain-id", ros_env["ROS_DOMAIN_ID"], "--log-dir", str(tmp_path / "logs")],
                          env=ros_env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    summary = lines[-2] if lines[-1].startswith("[bringup] stopping") else lines[-1]
    assert summary.startswith("episode success=") and "backend=static-scene" in summary and "frames=49" in summary
    run_dirs = [p for p in runs.iterdir() if not p.name.startswith(".")]
    assert len(run_dirs) == 1 and str(run_dirs[0]) in proc.stdout
    with np.load(run_dirs[0] / "rollout.npz") as z:
        assert z["rgb"].shape == (49, 480, 720, 3)
        assert z["pointmap"].shape == (49, 480, 720, 3)
    for name in ("rgb.mp4", "pointmap.mp4", "side_by_side.mp4", "run.json"):
        assert (run_dirs[0] / name).is_file()
    # every node was stopped (no orphan keeps the domain busy)
    assert "stopping nodes" in proc.stdout
