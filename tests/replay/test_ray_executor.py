"""Distributed batch evaluation on a real Ray cluster: a head and a second node started as
separate processes on 127.0.0.1 (usage stats off, no dashboard). A comparison study of the
tiny model and the static-scene baseline (12 jobs: 4 recordings, 8 backend episodes) runs on 2
workers through ``kinema4d evaluate --executor ray --address``; one worker is killed with
SIGKILL in the middle of an episode. Nothing completed is lost or recomputed, the killed episode
is rerun, no partial output remains, every socket is on loopback, and the local executor writes
the same tables (checked on the push half of the study, to keep the test short)."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from kinema4d_core import evaluation as V
from kinema4d_core.cli import main

from .ray_cluster import LocalRayCluster

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="ray is not installed (pip install -r requirements/requirements.txt)")

ARGS = ["--sim-benchmark", "2", "--tasks", "pick_place", "push", "--backends", "static-scene,kinema4d-tiny",
        "--steps", "1", "--no-lpips", "--quiet"]


def _markers(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.glob("**/" + V.MARKER)}


def _listening_sockets(pids: set[int]) -> list[str]:
    """Local addresses of the TCP sockets (listening and connected) of ``pids`` (``ss -tanp``)."""
    out = subprocess.run(["ss", "-tanpH"], capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        if any(f"pid={p}," in line for p in pids):
            found.append(line.split()[3])
    return found


class _Killer(threading.Thread):
    """Kills one Ray worker with SIGKILL while it is inside a kinema4d-tiny episode (its process
    title is ``ray::EpisodeWorker.run`` and that episode's staging folder exists), and records
    which markers existed at that moment."""

    def __init__(self, cluster: LocalRayCluster, out: Path) -> None:
        super().__init__(daemon=True)
        self.cluster, self.out = cluster, out
        self.killed: int | None = None
        self.before: dict[Path, int] = {}
        self.in_flight: list[str] = []
        self.sockets: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        tiny = self.out / "backends" / "kinema4d-tiny"
        while not self.stop.is_set() and self.killed is None:
            busy = self.cluster.processes_titled("ray::EpisodeWorker.run")
            staging = list(tiny.glob(".staging-job-*")) if tiny.is_dir() else []
            if busy and staging:
                if not self.sockets:
                    self.sockets = _listening_sockets(self.cluster.pids())
                self.before = _markers(self.out)
                self.in_flight = [p.name for p in staging]
                os.kill(busy[0], signal.SIGKILL)
                self.killed = busy[0]
                return
            time.sleep(0.02)


def _rows(path: Path) -> list[dict]:
    rows = json.loads(path.read_text())["rows"]
    for r in rows:
        r.pop("seconds_per_episode", None)
    return rows


def _episodes(path: Path) -> list[dict]:
    return json.loads(path.read_text())["episodes"]


@needs_ray
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_study_on_a_two_node_ray_cluster_survives_a_killed_worker(tmp_path, caplog, monkeypatch):
    ray_out, local_out = tmp_path / "ray", tmp_path / "local"
    with LocalRayCluster(head_cpus=1, node_cpus=1) as cluster:
        for k, v in cluster.auth_env.items():      # the driver (this process) uses the cluster's token
            monkeypatch.setenv(k, v)
        killer = _Killer(cluster, ray_out)
        killer.start()
        with caplog.at_level(logging.WARNING, logger="kinema4d.evaluation"):
            assert main(["evaluate", str(ray_out), *ARGS, "--executor", "ray", "--address", cluster.address,
                         "--workers", "2", "--cpus-per-worker", "1"]) == 0
        killer.stop.set()
        killer.join(5)
        # every Ray socket of our cluster was bound to loopback
        assert killer.sockets, "no sockets seen"
        assert all(a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")) for a in killer.sockets), killer.sockets
    assert not cluster.left, f"cluster processes left running: {cluster.left}"
    assert killer.killed is not None, "no worker was caught inside an episode"
    assert any("its Ray worker died" in r.getMessage() for r in caplog.records)

    after = _markers(ray_out)
    # a study of 12 jobs: 4 recordings + 2 backends x 4 episodes, all completed
    assert len(after) == 12
    for m in after:
        assert json.loads(m.read_text())["status"] == "ok", m
    # what was done before the kill was neither lost nor recomputed
    assert killer.before and all(after[p] == t for p, t in killer.before.items())
    # the episode that was interrupted ran again and completed; no partial output is left
    rerun = [n.split("-")[2] for n in killer.in_flight]
    assert rerun and all((ray_out / "backends" / "kinema4d-tiny" / n / V.MARKER) in after for n in rerun)
    assert not list(ray_out.glob("**/.staging-*"))

    # the local executor on the same recordings (the push half, to keep the test short) writes the
    # same per-episode tables
    local_out.mkdir()
    shutil.copytree(ray_out / V.SIM_EPISODES_DIR, local_out / V.SIM_EPISODES_DIR)
    assert main(["evaluate", str(local_out), *ARGS[:2], "--tasks", "push", *ARGS[5:]]) == 0
    for b in ("static-scene", "kinema4d-tiny"):
        ray_ev = {e["name"]: e for e in _episodes(ray_out / "backends" / b / "evaluation.json")}
        local_ev = _episodes(local_out / "backends" / b / "evaluation.json")
        assert len(local_ev) == 2 and all(e == ray_ev[e["name"]] for e in local_ev)
    ray_rows = {(r["backend"], r["task"]): r for r in _rows(ray_out / "comparison.json")}
    for r in _rows(local_out / "comparison.json"):
        if r["task"] == "push":
            assert r == ray_rows[(r["backend"], "push")]


def test_jobs_and_processors_pickle_and_the_local_executor_needs_no_ray(tmp_path):
    import sys

    cfg = V.PipelineConfig(robot="panda", calibration="", write_bag=False)
    proc = V.SimJobProcessor(cfg)
    proc.resources.robot("panda")              # loaded things stay in this process
    copy = pickle.loads(pickle.dumps(proc))
    assert copy.cfg == cfg and copy.resources.held() == [] and proc.resources.held() == [("panda")]
    job = V.sim_jobs(1, ["push"])[0]
    assert pickle.loads(pickle.dumps(job)) == job
    code = ("import sys, kinema4d_core.evaluation as V, kinema4d_core.executors as E;"
            "from pathlib import Path;"
            f"V.run_batch([V.Job('a', 'x', 's')], Path({str(tmp_path)!r}), V.RecordSimProcessor((4, 4)), progress=False);"
            "assert 'ray' not in sys.modules, 'ray imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "a" / V.MARKER).read_text())["status"] == "failed"   # unknown sim task


def test_executor_arguments_are_checked(tmp_path):
    out = str(tmp_path / "x")
    assert main(["evaluate", out, "--sim-benchmark", "1", "--workers", "2"]) == 2           # needs --executor ray
    assert main(["evaluate", out, "--executor", "ray"]) == 2                                # runs no episodes
    assert main(["evaluate", out, "--sim-benchmark", "1", "--executor", "ray", "--workers", "0"]) == 2
    assert not (tmp_path / "x").exists()


@needs_ray
@pytest.mark.slow
def test_private_cluster_from_the_cli_and_resume_with_the_local_executor(tmp_path):
    """`--executor ray` without --address: a private 127.0.0.1 cluster for the run (token auth in
    the environment, nothing under ~/.ray); the local executor then reuses every completed job."""
    out = tmp_path / "study"
    home_ray = Path.home() / ".ray" / "auth_token"
    had_token = home_ray.exists()
    args = ["evaluate", str(out), "--sim-benchmark", "1", "--tasks", "push", "--frames", "5", "--no-lpips", "--quiet"]
    assert main([*args, "--executor", "ray", "--workers", "1"]) == 0
    assert home_ray.exists() == had_token
    markers = _markers(out)
    assert len(markers) == 1 and json.loads(next(iter(markers)).read_text())["status"] == "ok"
    assert "RAY_AUTH_TOKEN" not in os.environ
    assert main(args) == 0
    assert _markers(out) == markers        # completed on Ray: never recomputed by the local executor
