"""Shared ``main()`` plumbing for the kinema4d_ros executables.

``run_node(factory)``: forces loopback-only discovery in this process (keeping the caller's
ROS_DOMAIN_ID), initializes rclpy with the command line (``--ros-args`` work), builds the node,
spins it, and shuts down cleanly on Ctrl-C / SIGTERM (rclpy's own handlers, installed by
``rclpy.init``: unlike a Python-level handler they also wake an executor blocked in its wait set,
so a node with no timers stops at once). A Kinema4DError while building the node
(bad parameter, missing calibration file) is printed as one line and the process exits 2.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

from kinema4d_ros.ros_env import LOOPBACK_ENV, fastdds_profile_path


def enforce_loopback_env() -> None:
    """Loopback-only discovery for this process; the domain id stays whatever the caller set."""
    os.environ.update(LOOPBACK_ENV)
    profile = fastdds_profile_path()
    if profile and not os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = profile


def run_node(factory: Callable[[], "object"], *, multithreaded: bool = False, threads: int = 4,
             argv: list[str] | None = None) -> int:
    """Create the node with ``factory()`` and spin until shutdown; returns the exit code."""
    enforce_loopback_env()
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor

    from kinema4d_core.errors import Kinema4DError

    rclpy.init(args=sys.argv if argv is None else argv)   # SIGINT + SIGTERM -> shutdown (rclpy default)
    node = None
    code = 0
    try:
        node = factory()
        executor = MultiThreadedExecutor(num_threads=threads) if multithreaded else SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Kinema4DError as exc:
        print(f"[{getattr(node, 'get_name', lambda: 'kinema4d')()}] error: {exc}", file=sys.stderr, flush=True)
        code = 2
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    return code
