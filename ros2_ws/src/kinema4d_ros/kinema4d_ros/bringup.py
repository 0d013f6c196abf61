"""``kinema4d-ros bringup sim|real|replay``: start the node graph of graph.py as separate processes.

Environment (ros_env's two rules, printed at start): ``sim`` and ``replay`` (and ``real
--loopback``) give every process ``loopback_env`` (loopback-only discovery, the packaged Fast DDS
profile, one fresh ROS_DOMAIN_ID in 1..101 per bring-up unless ``--domain-id``); ``real`` gives
them ``user_env``: the user's ROS_DOMAIN_ID, discovery range, RMW and DDS profile, so the nodes
join the lab's graph. Logs go under the run's log folder. The runner waits until every node is up, prints
what it started, and stops everything cleanly on Ctrl-C, SIGTERM or SIGHUP (SIGINT to all, then
SIGTERM/SIGKILL after a timeout), at any stage: every wait checks for the interrupt and for a
node that exited, so neither leaves the runner waiting out ``--timeout``.

``sim`` without ``--keep-running`` is the one-shot demo: record/start -> sim_world/run_episode
-> record/stop -> wait for the inference result on kinema4d/run_done -> print the run folder and
a one-line summary -> exit 0. With ``--keep-running`` (and for real / replay) the graph stays up
until Ctrl-C (e.g. for RViz or Simulate goals).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from kinema4d_core.errors import ConfigError, Kinema4DError
from kinema4d_core.procs import die_with_parent
from kinema4d_ros import graph
from kinema4d_ros.ros_env import apply_env, describe_env, loopback_env, user_env

STOP_TIMEOUT_S = 10.0
#: Signals that stop the bring-up (the nodes run in their own sessions, so they get them from us).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(Exception):
    """Ctrl-C / SIGTERM / SIGHUP arrived while the runner was waiting on a stage."""


def _log(text: str) -> None:
    print(f"[bringup] {text}", flush=True)


class Graph:
    """The started node processes of one bring-up."""

    def __init__(self, specs: list[graph.NodeSpec], env: dict[str, str], log_dir: Path):
        self.specs, self.env, self.log_dir = specs, env, log_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self._files = []
        self.interrupted = threading.Event()     # set by the runner's signal handler

    def check(self, what: str = "") -> None:
        """Raise Interrupted after a stop signal, ConfigError (with its log tail) if a node exited."""
        if self.interrupted.is_set():
            raise Interrupted(what)
        dead = self.dead()
        if dead:
            during = f" while waiting for {what}" if what else ""
            raise ConfigError(f"{dead[0]} exited (code {self.procs[dead[0]].returncode}){during}:\n"
                              f"{self.tail(dead[0])}", field=dead[0], fix="see its log above")

    def start(self) -> None:
        from shutil import which

        bin_dir = Path(sys.executable).parent
        for spec in self.specs:
            exe = bin_dir / spec.executable
            path = str(exe) if exe.exists() else which(spec.executable)
            if not path:
                raise ConfigError(f"executable '{spec.executable}' not found", field="kinema4d_ros",
                                  fix="run scripts/setup_env.sh (installs the kinema4d_ros console scripts)")
            log = open(self.log_dir / f"{spec.name}.log", "wb")
            self._files.append(log)
            # own session (Ctrl-C reaches the runner only, which then stops nodes in order) and
            # SIGTERM when the runner dies, even by SIGKILL (no orphaned nodes on the ROS graph)
            self.procs[spec.name] = subprocess.Popen([path, *spec.ros_args()], env=self.env, stdout=log,
                                                     stderr=subprocess.STDOUT, start_new_session=True,
                                                     preexec_fn=die_with_parent())
            _log(f"started {spec.name:<18} pid {self.procs[spec.name].pid:<7} log {self.log_dir / (spec.name + '.log')}")

    def dead(self) -> list[str]:
        return [name for name, p in self.procs.items() if p.poll() is not None]

    def tail(self, name: str, lines: int = 15) -> str:
        path = self.log_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGINT to all at once, then SIGTERM / SIGKILL to whatever is left."""
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            alive = [p for p in self.procs.values() if p.poll() is None]
            if not alive:
                break
            for p in alive:
                p.send_signal(sig)
            deadline = time.monotonic() + wait
            for p in alive:
                try:
                    p.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for f in self._files:
            f.close()


