"""Success detection, success-rate tables and the resumable batch runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from kinema4d_core import evaluation as V
from kinema4d_core.errors import InputError


def _scene(T=6, h=40, w=40, lift_per_frame=0.0):
    """Top-down camera 1 m above a table at z=0 (base frame), a 6 cm cube whose top face is seen
    in the centre, rising by ``lift_per_frame``; the robot covers the left columns."""
    K = np.array([[40.0, 0, (w - 1) / 2], [0, 40.0, (h - 1) / 2], [0, 0, 1]])
    T_bc = np.eye(4)
    T_bc[:3, :3] = np.diag([1.0, -1.0, -1.0])  # optical z looks down -Z of the base
    T_bc[2, 3] = 1.0
    depth = np.ones((T, h, w))
    mask = np.zeros((T, h, w), bool)
    mask[:, :, :6] = True
    depth[:, :, :6] = 0.5
    for t in range(T):
        depth[t, 15:25, 15:25] = 1.0 - 0.06 - lift_per_frame * t
    from kinema4d_core.metrics import depth_to_pointmap

    return depth_to_pointmap(depth, K), mask, T_bc


def test_object_points_exclude_the_table_and_the_robot():
    pm, mask, T_bc = _scene()
    crit = V.SuccessCriteria()
    obj = V.segment_object_points(pm[0], mask[0], T_bc, crit)
    assert len(obj) == 100
    np.testing.assert_allclose(obj[:, 2], 0.06, atol=1e-9)
    assert len(V.segment_object_points(pm[0], None, T_bc, crit)) > 100  # the robot counts without its mask


def test_lift_is_detected_only_when_the_object_rises_enough():
    crit = V.SuccessCriteria(task="lift", lift_height=0.05)
    still = V.detect_success(*_scene(), crit)
    assert not still.success and still.frames_with_object == 6
    np.testing.assert_allclose(still.lift, 0.0, atol=1e-9)
    lifted = V.detect_success(*_scene(lift_per_frame=0.015), crit)  # rises 7.5 cm over 6 frames
    assert lifted.success and np.nanmax(lifted.lift) == pytest.approx(0.075)
    assert not V.detect_success(*_scene(lift_per_frame=0.008), crit).success  # 4 cm < 5 cm


def test_place_checks_the_final_centroid_against_the_region():
    pm, mask, T_bc = _scene()
    inside = V.detect_success(pm, mask, T_bc, V.SuccessCriteria(task="place", target_region=(-0.1, 0.1, -0.1, 0.1)))
    outside = V.detect_success(pm, mask, T_bc, V.SuccessCriteria(task="place", target_region=(0.2, 0.4, -0.1, 0.1)))
    assert inside.success and not outside.success
    assert inside.final_xy == pytest.approx((0.0, 0.0), abs=0.01)
    with pytest.raises(InputError, match="target region"):
        V.SuccessCriteria(task="place")


def test_wilson_interval_known_values():
    lo, hi = V.wilson_interval(5, 10)
    assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert V.wilson_interval(0, 10)[0] == 0.0 and V.wilson_interval(0, 0) == (0.0, 1.0)
    assert V.wilson_interval(50, 100)[1] - V.wilson_interval(50, 100)[0] < hi - lo


def test_success_table_and_policy_correlation():
    outs = []
    for pol, (g, s) in {"a": (0.2, 0.3), "b": (0.5, 0.6), "c": (0.8, 0.7)}.items():
        for i in range(10):
            outs.append(V.Outcome("lift", pol, f"{pol}{i}", i < g * 10, i < s * 10))
    rows = V.success_table(outs)
    assert [r["scenario"] for r in rows] == ["lift", "all"]
    assert rows[0]["gt_rate"] == pytest.approx(0.5) and rows[0]["sim_rate"] == pytest.approx(16 / 30)
    assert rows[0]["difference"] == pytest.approx(16 / 30 - 0.5)
    corr = V.policy_correlation(outs)
    assert corr["pearson"] > 0.9 and corr["spearman"] == pytest.approx(1.0)
    md = V.table_markdown(rows, corr)
    assert "| lift | 30 | 0.50 [" in md and "Spearman 1.000" in md
    few = V.policy_correlation(outs[:10])
    assert few["pearson"].startswith("unavailable")


RUNNER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from kinema4d_core.evaluation import Job, run_batch
    from kinema4d_core.io import StagedOutput
    from kinema4d_core.errors import InputError

    out, log = Path(sys.argv[1]), Path(sys.argv[2])
    def process(job, d):
        with open(log, "a") as fh:
            fh.write(job.name + "\\n")
        if job.name == "ep_2":
            raise InputError("no overlap", field="episode ep_2")
        time.sleep(0.4)
        with StagedOutput(d) as st:
            st.path("result.txt").write_text(job.name)
        return {"value": int(job.name[3:])}
    jobs = [Job(f"ep_{i}", "test", "src") for i in range(8)]
    run_batch(jobs, out, process, progress=False)
""")


