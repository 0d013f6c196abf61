"""The ROS 2 environment of every process this project starts: two explicit rules.

1. **Loopback** (``loopback_env``, alias ``safe_ros_env``): discovery on loopback only
   (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, ROS_LOCALHOST_ONLY=1), Fast DDS with the packaged
   profile (large shared-memory segment, UDP allow-listed to 127.0.0.1) and an own ROS_DOMAIN_ID
   (random in 1..101 unless given). Used by ``bringup sim`` / ``bringup replay``, ``bringup real
   --loopback``, the sim/replay launch files, tests, benchmarks and demos.
2. **User** (``user_env``): ``bringup real`` and nodes started by a launch file or by hand keep
   the user's ROS_DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE / ROS_STATIC_PEERS, RMW_IMPLEMENTATION
   and DDS profile (FASTDDS_DEFAULT_PROFILES_FILE / FASTRTPS_DEFAULT_PROFILES_FILE, CYCLONEDDS_URI),
   so the nodes join the lab's graph. Nothing is forced.

``describe_env`` is the one line printed at start (domain, discovery range, RMW, profile).
Domain ids stay within 1..101: higher ids map to UDP ports inside the Linux ephemeral range.
"""

from __future__ import annotations

import os
import random
import tempfile
from typing import Mapping, MutableMapping

#: Keys rule 1 forces (the domain id and the profile are set next to them).
LOOPBACK_ENV = {
    "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
    "ROS_LOCALHOST_ONLY": "1",
    "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
}
#: Network keys of the user's environment that rule 2 keeps untouched.
USER_NETWORK_KEYS = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_STATIC_PEERS", "ROS_LOCALHOST_ONLY",
                     "RMW_IMPLEMENTATION", "FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE",
                     "CYCLONEDDS_URI")
#: Every key either rule may set (what a process copies into its own os.environ before rclpy.init).
ENV_KEYS = (*USER_NETWORK_KEYS, "ROS_LOG_DIR")

# Stay clear of 0 (everyone's default) and above 101 (ports of higher ids reach the ephemeral range).
DOMAIN_MIN, DOMAIN_MAX = 1, 101


def pick_domain_id(seed: int | None = None) -> int:
    """A domain id in [1, 101], random unless ``seed`` is given."""
    rng = random.Random(seed if seed is not None else (os.getpid() * 7919) ^ random.getrandbits(32))
    return rng.randint(DOMAIN_MIN, DOMAIN_MAX)


def check_domain_id(domain_id: int) -> int:
    """``domain_id`` as int; ValueError naming the valid range otherwise."""
    value = int(domain_id)
    if not 0 <= value <= 232:
        raise ValueError(f"ROS_DOMAIN_ID={value} is outside 0..232 (use 1..101 for a private domain)")
    return value


def fastdds_profile_path() -> str | None:
    """Path of the packaged Fast DDS profile (large SHM segment, UDP on 127.0.0.1 only), if present."""
    here = os.path.join(os.path.dirname(__file__), "config", "fastdds_loopback.xml")
    return here if os.path.exists(here) else None


def _log_dir(env: MutableMapping[str, str], log_dir: str | None) -> None:
    if log_dir is not None:
        env["ROS_LOG_DIR"] = log_dir
    elif not env.get("ROS_LOG_DIR"):
        env["ROS_LOG_DIR"] = os.path.join(tempfile.gettempdir(), "kinema4d_ros_logs")


def loopback_env(domain_id: int | None = None, base: Mapping[str, str] | None = None,
                 log_dir: str | None = None) -> dict[str, str]:
    """Rule 1: a copy of ``base`` (default ``os.environ``) with loopback-only discovery, the
    packaged Fast DDS profile and its own domain: ``domain_id``, else a fresh random one in 1..101
    (the caller's ROS_DOMAIN_ID is replaced on purpose: a private graph never joins another).

    log_dir: ROS_LOG_DIR for the processes (default: keep the caller's, else a temp folder).
    """
    env = dict(os.environ if base is None else base)
    env.update(LOOPBACK_ENV)
    env.pop("ROS_STATIC_PEERS", None)
    env.pop("CYCLONEDDS_URI", None)
    env["ROS_DOMAIN_ID"] = str(check_domain_id(domain_id) if domain_id is not None else pick_domain_id())
    _log_dir(env, log_dir)
    profile = fastdds_profile_path()
    env.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)   # a user profile may open other interfaces
    if profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = profile
    else:
        env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    return env


#: Historical name of rule 1 (tests, benchmarks and demos call it).
safe_ros_env = loopback_env


def user_env(domain_id: int | None = None, base: Mapping[str, str] | None = None,
             log_dir: str | None = None) -> dict[str, str]:
    """Rule 2: a copy of ``base`` (default ``os.environ``) keeping the user's network settings.

    domain_id: set ROS_DOMAIN_ID to this (an explicit ``--domain-id``); otherwise the user's
    ROS_DOMAIN_ID stays (unset means ROS's default 0). Only ROS_LOG_DIR may be set.
    """
    env = dict(os.environ if base is None else base)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(check_domain_id(domain_id))
    _log_dir(env, log_dir)
    return env


def apply_env(env: Mapping[str, str]) -> None:
    """Make this process's ``os.environ`` carry ``env``'s ROS keys (set or removed; before ``rclpy.init``)."""
    for key in ENV_KEYS:
        if env.get(key):
            os.environ[key] = env[key]
        else:
            os.environ.pop(key, None)


def apply_safe_ros_env(domain_id: int | None = None) -> dict[str, str]:
    """Apply rule 1 to this process's ``os.environ`` (call before ``rclpy.init``)."""
    env = loopback_env(domain_id)
    apply_env(env)
    return env


def is_loopback(env: Mapping[str, str]) -> bool:
    """True when ``env`` keeps discovery on this host."""
    return (env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").upper() == "LOCALHOST"
            or (not env.get("ROS_AUTOMATIC_DISCOVERY_RANGE") and env.get("ROS_LOCALHOST_ONLY") == "1"))


def describe_env(env: Mapping[str, str] | None = None) -> str:
    """One line: domain, discovery range, RMW and DDS profile in use (ROS defaults named as such)."""
    env = os.environ if env is None else env
    domain = env.get("ROS_DOMAIN_ID") or "0 (default)"
    rng = env.get("ROS_AUTOMATIC_DISCOVERY_RANGE") or (
        "LOCALHOST (ROS_LOCALHOST_ONLY=1)" if env.get("ROS_LOCALHOST_ONLY") == "1" else "SUBNET (default)")
    peers = f" static peers {env['ROS_STATIC_PEERS']}" if env.get("ROS_STATIC_PEERS") else ""
    rmw = env.get("RMW_IMPLEMENTATION") or "rmw_fastrtps_cpp (default)"
    profile = (env.get("FASTDDS_DEFAULT_PROFILES_FILE") or env.get("FASTRTPS_DEFAULT_PROFILES_FILE")
               or env.get("CYCLONEDDS_URI") or "none")
    return f"ROS_DOMAIN_ID={domain} discovery={rng}{peers} RMW={rmw} DDS profile={profile}"
