"""Resume: every job records a fingerprint of its inputs; a rerun recomputes exactly the jobs
whose inputs changed and says so, retries a failure whose cause was fixed without
--retry-failed, and cleans up what a killed run left behind."""

from __future__ import annotations

import json
import logging
import pickle

import numpy as np
import pytest

from kinema4d_core.cli import main
from kinema4d_core.evaluation import MARKER, Job, job_fingerprint, read_marker, with_inputs

from .replay_helpers import write_recording

H, W = 48, 72


@pytest.fixture
def setup(tmp_path):
    from kinema4d_core.camera import load_calibration, save_calibration
    from kinema4d_core.robot import load_robot

    cam = load_calibration("calibration/sim_camera.yaml").resized(H, W)
    calib = tmp_path / "camera.yaml"
    save_calibration(cam, calib)
    robot = load_robot("panda")
    bag = write_recording(tmp_path / "rec", storage="mcap", episodes=[(100.0, 8), (110.0, 8)], h=H, w=W, K=cam.K,
                          joint_names=robot.joint_names, home=robot.home())
    return tmp_path, calib, cam, bag


def _replay(calib, bag, out, *extra):
    return main(["replay", str(bag), "--robot", "panda", "--calibration", str(calib), "--out", str(out),
                 "--frames", "5", "--episodes-by", "gap:2.0", "--no-bag", "--quiet", *extra])


def _markers(out):
    return {name: (out / name / MARKER).read_bytes() for name in ("episode_000", "episode_001")}


def test_unchanged_inputs_are_not_recomputed_and_changed_ones_are_with_the_reason(setup, caplog):
    root, calib, cam, bag = setup
    out = root / "out"
    assert _replay(calib, bag, out) == 0
    first = _markers(out)
    assert json.loads(first["episode_000"])["inputs"]["calibration"]
    assert _replay(calib, bag, out) == 0
    assert _markers(out) == first                                    # nothing recomputed
    with caplog.at_level(logging.WARNING, logger="kinema4d.evaluation"):
        assert _replay(calib, bag, out, "--seed", "7") == 0
    for name in ("episode_000", "episode_001"):
        assert read_marker(out / name)["recomputed_because"] == ["pipeline"]
        assert f"episode {name}: its inputs changed since it last ran (pipeline): recomputing" in caplog.text


def test_a_failure_whose_cause_was_fixed_is_retried_without_retry_failed(setup):
    from kinema4d_core.camera import save_calibration

    root, calib, cam, bag = setup
    from dataclasses import replace

    K = cam.K.copy()
    K[0, 0] *= 1.3                                                   # disagrees with the bag's CameraInfo
    wrong = replace(cam, K=K, P=np.hstack([K, np.zeros((3, 1))]))
    save_calibration(wrong, calib)
    out = root / "out"
    assert _replay(calib, bag, out) == 1
    failed = _markers(out)
    assert "disagree" in read_marker(out / "episode_000")["reason"]
    assert _replay(calib, bag, out) == 1
    assert _markers(out) == failed                                   # same inputs: not retried
    save_calibration(cam, calib)                                     # the fix
    assert _replay(calib, bag, out) == 0
    marker = read_marker(out / "episode_000")
    assert marker["status"] == "ok" and marker["recomputed_because"] == ["calibration"]


def test_a_killed_run_leaves_no_staging_folders_after_the_next_run(setup):
    root, calib, cam, bag = setup
    out = root / "out"
    assert _replay(calib, bag, out) == 0
    # what a SIGKILL during StagedOutput / atomic_path leaves behind
    for d in (out / ".staging-abc", out / "episode_000" / ".staging-def", out / "episode_001" / "points" / ".staging-x"):
        d.mkdir(parents=True)
        (d / "rollout.npz").write_bytes(b"partial")
    (out / "episode_000" / ".rollout.npz.k3j.tmp.npz").write_bytes(b"partial")
    (out / "episode_001" / MARKER).unlink()                          # killed before its marker
    assert _replay(calib, bag, out) == 0
    assert not list(out.rglob(".staging-*")) and not list(out.rglob(".*.tmp*"))
    assert read_marker(out / "episode_001")["status"] == "ok"


def test_jobs_are_picklable_data_and_the_fingerprint_covers_their_inputs():
    job = with_inputs([Job("e", "bag", "/b", {"start": 1.0})], {"calibration": "abc", "backend": {"name": "x"}})[0]
    assert pickle.loads(pickle.dumps(job)) == job
    assert job_fingerprint(job) == job_fingerprint(pickle.loads(pickle.dumps(job)))
    other = with_inputs([job], {"calibration": "abd"})[0]
    assert job_fingerprint(other) != job_fingerprint(job)
    assert np.all([isinstance(v, str) for _, v in job.inputs])
