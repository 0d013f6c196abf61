"""The ONE description of the kinema4d node graph, per mode (sim | real | replay), as plain data.

Used by both ``launch/*.launch.py`` (launch_ros, on a full ROS 2 install) and the bring-up
runner ``kinema4d-ros bringup`` (separate processes with a loopback-only environment), so the
two can never disagree. Nothing here imports launch or rclpy.

- ``ARGUMENTS``: every bring-up argument (name, default, description, modes it applies to).
- ``nodes_for(mode, args)``: the nodes of a mode as ``NodeSpec`` (executable, node name,
  parameter file, parameter overrides, remappings), from string-valued arguments.
- ``config_dir()`` / ``repo_root()``: where the parameter files, RViz config and calibration live.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from kinema4d_core.errors import ConfigError
from kinema4d_core.registry import DEFAULT_BACKEND, backend_names, backend_spec, node_parameters, options_from_params

MODES = ("sim", "real", "replay")
PACKAGE = "kinema4d_ros"
#: backend options (kinema4d_core.registry) passed through to the inference node as parameters
BACKEND_PARAMS = ("base_path", "checkpoint_path", "variant", "device", "dtype", "offload", "timestep_grid")


def _backend_param_help(name: str) -> str:
    help_, users = node_parameters()[name]
    return f"{help_[:1].upper()}{help_[1:]} (backend {users}; empty: backend default)."


@dataclass(frozen=True)
class Argument:
    name: str
    default: str
    description: str
    modes: tuple[str, ...] = MODES


ARGUMENTS: tuple[Argument, ...] = (
    Argument("robot", "panda", "Robot config name (urdf/<name>.yaml) or robot yaml path."),
    Argument("calibration", "", "Camera calibration yaml (empty: calibration/sim_camera.yaml for sim)."),
    Argument("backend", DEFAULT_BACKEND, "Generation backend: " + " | ".join(backend_names()) + "."),
    *(Argument(name, "", _backend_param_help(name)) for name in BACKEND_PARAMS),
    Argument("output_root", "runs", "Folder receiving one run folder per simulation."),
    Argument("use_sim_time", "false", "Use /clock (true for replay; optional for sim)."),
    Argument("rviz", "false", "Start RViz2 with config/kinema4d.rviz (launch files only)."),
    Argument("domain_id", "", "ROS_DOMAIN_ID (empty: sim/replay and real with loopback a fresh random id in "
             "1..101; real: the user's ROS_DOMAIN_ID)."),
    Argument("loopback", "false", "Real: keep discovery on loopback with a private domain (sim and replay "
             "always do); false joins the user's ROS graph with their ROS_DOMAIN_ID, discovery range, "
             "RMW and DDS profile.", ("real",)),
    Argument("publish_robot_state", "true", "Start robot_state_node (robot TF + robot_description); default "
             "false in real, where the robot's own robot_state_publisher owns those frames.", ),
    Argument("camera_mount_frame", "camera_link", "Frame the calibrated camera pose is published to (base -> "
             "this), the root of the camera driver's TF, e.g. camera_link; empty: base -> optical frame.",
             ("real",)),
    Argument("camera_mount_source", "tf", "Mount -> optical transform: tf (the camera driver's, looked up) or "
             "file (extrinsics.T_mount_optical of the calibration, published by us).", ("real",)),
    Argument("calibration_source", "file", "Camera pose for projector and inference: file (calibration) or tf "
             "(look up base frame -> optical frame).", ("real",)),
    Argument("task", "push", "Scripted sim task: push | pick_place.", ("sim",)),
    Argument("seed", "2", "Seed of the first sim episode (push: 2 succeeds, 0 fails).", ("sim",)),
    Argument("bag", "", "rosbag2 folder or .mcap/.db3 file to replay.", ("replay",)),
    Argument("rate", "1.0", "Replay speed factor.", ("replay",)),
    Argument("loop", "false", "Replay in a loop.", ("replay",)),
    Argument("joint_states_topic", "joint_states", "Robot joint states topic (real).", ("real",)),
    Argument("image_topic", "camera/image_raw", "Camera RGB topic (real).", ("real",)),
    Argument("depth_topic", "camera/depth/image_raw", "Camera depth topic (real; optional).", ("real",)),
    Argument("camera_info_topic", "camera/camera_info", "CameraInfo topic (real).", ("real",)),
    Argument("gripper_joint_states_topic", "", "Second JointState topic merged by name, e.g. "
             "/franka_gripper/joint_states (real; empty: none).", ("real",)),
    Argument("joint_name_prefix", "", "Driver joint-name prefix: 'fr3_' strips it, 'fr3_:panda_' replaces it "
             "(real).", ("real",)),
    Argument("joint_name_map", "", "Driver joint name -> config name, 'driver:config' pairs, comma-separated "
             "(real).", ("real",)),
    Argument("fixed_joint_values", "", "'joint:value' pairs for joints no topic publishes, e.g. "
             "panda_finger_joint1:0.04 (real).", ("real",)),
    Argument("image_transport", "raw", "Camera image transport (real): raw | compressed (<image_topic>/compressed, "
             "jpeg/png).", ("real",)),
    Argument("depth_transport", "raw", "Depth transport (real): raw (16UC1 mm / 32FC1 m) | compressedDepth.",
             ("real",)),
    Argument("rescale_to_stream", "false", "Accept a camera stream of another size than the calibration by "
             "rescaling its intrinsics (real; same aspect ratio); false: refuse it.", ("real",)),
)
#: node parameters of the joint inputs (kinema4d_ros.joint_input) set from real-mode arguments
JOINT_INPUT_ARGS = ("joint_name_prefix", "joint_name_map", "fixed_joint_values")
ARGUMENT_NAMES = tuple(a.name for a in ARGUMENTS)


@dataclass(frozen=True)
class NodeSpec:
    """One node: ``executable`` of package kinema4d_ros started as node ``name``."""

    name: str
    executable: str
    params_file: str | None
    parameters: dict = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    package: str = PACKAGE

    def ros_args(self) -> list[str]:
        """The ``--ros-args`` list that starts this node with the same configuration as launch."""
        out = ["--ros-args", "-r", f"__node:={self.name}"]
        if self.params_file:
            out += ["--params-file", self.params_file]
        for key, value in self.parameters.items():
            out += ["-p", f"{key}:={_param_text(value)}"]
        for src, dst in self.remappings:
            out += ["-r", f"{src}:={dst}"]
        return out


def _param_text(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_param_text(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else "''"
    return str(value)


def repo_root() -> Path:
    """The project folder (KINEMA4D_ROOT, else the checkout this module lives in, else the cwd)."""
    env = os.environ.get("KINEMA4D_ROOT")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        if (parent / "calibration").is_dir() and (parent / "ros2_ws").is_dir():
            return parent
    return Path.cwd()


def config_dir() -> Path:
    """Parameter files and RViz config: the source tree's config/, else the installed share/."""
    here = Path(__file__).resolve().parent.parent / "config"
    if (here / "projector.yaml").is_file():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE)) / "config"
    except Exception:  # noqa: BLE001 - not installed with an ament index
        return repo_root() / "config"