class Client:
    """An rclpy node of the runner on the bring-up's domain (spun in a thread)."""

    def __init__(self, env: dict[str, str]):
        apply_env(env)
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import String

        from kinema4d_ros import qos

        self.context = Context()
        rclpy.init(context=self.context, domain_id=int(env.get("ROS_DOMAIN_ID") or 0))
        self.node = rclpy.create_node("kinema4d_bringup", context=self.context)
        self.done: list[dict] = []
        self.status: dict = {}
        self.node.create_subscription(String, "kinema4d/run_done", lambda m: self.done.append(json.loads(m.data)),
                                      qos.LATCHED)
        self.node.create_subscription(String, "kinema4d/inference/status",
                                      lambda m: self.status.update(json.loads(m.data)), qos.LATCHED)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - shutdown race
            pass

    def node_names(self) -> set[str]:
        return set(self.node.get_node_names())

    def call_trigger(self, name: str, timeout: float, poll=lambda: None) -> tuple[bool, str]:
        """Call the std_srvs/Trigger service ``name``; ``poll()`` runs while waiting and may raise
        (Graph.check: a stop signal or a node that exited ends the wait at once)."""
        from std_srvs.srv import Trigger

        client = self.node.create_client(Trigger, name)
        try:
            deadline = time.monotonic() + min(timeout, 30.0)
            while not client.service_is_ready():
                poll()
                if time.monotonic() > deadline:
                    raise ConfigError(f"service {name} is not available", field=name,
                                      fix="check the node logs printed above")
                time.sleep(0.05)
            future = client.call_async(Trigger.Request())
            deadline = time.monotonic() + timeout
            while not future.done():
                poll()
                if time.monotonic() > deadline:
                    raise ConfigError(f"service {name} did not answer in {timeout:.0f} s", field=name,
                                      fix="check the node logs")
                time.sleep(0.02)
            resp = future.result()
            return bool(resp.success), str(resp.message)
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self.context.try_shutdown()


def _wait(predicate, timeout: float, what: str, g: Graph) -> None:
    """Poll ``predicate`` until true; Interrupted / ConfigError from ``g.check()``, ConfigError on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        g.check(what)
        if predicate():
            return
        time.sleep(0.1)
    raise ConfigError(f"timed out after {timeout:.0f} s waiting for {what}", field="bringup",
                      fix="see the node logs; raise --timeout for slow model loads")


def run_sim_once(client: Client, g: Graph, timeout: float) -> int:
    """record/start -> run_episode -> record/stop -> wait run_done; print folder + summary."""
    _wait(lambda: client.status.get("has_image"), timeout, "the first camera frame at inference_node", g)
    ok, msg = client.call_trigger("kinema4d/record/start", 30, lambda: g.check("kinema4d/record/start"))
    if not ok:
        raise ConfigError(f"record/start failed: {msg}", field="kinema4d/record/start")
    _log("recording; running one scripted episode")
    ok, msg = client.call_trigger("sim_world/run_episode", timeout, lambda: g.check("sim_world/run_episode"))
    if not ok:
        raise ConfigError(f"sim_world/run_episode failed: {msg}", field="sim_world/run_episode")
    try:
        episode = json.loads(msg)
    except json.JSONDecodeError:
        episode = {"message": msg}
    ok, msg = client.call_trigger("kinema4d/record/stop", 30, lambda: g.check("kinema4d/record/stop"))
    if not ok:
        raise ConfigError(f"record/stop failed: {msg}", field="kinema4d/record/stop")
    run_id = json.loads(msg)["run_id"]
    _log(f"episode done (success={episode.get('success')}); simulating run {run_id}")
    box: dict = {}

    def finished() -> bool:
        box["r"] = next((d for d in client.done if d.get("run_id") == run_id), None)
        return box["r"] is not None

    _wait(finished, timeout, f"the inference result of run {run_id}", g)
    r = box["r"]
    if not r["success"]:
        _log(f"inference {r['status']}: {r['message']}")
        return 1
    print(r["output_dir"], flush=True)
    print(f"episode success={episode.get('success')} task={episode.get('task', '?')} frames={r['frames']} "
          f"backend={r['backend']} inference={r['duration_s']:.1f}s run={r['output_dir']}", flush=True)
    return 0


def bringup_env(mode: str, args: dict[str, str], log_dir: Path | None = None,
                base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every process of a bring-up (ros_env rule 1 or 2, see module docstring)."""
    domain = graph.domain_arg(mode, args)
    ros_log = None if log_dir is None else str(log_dir / "ros")
    if graph.uses_loopback(mode, args):
        return loopback_env(domain_id=domain, base=base, log_dir=ros_log)
    return user_env(domain_id=domain, base=base, log_dir=ros_log)


