"""Network-safe ROS 2 environment for every process this project starts.

Fast DDS discovery multicasts on every interface by default. Everything that initializes
rclpy here (nodes started by the bring-up runner, tests, benchmarks, demos) goes through
``safe_ros_env`` / ``apply_safe_ros_env`` so that discovery stays on loopback and each run has
its own ROS domain. Nothing needs to remember to set these by hand.
"""

from __future__ import annotations

import os
import random
import tempfile
from typing import MutableMapping

# Keys we force. ROS_DOMAIN_ID is chosen per run unless the caller passes one.
LOOPBACK_ENV = {
    "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
    "ROS_LOCALHOST_ONLY": "1",
    "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
}

# Fast DDS domain ids 0..232 map to valid ports; stay clear of 0 (everyone's default).
_DOMAIN_MIN, _DOMAIN_MAX = 1, 232


def pick_domain_id(seed: int | None = None) -> int:
    """A domain id in [1, 232], random unless ``seed`` is given."""
    rng = random.Random(seed if seed is not None else (os.getpid() * 7919) ^ random.getrandbits(32))
    return rng.randint(_DOMAIN_MIN, _DOMAIN_MAX)


def fastdds_profile_path() -> str | None:
    """Path of the packaged Fast DDS profile (large SHM segment, UDP on 127.0.0.1 only), if present."""
    here = os.path.join(os.path.dirname(__file__), "config", "fastdds_loopback.xml")
    return here if os.path.exists(here) else None


def safe_ros_env(domain_id: int | None = None, base: MutableMapping[str, str] | None = None,
                 log_dir: str | None = None) -> dict[str, str]:
    """Return a copy of ``base`` (default ``os.environ``) with loopback-only discovery and a domain id.

    domain_id: use this id; otherwise keep an existing ROS_DOMAIN_ID from ``base`` or pick one.
    log_dir: ROS_LOG_DIR for the processes (default: keep the caller's, else a temp folder).
    """
    env = dict(os.environ if base is None else base)
    env.update(LOOPBACK_ENV)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(int(domain_id))
    elif not env.get("ROS_DOMAIN_ID"):
        env["ROS_DOMAIN_ID"] = str(pick_domain_id())
    if log_dir is not None:
        env["ROS_LOG_DIR"] = log_dir
    elif not env.get("ROS_LOG_DIR"):
        env["ROS_LOG_DIR"] = os.path.join(tempfile.gettempdir(), "kinema4d_ros_logs")
    profile = fastdds_profile_path()
    if profile and not env.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = profile
    return env


def apply_safe_ros_env(domain_id: int | None = None) -> dict[str, str]:
    """Apply ``safe_ros_env`` to this process's ``os.environ`` (call before ``rclpy.init``)."""
    env = safe_ros_env(domain_id)
    for key in list(LOOPBACK_ENV) + ["ROS_DOMAIN_ID", "ROS_LOG_DIR", "FASTDDS_DEFAULT_PROFILES_FILE"]:
        if key in env:
            os.environ[key] = env[key]
    return env
