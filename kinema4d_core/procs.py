"""Child processes that never outlive the process that started them (Linux)."""

from __future__ import annotations

import signal
import sys
from typing import Callable

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def die_with_parent() -> Callable[[], None] | None:
    """A ``subprocess.Popen(preexec_fn=...)`` value: on Linux the child gets SIGTERM when its parent
    dies, even by SIGKILL (no orphaned servers or ROS nodes); None elsewhere.

    The signal is tied to the thread that starts the child: start children from a long-lived thread
    (normally the main thread).
    """
    return _die_with_parent if sys.platform.startswith("linux") else None
