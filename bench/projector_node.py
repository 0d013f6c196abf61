"""Benchmark: projector_node as a separate process, JointState in at 30 Hz -> 480x720 pointmap out.

Prints the achieved output rate and end-to-end latency (publish of the joint state -> receipt of
its pointmap, matched by stamp), p50 / p95. Targets: >= 30 Hz sustained, p95 <= 50 ms (printed,
not asserted). Loopback only, own ROS_DOMAIN_ID.

    .venv/bin/python bench/projector_node.py [--seconds 10] [--rate 30]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all threads), from /proc; NaN where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--calibration", default=str(ROOT / "calibration" / "sim_camera.yaml"))
    ap.add_argument("--node-cmd", default=None,
                    help="command line that starts the node (default: the venv's projector_node); for A/B runs")
    ns = ap.parse_args()

    from kinema4d_ros.ros_env import pick_domain_id, safe_ros_env

    env = safe_ros_env(domain_id=pick_domain_id(), log_dir=tempfile.mkdtemp(prefix="bench-roslog-"))
    for key in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", "RMW_IMPLEMENTATION",
                "FASTDDS_DEFAULT_PROFILES_FILE", "ROS_LOG_DIR"):
        os.environ[key] = env[key]
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image, JointState

    from kinema4d_core.robot import load_robot
    from kinema4d_ros import qos

    log = open(Path(env["ROS_LOG_DIR"]) / "projector.log", "wb")
    node_cmd = ns.node_cmd.split() if ns.node_cmd else [str(Path(sys.executable).parent / "projector_node")]
    node_proc = subprocess.Popen([*node_cmd, "--ros-args", "-p",
                                  f"calibration_file:={ns.calibration}", "-p", "use_camera_info:=false",
                                  "-p", "max_stamp_age_s:=0.0"], env=env, stdout=log, stderr=subprocess.STDOUT)
    ex = None
    try:
        rclpy.init(domain_id=int(env["ROS_DOMAIN_ID"]))
        node = rclpy.create_node("bench_projector")
        sent: dict[tuple[int, int], float] = {}
        latencies: list[float] = []
        received: list[float] = []

        def on_pointmap(msg: Image) -> None:
            now = time.perf_counter()
            key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
            if key in sent:
                latencies.append((now - sent[key]) * 1e3)
                received.append(now)

        node.create_subscription(Image, "kinema4d/robot_pointmap", on_pointmap, qos.stream_in(5))
        pub = node.create_publisher(JointState, "joint_states", 10)
        ex = SingleThreadedExecutor()
        ex.add_node(node)
        threading.Thread(target=ex.spin, daemon=True).start()
        deadline = time.monotonic() + 30
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        robot = load_robot("panda")
        q0 = robot.home()
        # warm-up (renderer construction, JIT)
        for _ in range(20):
            pub.publish(JointState(name=list(robot.joint_names), position=[float(v) for v in q0]))
            time.sleep(0.1)
            if latencies or received:
                break
        time.sleep(1.0)
        latencies.clear()
        received.clear()
        period = 1.0 / ns.rate
        n = int(ns.seconds * ns.rate)
        load_start = os.getloadavg()[0]
        cpu_node0, cpu_self0 = _cpu_seconds(node_proc.pid), time.process_time()
        t_start = time.perf_counter()
        for i in range(n):
            q = np.clip(q0 + 0.2 * np.sin(2 * np.pi * 0.5 * i * period), robot.lower, robot.upper)
            msg = JointState(name=list(robot.joint_names), position=[float(v) for v in q])
            msg.header.stamp = node.get_clock().now().to_msg()
            sent[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = time.perf_counter()
            pub.publish(msg)
            time.sleep(max(0.0, t_start + (i + 1) * period - time.perf_counter()))
        time.sleep(0.5)
        cpu_node, cpu_self = _cpu_seconds(node_proc.pid) - cpu_node0, time.process_time() - cpu_self0
    finally:                    # never leave the node process behind (an error, Ctrl-C)
        if ex is not None:
            ex.shutdown()
        node_proc.send_signal(signal.SIGINT)
        try:
            node_proc.wait(10)
        except subprocess.TimeoutExpired:
            node_proc.kill()
            node_proc.wait()
        rclpy.try_shutdown()
    if len(received) < 2:
        print("no pointmaps received; see", log.name)
        return 1
    load_end = os.getloadavg()[0]
    rate = (len(received) - 1) / (received[-1] - received[0])
    lat = np.asarray(latencies)
    print(f"projector_node 480x720: sent {n} joint states at {ns.rate:.0f} Hz, received {len(received)} pointmaps")
    print(f"  output rate {rate:.1f} Hz (target >= 30), latency p50 {np.percentile(lat, 50):.1f} ms, "
          f"p95 {np.percentile(lat, 95):.1f} ms (target <= 50)")
    print(f"  CPU time per received pointmap: node {cpu_node / len(received) * 1e3:.1f} ms, "
          f"this subscriber {cpu_self / len(received) * 1e3:.1f} ms (less sensitive to load than the rates)")
    print(f"  load average {load_start:.1f} -> {load_end:.1f} on {os.cpu_count()} CPUs "
          f"(figures are only meaningful on an otherwise idle machine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
