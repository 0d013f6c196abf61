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

    def descriptor(self) -> ParameterDescriptor:
        text = self.description
        if self.choices:
            text += f" One of: {', '.join(self.choices)}."
        d = ParameterDescriptor(name=self.name, description=text, read_only=self.read_only)
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
            if spec.default is not None and p.type_ != Parameter.Type.from_parameter_value(spec.default) \
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
