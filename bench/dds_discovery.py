"""How completely N ROS 2 processes started at once discover each other on loopback.

    .venv/bin/python bench/dds_discovery.py [--participants 6] [--wait 12] [--no-profile]

Each process (own ROS context = own DDS participant) creates node ``p<i>`` with a publisher on
``x``; all count the publishers of ``x`` they see at the same moment, ``--wait`` seconds after the
last start, and stay alive a little longer so nobody counts a process that already left.
Runs with the project's loopback environment (``kinema4d_ros.ros_env.loopback_env``: LOCALHOST
discovery, a fresh domain id, our Fast DDS profile unless ``--no-profile``).

Why it exists: a check of the loopback discovery that every multi-process test relies on (a
first version of this script let processes exit at different times and wrongly looked like
discovery failures: a fair count needs everyone alive when anyone counts).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

CHILD = r"""
import sys, time, rclpy
from std_msgs.msg import String
i, n, end, linger = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
rclpy.init()
node = rclpy.create_node(f"p{i}")
pub = node.create_publisher(String, "x", 1)
while time.time() < end:              # everyone counts at the same moment ...
    rclpy.spin_once(node, timeout_sec=0.2)
print(node.count_publishers("x"), flush=True)
end += linger                          # ... and stays alive until all have counted
while time.time() < end:
    rclpy.spin_once(node, timeout_sec=0.2)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--participants", type=int, default=6)
    ap.add_argument("--wait", type=float, default=12.0, help="seconds after the last start when all count")
    ap.add_argument("--no-profile", action="store_true", help="without our Fast DDS profile")
    ap.add_argument("--stagger", type=float, default=0.0, help="seconds between process starts")
    a = ap.parse_args()
    from kinema4d_ros.ros_env import loopback_env

    env = loopback_env(base=os.environ)
    if a.no_profile:
        for k in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"):
            env.pop(k, None)
    n = a.participants
    procs = []
    end = time.time() + n * a.stagger + a.wait
    for i in range(n):
        procs.append(subprocess.Popen([sys.executable, "-c", CHILD, str(i), str(n), str(end), "3"], env=env,
                                      stdout=subprocess.PIPE, text=True))
        time.sleep(a.stagger)
    seen = [int(p.communicate()[0].strip() or 0) for p in procs]
    complete = sum(s == n for s in seen)
    print(f"domain {env['ROS_DOMAIN_ID']}, stagger {a.stagger} s: publishers seen per process {seen} (all = {n}); "
          f"{complete}/{n} processes see everyone; pairs found {sum(seen)}/{n * n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
