"""A real local Ray cluster for tests: a head and a second node started with ``ray start --block``
as separate processes (each in its own process group), both on 127.0.0.1 only, usage stats off,
no dashboard, token authentication with a secret of this cluster (``auth_env``: the driver needs
it too), session files in a private temp folder. ``stop()`` ends exactly the processes it started
(their process groups), never other Ray processes of the host.

Why the second node starts through ``_WORKER_NODE``: with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
(what keeps 127.0.0.1 from being resolved to the host's network address, executors.LOOPBACK_ENV)
``ray start --address`` refuses to start a worker node ("multi-node clusters are not supported").
The wrapper lifts that refusal in the ``ray start`` command alone; address resolution and every
process it starts keep the loopback setting. A real multi-node cluster uses real addresses and
plain ``ray start`` (docs/batch-evaluation.md).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kinema4d_core.executors import LOOPBACK, new_auth_token, ray_env

_WORKER_NODE = """
import sys, types
import ray._private.ray_constants as rc
from ray.scripts import scripts
view = types.ModuleType("ray_constants_for_ray_start")
view.__dict__.update(rc.__dict__)
view.ENABLE_RAY_CLUSTER = True        # only the worker-node refusal of `ray start` reads this name
scripts.ray_constants = view
sys.argv[0] = "ray"
sys.exit(scripts.main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2:].startswith("Z")


class LocalRayCluster:
    """``head_cpus`` / ``node_cpus``: CPUs each node offers (0 for node_cpus: head only)."""

    def __init__(self, head_cpus: int = 1, node_cpus: int = 1) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="k4dray-", dir="/tmp")   # short: unix socket paths
        self.port = free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        self.auth_env = {k: v for k, v in ray_env(token=new_auth_token()).items() if k.startswith("RAY_AUTH")}
        self.env = {**os.environ, **ray_env(self.temp_dir), **self.auth_env}
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        self.head_cpus, self.node_cpus = head_cpus, node_cpus

    def _start(self, args: list[str], name: str, worker_node: bool = False) -> None:
        log = Path(self.temp_dir) / f"{name}.log"
        self.logs.append(log)
        cmd = [sys.executable, "-c", _WORKER_NODE] if worker_node else [ray_cli()]
        with open(log, "wb") as f:
            self.procs.append(subprocess.Popen([*cmd, "start", "--block", *args], env=self.env, stdout=f,
                                               stderr=subprocess.STDOUT, start_new_session=True))

    def start(self, timeout: float = 60.0) -> "LocalRayCluster":
        common = ["--node-ip-address", LOOPBACK, "--disable-usage-stats", "--object-store-memory", "80000000",
                  "--num-gpus", "0"]
        self._start(["--head", "--port", str(self.port), "--num-cpus", str(self.head_cpus),
                     "--include-dashboard=false", "--temp-dir", self.temp_dir, *common], "head")
        self._wait_nodes(1, timeout)
        if self.node_cpus:
            self._start(["--address", self.address, "--num-cpus", str(self.node_cpus), *common], "node",
                        worker_node=True)
            self._wait_nodes(2, timeout)
        return self

    def _wait_nodes(self, n: int, timeout: float) -> None:
        """Wait until the cluster has ``n`` live nodes (``ray status`` through the head's GCS)."""
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            for p, log in zip(self.procs, self.logs):
                if p.poll() is not None:
                    raise RuntimeError(f"ray start exited ({p.returncode}): {log.read_text()[-3000:]}")
            r = subprocess.run([ray_cli(), "status", "--address", self.address], env=self.env,
                               capture_output=True, text=True)
            if r.returncode == 0 and r.stdout.count("node_") >= n:
                return
            time.sleep(0.5)
        raise RuntimeError(f"ray cluster did not come up with {n} nodes: "
                           + " | ".join(log.read_text()[-2000:] for log in self.logs))

    def pids(self) -> set[int]:
        """Every live process of this cluster: the started ``ray start`` processes and all their
        descendants (Ray workers run in sessions of their own, so process groups do not find them)."""
        children: dict[int, list[int]] = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    stat = (d / "stat").read_text()
                except OSError:
                    continue
                fields = stat[stat.rindex(")") + 2:].split()
                if fields[0] != "Z":
                    children.setdefault(int(fields[1]), []).append(int(d.name))
        out: set[int] = set()
        todo = [p.pid for p in self.procs]
        while todo:
            pid = todo.pop()
            if pid not in out and Path(f"/proc/{pid}").exists():
                out.add(pid)
                todo.extend(children.get(pid, []))
        return out

    def processes_titled(self, prefix: str) -> list[int]:
        """Pids of this cluster's processes whose title (cmdline) starts with ``prefix``."""
        out = []
        for pid in self.pids():
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if title.startswith(prefix):
                out.append(pid)
        return out

    def stop(self) -> None:
        """End every process of this cluster: the whole tree is collected first (workers would be
        re-parented once their raylet is gone), then SIGTERM, then SIGKILL."""
        tree = self.pids()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            tree |= self.pids()
            for pid in tree:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            t_end = time.monotonic() + 5
            while time.monotonic() < t_end and any(Path(f"/proc/{pid}").exists() and not _zombie(pid) for pid in tree):
                time.sleep(0.1)
        for p in self.procs:
            p.wait(timeout=5)
        self.left = {pid for pid in tree if Path(f"/proc/{pid}").exists() and not _zombie(pid)}
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> "LocalRayCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
