"""Declared, described and validated node parameters.

Each node lists its parameters as ``ParamSpec`` (name, default, description, optional range and
check). ``declare_params`` declares them with a ParameterDescriptor (description, ranges,
read-only flag) and installs an on-set callback that rejects bad values with the reason, so
``ros2 param set`` (or a bad ``-p`` at start-up) fails with a clear message instead of
breaking the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.node import Node
from rclpy.parameter import Parameter

from kinema4d_core.errors import ConfigError


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: ``check(value)`` returns an error text or None (value acceptable)."""

    name: str
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = False
    check: Callable[[Any], str | None] | None = None
    dynamic: bool = False       # value may be a string or a string list (dynamic typing)

    def descriptor(self) -> ParameterDescriptor:
        text = self.description
        if self.choices:
            text += f" One of: {', '.join(self.choices)}."
        d = ParameterDescriptor(name=self.name, description=text, read_only=self.read_only,
                                dynamic_typing=self.dynamic)
        if self.min is not None and self.max is not None:
            if isinstance(self.default, bool):
                pass
            elif isinstance(self.default, int):
                d.integer_range = [IntegerRange(from_value=int(self.min), to_value=int(self.max), step=0)]
            elif isinstance(self.default, float):
                d.floating_point_range = [FloatingPointRange(from_value=float(self.min), to_value=float(self.max),
                                                             step=0.0)]
        return d

    def error(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable, or None."""
        if not isinstance(value, bool) and isinstance(value, (int, float)):
            if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
                return f"{self.name}={value!r} is outside [{self.min}, {self.max}]"
        if self.choices is not None and value not in self.choices:
            return f"{self.name}={value!r} is not one of {list(self.choices)}"
        return self.check(value) if self.check else None


def declare_params(node: Node, specs: Sequence[ParamSpec],
                   on_change: Callable[[dict[str, Any]], str | None] | None = None) -> dict[str, Any]:
    """Declare ``specs`` on ``node``; return their current values.

    Raises ConfigError if a start-up value (``-p`` / params file) is invalid. Later changes go
    through validation and then ``on_change({name: value})``, which may veto with an error text.
    """
    by_name = {s.name: s for s in specs}
    values: dict[str, Any] = {}
    for spec in specs:
        values[spec.name] = node.declare_parameter(spec.name, spec.default, spec.descriptor()).value
        err = spec.error(values[spec.name])
        if err:
            raise ConfigError(err, field=f"{node.get_name()}.{spec.name}", fix=spec.description)

    def _callback(params: list[Parameter]) -> SetParametersResult:
        changed: dict[str, Any] = {}
        for p in params:
            spec = by_name.get(p.name)
            if spec is None:
                continue
            if spec.default is not None and not spec.dynamic \
                    and p.type_ != Parameter.Type.from_parameter_value(spec.default) \
                    and not (isinstance(spec.default, float) and p.type_ == Parameter.Type.INTEGER):
                return SetParametersResult(successful=False, reason=f"{p.name}: expected {type(spec.default).__name__}")
            value = float(p.value) if isinstance(spec.default, float) else p.value
            err = spec.error(value)
            if err:
                node.get_logger().warning(f"rejected parameter change: {err}")
                return SetParametersResult(successful=False, reason=err)
            changed[p.name] = value
        if changed and on_change is not None:
            err = on_change(changed)
            if err:
                node.get_logger().warning(f"rejected parameter change: {err}")
                return SetParametersResult(successful=False, reason=err)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(_callback)
    return values


def _config_error(fn: Callable[[Any], Any]) -> Callable[[Any], str | None]:
    """A check that runs ``fn(value)`` and returns its Kinema4DError text (None when it passes)."""
    def check(value: Any) -> str | None:
        from kinema4d_core.errors import Kinema4DError

        try:
            fn(value)
        except Kinema4DError as exc:
            return str(exc)
        return None
    return check


def _check_topics(value: Any) -> str | None:
    topics = [value] if isinstance(value, str) else list(value or [])
    if not topics or not all(isinstance(t, str) and t.strip() for t in topics):
        return "joint_state_topics must list at least one topic name, e.g. [joint_states, franka_gripper/joint_states]"
    if len(set(topics)) != len(topics):
        return f"joint_state_topics lists a topic twice: {topics}"
    return None


def _parse_fixed(value: Any) -> dict:
    from kinema4d_core.joint_merge import P_FIXED, parse_pairs

    return parse_pairs(value, P_FIXED, numeric=True)


def _parse_naming(value: Any) -> Any:
    from kinema4d_core.joint_merge import JointNaming

    return JointNaming.from_params(value, "")


#: Joint state inputs (kinema4d_ros.joint_input), shared by every node that takes joint states.
JOINT_INPUT_PARAMS = (
    ParamSpec("joint_state_topics", ["joint_states"], "sensor_msgs/JointState topics merged by joint name and "
              "stamp, e.g. [joint_states, franka_gripper/joint_states] (arm and gripper on their own topics). "
              "Read at start.", read_only=True, check=_check_topics),
    ParamSpec("joint_name_map", "", "Driver joint name -> robot config joint name, 'driver:config' pairs "
              "(comma-separated string or list), e.g. 'fr3_finger_joint1:panda_finger_joint1'. Tried before "
              "joint_name_prefix.", dynamic=True, check=_config_error(_parse_naming)),
    ParamSpec("joint_name_prefix", "", "Prefix of the driver's joint names: 'fr3_' strips it, 'fr3_:panda_' "
              "replaces it (fr3_joint1 -> panda_joint1)."),
    ParamSpec("fixed_joint_values", "", "Values for robot joints no topic publishes (e.g. a gripper), "
              "'joint:value' pairs in radians / metres, e.g. 'panda_finger_joint1:0.04'. A published value "
              "wins.", dynamic=True, check=_config_error(_parse_fixed)),
)

#: Stamp ordering of inputs (kinema4d_core.stamps.StampGuard).
STAMP_PARAMS = (
    ParamSpec("stamp_reset_jump_s", 5.0, "A stamp this many seconds older than the newest accepted one (a bag "
              "loop, a clock jump back) restarts the input's stamp order (logged once) instead of being dropped.",
              min=0.001, max=1e6),
    ParamSpec("clock_skew_tolerance_s", 0.5, "How far (s) a sender's clock may run ahead of this node's: inputs "
              "stamped further in the future are dropped without blocking later ones; also added to "
              "max_stamp_age_s.", min=0.0, max=3600.0),
)


def optional_calibration(path: str, robot=None):
    """The CameraModel of a ``calibration_file`` parameter, or None when it is empty (not set).

    With ``robot`` (a RobotModel), the extrinsics must be expressed in its base frame. Raises the
    core's Kinema4DError (naming the bad field) for an invalid file.
    """
    if not path:
        return None
    from kinema4d_core.camera import load_calibration
    from kinema4d_core.projection import check_camera_frame

    camera = load_calibration(path)
    if robot is not None:
        check_camera_frame(camera, robot, source=path)
    return camera


# ---- camera stream parameters: the same declaration (name, description, check) in every node
#: how camera/image_raw is subscribed (image_transport conventions); read at start
IMAGE_TRANSPORT = ParamSpec(
    "image_transport", "raw", "Transport of camera/image_raw: raw (sensor_msgs/Image rgb8, bgr8, rgba8, bgra8, "
    "mono8) or compressed (sensor_msgs/CompressedImage jpeg/png on <remapped camera/image_raw>/compressed, as "
    "image_transport publishes it). Read at start.", choices=("raw", "compressed"), read_only=True)
#: how camera/depth/image_raw is subscribed; read at start
DEPTH_TRANSPORT = ParamSpec(
    "depth_transport", "raw", "Transport of camera/depth/image_raw: raw (sensor_msgs/Image 16UC1 millimetres or "
    "32FC1 metres) or compressedDepth (png, on <remapped topic>/compressedDepth). Read at start.",
    choices=("raw", "compressedDepth"), read_only=True)
#: the one size rule (kinema4d_core.camera.match_stream): refuse, or rescale the calibration on request
RESCALE_TO_STREAM = ParamSpec(
    "rescale_to_stream", False, "A camera_info or image whose size differs from the calibration is refused "
    "(false) or accepted with the calibration's intrinsics rescaled to it (true; the aspect ratio must agree "
    "within 1%; images are never stretched).")
