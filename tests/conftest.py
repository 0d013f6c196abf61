"""Project-wide test fixtures.

Network safety: this file runs before any test module is imported, and forces loopback-only
DDS discovery for the whole pytest process and everything it starts. Each test that talks ROS
gets its own ROS_DOMAIN_ID through the ``ros_env`` fixture (unique per test and per xdist
worker), so parallel runs never see each other.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOCALHOST_ONLY"] = "1"
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="kinema4d-test-roslog-"))
os.environ.setdefault("MUJOCO_GL", "egl")

REPO_ROOT = Path(__file__).resolve().parents[1]

_domain_counter = itertools.count()


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = "".join(ch for ch in worker if ch.isdigit())
    return int(digits or 0)


def next_domain_id() -> int:
    """A fresh domain id in [1, 230] for each call: xdist workers start 23 ids apart and count up,
    so two tests running at the same time never share a domain."""
    return 1 + ((_worker_index() * 23 + next(_domain_counter)) % 230)


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
