"""The two environment rules of ros_env: sim/replay/tests get loopback + a private domain; `bringup
real` honours the user's ROS_DOMAIN_ID, discovery range, RMW and DDS profile.

The "lab" environment is set explicitly by the test (a domain it chooses, with
ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST), so everything stays on loopback.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from kinema4d_ros import graph
from kinema4d_ros.bringup import bringup_env, build_parser
from kinema4d_ros.ros_env import DOMAIN_MAX, DOMAIN_MIN, describe_env, loopback_env, pick_domain_id, user_env
from tests.conftest import next_domain_id
from tests.ros.rosproc import RosClient, executable, stop_group, wait_for

USER = {"ROS_DOMAIN_ID": "42", "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp",
        "FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/lab/fastdds.xml", "ROS_STATIC_PEERS": "10.0.0.7", "HOME": "/home/u"}


def test_random_domain_ids_stay_within_1_to_101():
    ids = {pick_domain_id(seed) for seed in range(2000)} | {pick_domain_id() for _ in range(200)}
    assert min(ids) >= DOMAIN_MIN == 1 and max(ids) <= DOMAIN_MAX == 101
    assert len(ids) > 90                          # spread over the range, not a constant
    fixture_ids = [next_domain_id() for _ in range(300)]
    assert all(1 <= d <= 101 for d in fixture_ids)


@pytest.mark.parametrize("mode,args", [("sim", {}), ("replay", {}), ("real", {"loopback": "true"})])
def test_sim_replay_and_real_loopback_replace_the_users_network(mode, args):
    env = bringup_env(mode, args, base=dict(USER))
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST" and env["ROS_LOCALHOST_ONLY"] == "1"
    assert env["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp"
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"].endswith("fastdds_loopback.xml")
    assert "FASTRTPS_DEFAULT_PROFILES_FILE" not in env and "ROS_STATIC_PEERS" not in env
    assert 1 <= int(env["ROS_DOMAIN_ID"]) <= 101
    assert env["HOME"] == "/home/u"
    chosen = bringup_env(mode, {**args, "domain_id": "7"}, base=dict(USER))
    assert chosen["ROS_DOMAIN_ID"] == "7"


def test_real_keeps_the_users_domain_discovery_rmw_and_profile():
    env = bringup_env("real", {}, base=dict(USER))
    for key, value in USER.items():
        assert env[key] == value, key
    assert "ROS_LOCALHOST_ONLY" not in env and "FASTDDS_DEFAULT_PROFILES_FILE" not in env
    line = describe_env(env)
    assert "ROS_DOMAIN_ID=42" in line and "SUBNET" in line and "rmw_cyclonedds_cpp" in line
    assert "/etc/lab/fastdds.xml" in line and "10.0.0.7" in line
    assert bringup_env("real", {"domain_id": "9"}, base=dict(USER))["ROS_DOMAIN_ID"] == "9"
    assert "ROS_DOMAIN_ID=0 (default)" in describe_env(user_env(base={}))


def test_loopback_switch_and_bad_domain_are_named():
    ns = build_parser().parse_args(["bringup", "real", "--loopback", "--domain-id", "5"])
    assert ns.loopback == "true" and ns.domain_id == "5"
    assert graph.uses_loopback("sim", {}) and not graph.uses_loopback("real", {})
    from kinema4d_core.errors import ConfigError

    with pytest.raises(ConfigError, match="domain_id"):
        graph.domain_arg("sim", {"domain_id": "300"})
    with pytest.raises(ConfigError, match="loopback"):
        graph.uses_loopback("real", {"loopback": "perhaps"})
    with pytest.raises(ValueError, match="0..232"):
        loopback_env(domain_id=999)


@pytest.fixture
def lab_env(tmp_path):
    """The user's environment as a lab would set it, explicitly on loopback: a domain the test chose."""
    log_dir = tmp_path / "roslog"
    log_dir.mkdir()
    env = loopback_env(domain_id=next_domain_id(), log_dir=str(log_dir))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    return env


@pytest.mark.ros
@pytest.mark.slow
def test_bringup_real_joins_the_users_domain_and_only_that_one(lab_env, tmp_path, repo_root):
    out = tmp_path / "runner.out"
    with open(out, "wb") as f:
        proc = subprocess.Popen([executable("kinema4d-ros"), "bringup", "real", "--calibration",
                                 str(repo_root / "calibration/sim_camera.yaml"), "--log-dir", str(tmp_path / "logs"),
                                 "--run-dir", str(tmp_path / "runs")],
                                env=lab_env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    other_env = dict(lab_env, ROS_DOMAIN_ID=str(1 + int(lab_env["ROS_DOMAIN_ID"]) % 101))
    lab = other = None
    try:
        text = wait_for(lambda: (lambda t: t if "nodes up" in t or proc.poll() is not None else "")(
            out.read_text(errors="replace")), 150, "the real bring-up to report its nodes up")
        assert "nodes up" in text, text
        assert f"ROS_DOMAIN_ID={lab_env['ROS_DOMAIN_ID']} discovery=LOCALHOST" in text, text
        assert "the user's ROS environment" in text
        node_log = (tmp_path / "logs" / "projector_node.log").read_text(errors="replace")
        assert f"ROS_DOMAIN_ID={lab_env['ROS_DOMAIN_ID']}" in node_log      # each node prints its env too
        wanted = {"projector_node", "inference_node", "calibration_node"}
        lab = RosClient(lab_env, "lab_client")
        wait_for(lambda: wanted <= set(lab.node.get_node_names()), 30, f"{wanted} on the user's domain")
        other = RosClient(other_env, "other_client")
        time.sleep(3.0)                           # discovery on loopback takes well under this
        assert not wanted & set(other.node.get_node_names()), other.node.get_node_names()
    finally:
        for client in (lab, other):
            if client is not None:
                client.close()
        stop_group(proc)