def bringup(mode: str, args: dict[str, str], *, keep_running: bool, timeout: float,
            log_dir: Path | None) -> int:
    graph.check_args(mode, args)
    specs = graph.nodes_for(mode, args)
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix=f"kinema4d-{mode}-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    env = bringup_env(mode, args, log_dir)
    rule = "loopback only, private domain" if graph.uses_loopback(mode, args) else "the user's ROS environment"
    _log(f"mode {mode}: {describe_env(env)} ({rule}); logs in {log_dir}")
    if graph.resolve_args(mode, args)["rviz"].lower() == "true":
        rviz_env = " ".join(f"{k}={env[k]}" for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE") if env.get(k))
        _log("rviz: not started by the runner (RViz2 is not installable from PyPI); on a ROS 2 install run "
             f"`rviz2 -d {graph.rviz_config()}` with {rviz_env or 'your ROS environment'}")
    g = Graph(specs, env, log_dir)
    # Ctrl-C, SIGTERM (kill, docker stop) and SIGHUP (terminal closed) all stop the nodes first:
    # they run in their own sessions, so without this they would outlive the runner.
    previous = {sig: signal.signal(sig, lambda *_: g.interrupted.set()) for sig in STOP_SIGNALS}
    client = None
    code = 0
    try:
        g.start()
        client = Client(env)
        wanted = {s.name for s in specs}
        _wait(lambda: wanted <= client.node_names(), timeout, f"nodes {sorted(wanted)}", g)
        _log(f"all {len(specs)} nodes up: {', '.join(sorted(wanted))}")
        if mode == "sim" and not keep_running:
            code = run_sim_once(client, g, timeout)
        else:
            _log("graph running; Ctrl-C to stop")
            while True:
                g.check()              # Interrupted on Ctrl-C; ConfigError naming a node that exited
                time.sleep(0.2)
    except Interrupted:
        pass
    except Kinema4DError as exc:
        _log(f"error: {exc}")
        code = 1
    finally:
        if client is not None:
            client.close()
        _log("stopping nodes")
        g.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if g.interrupted.is_set():
        code = 130 if code == 0 and mode == "sim" and not keep_running else code
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kinema4d-ros", description="kinema4d-ros ROS 2 tools")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("bringup", help="start the node graph of a mode (graph.py) as separate processes")
    p.add_argument("mode", choices=graph.MODES)
    for arg in graph.ARGUMENTS:
        if arg.name in ("output_root",):
            continue
        if arg.name == "loopback":      # a switch: `bringup real --loopback`
            p.add_argument("--loopback", dest="loopback", action="store_const", const="true", default=None,
                           help=f"{arg.description} [{', '.join(arg.modes)}]")
            continue
        p.add_argument(f"--{arg.name.replace('_', '-')}", dest=arg.name, default=None,
                       help=f"{arg.description} [{', '.join(arg.modes)}]")
    p.add_argument("--run-dir", dest="output_root", default=None, help="folder for run folders (default runs/)")
    p.add_argument("--keep-running", action="store_true", help="sim: keep the graph up instead of one episode")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each stage (default 120)")
    p.add_argument("--log-dir", type=Path, default=None, help="node logs (default: a new temp folder)")
    return parser


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    args = {a.name: getattr(ns, a.name) for a in graph.ARGUMENTS
            if getattr(ns, a.name, None) is not None and ns.mode in a.modes}
    if ns.output_root is not None:
        args["output_root"] = ns.output_root
    try:
        return bringup(ns.mode, args, keep_running=ns.keep_running, timeout=ns.timeout, log_dir=ns.log_dir)
    except Kinema4DError as exc:
        print(f"kinema4d-ros: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
