"""Shared ``main()`` plumbing for the kinema4d_ros executables.

``run_node(factory)``: prints the ROS environment in use (domain, discovery range, RMW, DDS
profile; ``ros_env.describe_env``) and keeps it as given: the process that starts a node decides
its network (the bring-up runner and the sim/replay launch files pass the loopback environment,
``bringup real`` and the real launch file the user's; see ros_env). It initializes rclpy with the
command line (``--ros-args`` work), builds the node,
spins it, and shuts down cleanly on Ctrl-C / SIGTERM (rclpy's own handlers, installed by
``rclpy.init``: unlike a Python-level handler they also wake an executor blocked in its wait set,
so a node with no timers stops at once). A Kinema4DError while building the node
(bad parameter, missing calibration file) is printed as one line and the process exits 2.
"""

from __future__ import annotations

import sys
from typing import Callable

from kinema4d_ros.ros_env import describe_env


def run_node(factory: Callable[[], "object"], *, multithreaded: bool = False, threads: int = 4,
             argv: list[str] | None = None) -> int:
    """Create the node with ``factory()`` and spin until shutdown; returns the exit code."""
    name = getattr(factory, "__name__", "node")
    print(f"[{name}] {describe_env()}", file=sys.stderr, flush=True)
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor

    from kinema4d_core.errors import Kinema4DError

    try:
        rclpy.init(args=sys.argv if argv is None else argv)   # SIGINT + SIGTERM -> shutdown (rclpy default)
    except Exception as exc:  # noqa: BLE001 - e.g. an RMW_IMPLEMENTATION that is not installed
        print(f"[{name}] error: rclpy.init failed ({type(exc).__name__}: {exc}) with {describe_env()}; "
              "fix: check RMW_IMPLEMENTATION (rmw_fastrtps_cpp is installed), ROS_DOMAIN_ID and the DDS "
              "profile file", file=sys.stderr, flush=True)
        return 2
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
