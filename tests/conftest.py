"""Project-wide test fixtures.

Network safety: this file runs before any test module is imported, and forces loopback-only
DDS discovery for the whole pytest process and everything it starts. Each test that talks ROS
gets its own ROS_DOMAIN_ID (1..101) through the ``ros_env`` fixture, set explicitly with
``ros_env.loopback_env`` (unique per test and per xdist worker, from a random start per run), so
parallel runs never see each other.
"""

from __future__ import annotations

import itertools
import os
import random
import tempfile
from pathlib import Path

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOCALHOST_ONLY"] = "1"
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="kinema4d-test-roslog-"))
os.environ.setdefault("MUJOCO_GL", "egl")
# One intra-op thread per process (pytest workers and the nodes they start): the suite runs 2
# workers on 2 cores, and OpenMP threads waiting for a busy core make small torch ops ~10x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]

_domain_counter = itertools.count(random.randrange(101))   # random start: other test runs on this host


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = "".join(ch for ch in worker if ch.isdigit())
    return int(digits or 0)


def next_domain_id() -> int:
    """A fresh domain id in [1, 101] for each call (higher ids reach the Linux ephemeral ports).
    Each xdist worker owns the ids congruent to its index modulo the worker count and walks them
    from a random start, so two tests running at the same time never share a domain."""
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))
    worker = _worker_index() % workers
    slots = max(1, 101 // workers)
    return 1 + worker + workers * (next(_domain_counter) % slots)


@pytest.fixture
def ros_env(tmp_path):
    """Environment for a test that starts ROS processes: loopback only, own domain id, own log dir."""
    from kinema4d_ros.ros_env import safe_ros_env

    log_dir = tmp_path / "roslog"
    log_dir.mkdir()
    return safe_ros_env(domain_id=next_domain_id(), log_dir=str(log_dir))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
