"""Helpers for the ROS integration tests: real node processes and an in-test rclpy client.

- ``NodeProcess``: one installed executable started with the test's ``ros_env`` (loopback
  discovery, own domain id, own log dir); stdout+stderr go to a file that the test can read;
  ``stop()`` sends SIGINT and escalates to SIGTERM / SIGKILL.
- ``RosClient``: an rclpy context + node in the test process on the same domain, spun by a
  background executor thread, with small wait helpers.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

VENV_BIN = Path(sys.executable).parent


def executable(name: str) -> str:
    """Path of an installed console script (the venv's bin first)."""
    path = VENV_BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed: run scripts/setup_env.sh")
    return found


class NodeProcess:
    """A node executable running as a separate process (see module docstring)."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path, ros_args: list[str] | None = None,
                 args: list[str] | None = None):
        self.name = name
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "wb")
        cmd = [executable(name), *(args or [])]
        if ros_args:
            cmd += ["--ros-args", *ros_args]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def output(self) -> str:
        if not self._log.closed:        # still running; after stop() the file is complete
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT, then SIGTERM, then SIGKILL; returns the exit code."""
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            if self.proc.poll() is not None:
                break
            self.proc.send_signal(sig)
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        self._log.close()
        return self.proc.returncode


class RosClient:
    """An rclpy node in the test process, on the domain of ``env``, spun in a background thread."""

    def __init__(self, env: dict[str, str], name: str = "test_client"):
        from kinema4d_ros.ros_env import apply_env

        apply_env(env)                  # the test chose this environment explicitly (loopback)
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import MultiThreadedExecutor

        self.context = Context()
        rclpy.init(context=self.context, domain_id=int(env["ROS_DOMAIN_ID"]))
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # shutdown races end the spin
            pass

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self.context.try_shutdown()
        self._thread.join(timeout=3.0)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, period: float = 0.05) -> Any:
    """Poll ``predicate`` until truthy; raise AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def publish_until(publisher: Any, make_msg: Callable[[], Any], predicate: Callable[[], Any], timeout: float,
                  what: str, period: float = 0.5) -> Any:
    """Publish ``make_msg()`` every ``period`` s until ``predicate()`` is truthy (the first
    message after discovery can be lost while the reader side is still matching)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publisher.publish(make_msg())
        try:
            return wait_for(predicate, min(period, max(0.0, deadline - time.monotonic())), what)
        except AssertionError:
            continue
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop_group(proc: "subprocess.Popen") -> None:
    """Stop a process started with ``start_new_session=True`` like Ctrl-C would (SIGINT to its
    group), then SIGKILL after 30 s."""
    import os
    import signal
    import subprocess

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