def test_batch_resumes_after_a_kill_without_recomputing(tmp_path):
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    out, log = tmp_path / "out", tmp_path / "computed.log"
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(log)], env=env)
    deadline = time.monotonic() + 60
    while not (out / "ep_3" / V.MARKER).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = log.read_text().split()
    done_before = {p.parent.name for p in out.glob(f"*/{V.MARKER}")}
    assert {"ep_0", "ep_1", "ep_2", "ep_3"} <= done_before and len(done_before) < 8
    assert not (out / V.REPORT).exists()
    subprocess.run([sys.executable, str(script), str(out), str(log)], env=env, check=True, timeout=60)
    second = log.read_text().split()[len(first):]
    # only the jobs without a completion marker ran again; each completed job ran exactly once
    assert set(second) == {f"ep_{i}" for i in range(8)} - done_before
    for name in done_before:
        assert (first + second).count(name) == 1
    report = json.loads((out / V.REPORT).read_text())
    assert report["counts"] == {"ok": 7, "failed": 1}
    failed = [e for e in report["episodes"] if e["status"] == "failed"]
    assert failed[0]["name"] == "ep_2" and "no overlap" in failed[0]["reason"]
    assert all((out / f"ep_{i}" / "result.txt").read_text() == f"ep_{i}" for i in range(8) if i != 2)


def test_duplicate_job_names_are_refused(tmp_path):
    jobs = [V.Job("a", "x", "s"), V.Job("a", "x", "s")]
    with pytest.raises(InputError, match="repeat"):
        V.run_batch(jobs, tmp_path, lambda j, d: {}, progress=False)


def test_bar_chart_is_a_png(tmp_path):
    from PIL import Image

    V.bar_chart_png(tmp_path / "p.png", ["a", "b"], {"gt": [0.5, None], "sim": [0.7, 0.2]}, "t")
    img = np.asarray(Image.open(tmp_path / "p.png"))
    assert img.shape == (400, 720, 3) and (img != 255).any()


def test_scale_intrinsics_scales_about_pixel_centres_like_the_camera_model():
    from kinema4d_core.camera import CameraModel

    cam = CameraModel(width=640, height=480, K=np.array([[500.0, 0, 319.5], [0, 510.0, 239.5], [0, 0, 1]]),
                      D=np.zeros(5), distortion_model="plumb_bob", T_base_camera=np.eye(4))
    np.testing.assert_allclose(V.scale_intrinsics(cam.K, 0.5, 0.5), cam.resized(240, 320).K)
    np.testing.assert_allclose(V.scale_intrinsics(cam.K, 360 / 640, 240 / 480), cam.resized(240, 360).K)
    # the centre of a 640 px row (319.5) stays the centre of the 320 px row (159.5), not 159.75
    assert V.scale_intrinsics(cam.K, 0.5, 0.5)[0, 2] == pytest.approx(159.5)