def defaults(mode: str) -> dict[str, str]:
    """Argument defaults of ``mode`` (strings, as launch arguments are)."""
    check_mode(mode)
    out = {a.name: a.default for a in ARGUMENTS if mode in a.modes}
    if mode == "sim":
        out["calibration"] = str(repo_root() / "calibration" / "sim_camera.yaml")
    if mode == "replay":
        out["use_sim_time"] = "true"
    if mode == "real":
        out["publish_robot_state"] = "false"
    return out


def packaged_calibration(path: str) -> bool:
    """True for a calibration file shipped in the repository's calibration/ folder (never overwritten
    by calibration/save: the user did not name it as theirs)."""
    try:
        Path(path).resolve().relative_to((repo_root() / "calibration").resolve())
        return True
    except ValueError:
        return False


def uses_loopback(mode: str, args: Mapping[str, str] | None = None) -> bool:
    """Environment rule of a bring-up (see ros_env): loopback for sim / replay and ``real`` with
    ``loopback:=true``; the user's environment for ``real``."""
    a = resolve_args(mode, args)
    return mode != "real" or _bool(a.get("loopback", "false"), "loopback")


def domain_arg(mode: str, args: Mapping[str, str] | None = None) -> int | None:
    """The ``domain_id`` argument as int (None when empty); ConfigError naming it when invalid."""
    text = resolve_args(mode, args).get("domain_id", "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 232:
        raise ConfigError(f"domain_id '{text}' is not a ROS domain id", field="domain_id",
                          fix="use an integer in 1..101 (0..232 is valid ROS, above 101 risks port clashes)")
    return value


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ConfigError(f"unknown mode '{mode}'", field="mode", fix=f"use one of {MODES}")


def _bool(text: str, name: str) -> bool:
    low = str(text).strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off", ""):
        return False
    raise ConfigError(f"'{text}' is not a boolean", field=name, fix="use true or false")


def resolve_args(mode: str, args: Mapping[str, str] | None = None) -> dict[str, str]:
    """Defaults of ``mode`` overridden by ``args``; unknown names raise ConfigError."""
    out = defaults(mode)
    for key, value in (args or {}).items():
        if key not in ARGUMENT_NAMES:
            raise ConfigError(f"unknown argument '{key}'", field=key, fix=f"use one of {list(ARGUMENT_NAMES)}")
        if value is not None:
            out[key] = str(value)
    return out


def nodes_for(mode: str, args: Mapping[str, str] | None = None) -> list[NodeSpec]:
    """The node graph of ``mode`` for the given (string) arguments."""
    a = resolve_args(mode, args)
    cfg = config_dir()
    sim_time = _bool(a["use_sim_time"], "use_sim_time")
    common = {"use_sim_time": sim_time}
    robot_cal = {"robot": a["robot"], "calibration_file": a["calibration"]}
    remaps: tuple[tuple[str, str], ...] = ()
    if mode == "real":
        remaps = tuple((src, dst) for src, dst in (
            ("joint_states", a["joint_states_topic"]), ("camera/image_raw", a["image_topic"]),
            ("camera/depth/image_raw", a["depth_topic"]), ("camera/camera_info", a["camera_info_topic"]))
            if src != dst)
    joint_input: dict = {}
    if mode == "real":
        joint_input = {k: a[k] for k in JOINT_INPUT_ARGS if a[k]}
        if a["gripper_joint_states_topic"]:
            joint_input["joint_state_topics"] = ["joint_states", a["gripper_joint_states_topic"]]
    camera_pose = {"calibration_source": a["calibration_source"]} if mode == "real" else {}
    inference = {**common, **robot_cal, **joint_input, **camera_pose, "backend": a["backend"],
                 "output_root": a["output_root"]}
    for key in BACKEND_PARAMS:
        if a[key]:
            inference[key] = a[key]
    nodes: list[NodeSpec] = []
    if mode == "sim":
        nodes.append(NodeSpec("sim_world_node", "sim_world_node", str(cfg / "sim_world.yaml"),
                              {**common, "publish_clock": sim_time, "task": a["task"], "seed": int(a["seed"])}))
    if mode == "replay":
        nodes.append(NodeSpec("bag_player_node", "bag_player_node", str(cfg / "bag_player.yaml"),
                              {"bag_path": a["bag"], "rate": float(a["rate"]), "loop": _bool(a["loop"], "loop")}))
    stream: dict[str, Any] = {}
    if mode == "real":
        stream = {"image_transport": a["image_transport"],
                  "rescale_to_stream": _bool(a["rescale_to_stream"], "rescale_to_stream")}
        inference.update(stream, depth_transport=a["depth_transport"])
    calibration_params = {**common, **robot_cal, **joint_input, **stream,
                          "save_to_calibration_file": not packaged_calibration(a["calibration"])}
    if mode == "real":
        calibration_params.update(camera_mount_frame=a["camera_mount_frame"],
                                  camera_mount_source=a["camera_mount_source"])
    if mode == "sim":
        calibration_params["overlay_period_s"] = 0.0    # the sim has exact extrinsics; save CPU
    nodes += [
        NodeSpec("calibration_node", "calibration_node", str(cfg / "calibration.yaml"), calibration_params, remaps),
        NodeSpec("projector_node", "projector_node", str(cfg / "projector.yaml"),
                 {**common, **robot_cal, **joint_input, **camera_pose,
                  **{k: v for k, v in stream.items() if k == "rescale_to_stream"}}, remaps),
        NodeSpec("inference_node", "inference_node", str(cfg / "inference.yaml"), inference, remaps),
    ]
    if _bool(a["publish_robot_state"], "publish_robot_state"):
        nodes.append(NodeSpec("robot_state_node", "robot_state_node", str(cfg / "robot_state.yaml"),
                              {**common, "robot": a["robot"]}, remaps))
    return nodes


def rviz_config() -> Path:
    return config_dir() / "kinema4d.rviz"


def check_args(mode: str, args: Mapping[str, str]) -> None:
    """Fail early, naming the argument, when a required file is missing."""
    a = resolve_args(mode, args)
    domain_arg(mode, a)
    uses_loopback(mode, a)
    _bool(a["publish_robot_state"], "publish_robot_state")
    for name, choices in (("camera_mount_source", ("tf", "file")), ("calibration_source", ("file", "tf"))):
        if name in a and a[name] not in choices:
            raise ConfigError(f"{name} '{a[name]}' is not one of {list(choices)}", field=name,
                              fix=f"use {' or '.join(choices)}")
    if not a["calibration"]:
        raise ConfigError("no calibration file", field="calibration",
                          fix="pass --calibration PATH (a camera calibration yaml)")
    if not Path(a["calibration"]).is_file():
        raise ConfigError(f"'{a['calibration']}' does not exist", field="calibration",
                          fix="pass an existing calibration yaml")
    if mode == "replay" and not (a["bag"] and Path(a["bag"]).exists()):
        raise ConfigError(f"bag '{a['bag']}' does not exist", field="bag", fix="pass --bag PATH to a rosbag2 bag")
    if a["backend"] not in backend_names():
        raise ConfigError(f"unknown backend {a['backend']!r}", field="backend", fix=f"use one of {list(backend_names())}")
    spec = backend_spec(a["backend"])
    missing = spec.missing(options_from_params(spec.name, a))
    if missing:
        names = [o.param_name for o in missing]
        raise ConfigError(f"backend {spec.name} needs {' and '.join(names)}", field="backend",
                          fix=f"pass {' and '.join('--' + n.replace('_', '-') for n in names)}, or --backend static-scene")
