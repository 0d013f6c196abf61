"""`colcon build` of ros2_ws with the PyPI-wheels ROS 2 (interfaces with ament_cmake, kinema4d_ros with ament_python)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_colcon_build_installs_launch_config_and_executables(tmp_path, repo_root):
    venv = Path(sys.prefix)
    if not (venv / "bin" / "colcon").exists():
        pytest.fail("colcon is not installed in the venv: run scripts/setup_env.sh")
    env = dict(os.environ, KINEMA4D_VENV=str(venv), COLCON_HOME=str(tmp_path / "colcon_home"),
               COLCON_LOG_PATH=str(tmp_path / "log"))
    build, install = tmp_path / "build", tmp_path / "install"
    proc = subprocess.run([str(repo_root / "scripts" / "colcon_build.sh"), "--build-base", str(build),
                           "--install-base", str(install), "--parallel-workers", "2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    share = install / "kinema4d_ros" / "share" / "kinema4d_ros"
    for mode in ("sim", "real", "replay"):
        assert (share / "launch" / f"{mode}.launch.py").is_file()
    assert (share / "config" / "kinema4d.rviz").is_file()
    for name in ("projector.yaml", "inference.yaml", "sim_world.yaml", "calibration.yaml", "bag_player.yaml",
                 "robot_state.yaml"):
        assert (share / "config" / name).is_file(), name
    lib = install / "kinema4d_ros" / "lib" / "kinema4d_ros"
    for exe in ("projector_node", "inference_node", "calibration_node", "sim_world_node", "bag_player_node",
                "robot_state_node", "kinema4d-ros"):
        assert (lib / exe).is_file(), exe
    assert (install / "kinema4d_interfaces" / "share" / "kinema4d_interfaces" / "action" / "Simulate.action").is_file()
    fastdds = list((install / "kinema4d_ros").rglob("fastdds_loopback.xml"))
    assert fastdds, "the Fast DDS profile must be installed with the python package"
