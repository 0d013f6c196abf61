"""`kinema4d-ros bringup` process handling: a stop signal at any stage, or a node that dies, stops
every node promptly (they run in their own sessions, so only the runner can stop them)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.ros.rosproc import executable, wait_for

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def _node_pids(text: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"started (\S+)\s+pid (\d+)", text)}


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie awaiting its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class Runner:
    """`kinema4d-ros bringup sim ...` in its own session, stdout+stderr in a file."""

    def __init__(self, ros_env: dict[str, str], tmp_path: Path, *extra: str):
        self.out = tmp_path / "runner.out"
        self.runs = tmp_path / "runs"
        self._file = open(self.out, "wb")
        self.proc = subprocess.Popen(
            [executable("kinema4d-ros"), "bringup", "sim", "--run-dir", str(self.runs),
             "--domain-id", ros_env["ROS_DOMAIN_ID"], "--log-dir", str(tmp_path / "logs"), *extra],
            env=ros_env, stdout=self._file, stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_for_line(self, needle: str, timeout: float) -> str:
        return wait_for(lambda: (lambda t: t if needle in t else "")(self.text()), timeout,
                        f"'{needle}' from the runner")

    def cleanup(self) -> None:
        """Kill the runner and whatever node it started that is still running (test failed)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in _node_pids(self.text()).values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self._file.close()


def test_sigterm_to_the_runner_stops_every_node(ros_env, tmp_path):
    runner = Runner(ros_env, tmp_path, "--keep-running")
    try:
        text = runner.wait_for_line("graph running", 120)
        pids = _node_pids(text)
        assert len(pids) == 5 and all(_alive(p) for p in pids.values()), text
        runner.proc.send_signal(signal.SIGTERM)
        runner.proc.wait(30)
        assert "stopping nodes" in runner.text()
        assert [n for n, p in pids.items() if _alive(p)] == [], runner.text()
    finally:
        runner.cleanup()


def test_nodes_do_not_outlive_a_runner_killed_with_sigkill(ros_env, tmp_path):
    """SIGKILL leaves the runner no chance to clean up: the nodes get SIGTERM from the kernel
    (parent-death signal) and exit instead of staying on the ROS graph as orphans."""
    runner = Runner(ros_env, tmp_path, "--keep-running")
    try:
        text = runner.wait_for_line("graph running", 120)
        pids = _node_pids(text)
        assert len(pids) == 5 and all(_alive(p) for p in pids.values()), text
        runner.proc.send_signal(signal.SIGKILL)
        runner.proc.wait(10)
        wait_for(lambda: not any(_alive(p) for p in pids.values()), 30,
                 f"the orphaned nodes to exit: {[n for n, p in pids.items() if _alive(p)]}")
    finally:
        for pid in pids.values() if "pids" in locals() else ():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        runner.cleanup()


def test_ctrl_c_during_the_episode_stops_at_once_without_a_run(ros_env, tmp_path):
    runner = Runner(ros_env, tmp_path)
    try:
        text = runner.wait_for_line("running one scripted episode", 120)
        pids = _node_pids(text)
        runner.proc.send_signal(signal.SIGINT)        # the episode takes >= 4 s (49 frames at 12 Hz)
        runner.proc.wait(20)
        text = runner.text()
        assert runner.proc.returncode == 130, text
        assert "simulating run" not in text, "the runner went on after Ctrl-C"
        assert not runner.runs.exists() or not [p for p in runner.runs.iterdir() if not p.name.startswith(".")]
        assert [n for n, p in pids.items() if _alive(p)] == [], text
    finally:
        runner.cleanup()


def test_a_node_dying_mid_episode_ends_the_bringup_naming_it(ros_env, tmp_path):
    runner = Runner(ros_env, tmp_path, "--timeout", "90")
    try:
        text = runner.wait_for_line("running one scripted episode", 120)
        pids = _node_pids(text)
        os.kill(pids["sim_world_node"], signal.SIGKILL)
        runner.proc.wait(30)                           # not the 90 s service timeout
        text = runner.text()
        assert runner.proc.returncode == 1, text
        assert "sim_world_node exited" in text and "sim_world/run_episode" in text, text
        assert [n for n, p in pids.items() if _alive(p)] == [], text
    finally:
        runner.cleanup()
