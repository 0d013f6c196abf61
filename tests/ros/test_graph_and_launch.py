"""graph.py is the single description; launch files and the runner both derive from it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from kinema4d_core.errors import ConfigError
from kinema4d_ros import graph
from kinema4d_ros.bringup import build_parser

LAUNCH_DIR = Path(graph.__file__).resolve().parents[1] / "launch"


@pytest.mark.parametrize("mode", graph.MODES)
def test_launch_file_compiles_and_builds_its_mode_from_the_shared_description(mode):
    path = LAUNCH_DIR / f"{mode}.launch.py"
    tree = ast.parse(path.read_text())
    compile(tree, str(path), "exec")
    imports = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert ("kinema4d_ros.launch_description", "generate") in imports
    assigned_mode = [n.value.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                     and any(getattr(t, "id", None) == "MODE" for t in n.targets)]
    assert assigned_mode == [mode]
    entry = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description")
    calls = [n for n in ast.walk(entry) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "generate"]
    assert [c.args[0].id for c in calls] == ["MODE"]


def test_launch_description_uses_graph_and_only_declared_arguments():
    path = Path(graph.__file__).with_name("launch_description.py")   # importing it needs `launch`
    tree = ast.parse(path.read_text())
    compile(tree, str(path), "exec")
    imports = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {"kinema4d_ros", "launch", "launch_ros.actions"} <= imports
    calls = {n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
    assert {"nodes_for", "defaults", "check_args"} <= calls
    literal_configs = [n.args[0].value for n in ast.walk(tree) if isinstance(n, ast.Call)
                       and getattr(n.func, "id", None) == "LaunchConfiguration" and isinstance(n.args[0], ast.Constant)]
    assert literal_configs and set(literal_configs) <= set(graph.ARGUMENT_NAMES)


@pytest.mark.parametrize("mode", graph.MODES)
def test_every_node_has_a_parameter_file_with_its_own_section(mode):
    args = {"bag": "/nonexistent.mcap"} if mode == "replay" else {}
    for spec in graph.nodes_for(mode, args):
        assert spec.params_file and Path(spec.params_file).is_file(), spec
        doc = yaml.safe_load(Path(spec.params_file).read_text())
        assert "ros__parameters" in doc[spec.name]
        ros_args = spec.ros_args()
        assert ros_args[0] == "--ros-args" and "--params-file" in ros_args


def test_sim_graph_runs_the_sim_world_and_real_graph_remaps_driver_topics():
    sim = {s.name for s in graph.nodes_for("sim")}
    assert sim == {"sim_world_node", "calibration_node", "projector_node", "inference_node", "robot_state_node"}
    for mode, args in (("sim", {}), ("replay", {"bag": "/nonexistent.mcap"}), ("real", {"publish_robot_state": "true"})):
        assert "robot_state_node" in {s.name for s in graph.nodes_for(mode, args)}, mode
    # real: the robot's own robot_state_publisher owns the robot frames
    assert "robot_state_node" not in {s.name for s in graph.nodes_for("real")}
    assert "robot_state_node" not in {s.name for s in graph.nodes_for("sim", {"publish_robot_state": "false"})}


def test_camera_tf_arguments_reach_the_nodes(repo_root):
    specs = {s.name: s for s in graph.nodes_for("real", {"calibration": "/lab/cam.yaml", "calibration_source": "tf",
                                                        "camera_mount_source": "file"})}
    cal = specs["calibration_node"].parameters
    assert (cal["camera_mount_frame"], cal["camera_mount_source"]) == ("camera_link", "file")
    assert cal["save_to_calibration_file"] is True                  # the user named /lab/cam.yaml
    assert specs["projector_node"].parameters["calibration_source"] == "tf"
    assert specs["inference_node"].parameters["calibration_source"] == "tf"
    sim_cal = {s.name: s for s in graph.nodes_for("sim")}["calibration_node"].parameters
    assert sim_cal["save_to_calibration_file"] is False             # the packaged sim camera is never overwritten
    assert "camera_mount_frame" not in sim_cal                      # sim: base -> optical, no driver
    with pytest.raises(ConfigError, match="calibration_source"):
        graph.check_args("real", {"calibration": str(repo_root / "calibration/sim_camera.yaml"),
                                  "calibration_source": "camera"})
    real = graph.nodes_for("real", {"image_topic": "/cam/color/image_raw"})
    assert "sim_world_node" not in {s.name for s in real}
    projector = next(s for s in real if s.name == "projector_node")
    assert ("camera/image_raw", "/cam/color/image_raw") in projector.remappings
    assert graph.resolve_args("replay")["use_sim_time"] == "true"


def test_bad_arguments_are_named():
    with pytest.raises(ConfigError, match="mode"):
        graph.nodes_for("moon")
    with pytest.raises(ConfigError, match="no_such_arg"):
        graph.resolve_args("sim", {"no_such_arg": "1"})
    with pytest.raises(ConfigError, match="calibration"):
        graph.check_args("real", {})
    with pytest.raises(ConfigError, match="use_sim_time"):
        graph.nodes_for("sim", {"use_sim_time": "maybe"})


def test_runner_exposes_every_graph_argument():
    parser = build_parser()
    ns = parser.parse_args(["bringup", "sim", "--robot", "panda", "--backend", "kinema4d-tiny", "--run-dir", "x"])
    assert ns.robot == "panda" and ns.backend == "kinema4d-tiny" and ns.output_root == "x"
    bringup = next(a for a in parser._subparsers._group_actions[0].choices.values())
    dests = {a.dest for a in bringup._actions}
    assert set(graph.ARGUMENT_NAMES) <= dests


def test_fastdds_profile_is_packaged_and_loopback_only():
    from kinema4d_ros.ros_env import fastdds_profile_path

    path = fastdds_profile_path()
    assert path is not None
    text = Path(path).read_text()
    assert "<segment_size>33554432</segment_size>" in text and "16777216" in text
    assert "<address>127.0.0.1</address>" in text


def test_rviz_prediction_displays_hold_a_whole_prediction_with_the_publishers_qos():
    """The inference node publishes a 49-frame prediction at once (stamped timing): RViz's prediction
    displays must queue it all (depth >= the publisher's) and subscribe reliable + volatile like it."""
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    from kinema4d_ros.nodes.inference_node import PREDICTION_QOS

    doc = yaml.safe_load(graph.rviz_config().read_text())
    displays = {d["Topic"]["Value"]: d["Topic"] for d in doc["Visualization Manager"]["Displays"]
                if isinstance(d.get("Topic"), dict) and "/prediction/" in str(d["Topic"].get("Value"))}
    assert set(displays) == {"/kinema4d/prediction/image", "/kinema4d/prediction/points"}, displays
    assert PREDICTION_QOS.reliability == ReliabilityPolicy.RELIABLE
    assert PREDICTION_QOS.durability == DurabilityPolicy.VOLATILE
    for topic, qos in displays.items():
        assert qos["Depth"] >= max(PREDICTION_QOS.depth, 49), (topic, qos)
        assert qos["Reliability Policy"] == "Reliable", (topic, qos)
        assert qos["Durability Policy"] == "Volatile", (topic, qos)
        assert qos["History Policy"] == "Keep Last", (topic, qos)
