"""Joint state input of every node that takes joint states (projector, inference, calibration).

A thin ROS layer over ``kinema4d_core.joint_merge`` and ``kinema4d_core.stamps``: one
subscription per entry of ``joint_state_topics`` (sensor-data QoS), each with its own
``StampGuard`` (future stamps dropped, bag loops / clock jumps reset and logged once), merged by
joint name and stamp into the robot's joint vector with ``joint_name_map`` /
``joint_name_prefix`` renaming and ``fixed_joint_values`` for joints no topic publishes.
Parameters: ``params.JOINT_INPUT_PARAMS`` and ``params.STAMP_PARAMS``. Bad messages are
rejected through the node's Health (counted, logged throttled) and the node keeps running.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from sensor_msgs.msg import JointState

from kinema4d_core.errors import Kinema4DError
from kinema4d_core.joint_merge import P_FIXED, JointMerger, JointNaming, JointSample, MergedJoints, parse_pairs
from kinema4d_core.stamps import StampGuard
from kinema4d_ros import qos
from kinema4d_ros.conversions import stamp_to_seconds

JOINT_KEYS = ("joint_name_map", "joint_name_prefix", "fixed_joint_values")
STAMP_KEYS = ("stamp_reset_jump_s", "clock_skew_tolerance_s")


def _topics(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(t) for t in value]


def make_merger(robot, params: dict, strict: bool = False) -> JointMerger:
    """The JointMerger of ``params`` for ``robot`` (RobotModel); ConfigError naming a bad parameter."""
    naming = JointNaming.from_params(params.get("joint_name_map", ""), params.get("joint_name_prefix", ""))
    fixed = parse_pairs(params.get("fixed_joint_values", ""), P_FIXED, numeric=True)
    return JointMerger(robot.joint_names, naming=naming, fixed=fixed, strict=strict,
                       extra_known=getattr(robot, "mimic_joints", {}) or {})


class JointInput:
    """Subscribes ``joint_state_topics`` on ``node`` and calls ``on_joints(merged, stamp_msg)`` from the
    subscription callback with every complete merged state (``stamp_msg``: the newest input stamp)."""

    def __init__(self, node, robot, params: dict, health, on_joints: Callable[[MergedJoints, Any], None] | None,
                 *, strict: bool = False, callback_group=None, on_reset: Callable[[str], None] | None = None):
        self.node, self.robot, self.health = node, robot, health
        self.on_joints, self.on_reset = on_joints, on_reset
        self.strict = strict
        self._lock = threading.Lock()
        self.merger = make_merger(robot, params, strict)
        self.guards: dict[str, StampGuard] = {}
        self._params = dict(params)
        self._last: tuple[MergedJoints, Any] | None = None
        self._last_error = "no joint state received yet on " + ", ".join(_topics(params["joint_state_topics"]))
        self._resolved: dict[str, str] = {}
        for topic in _topics(params["joint_state_topics"]):
            try:
                self._resolved[topic] = node.resolve_topic_name(topic)
            except Exception:  # noqa: BLE001 - older rclpy: name the topic as given
                self._resolved[topic] = topic
            self.guards[topic] = StampGuard(params["stamp_reset_jump_s"], params["clock_skew_tolerance_s"])
            node.create_subscription(JointState, topic, lambda m, t=topic: self._on_msg(t, m), qos.SENSOR_IN,
                                     callback_group=callback_group)

    def update_params(self, changed: dict) -> str | None:
        """Apply a parameter change (validated first); an error text vetoes it."""
        new = {**self._params, **changed}
        try:
            merger = make_merger(self.robot, new, self.strict) if any(k in changed for k in JOINT_KEYS) else None
            if any(k in changed for k in STAMP_KEYS):
                for guard in self.guards.values():
                    guard.configure(new["stamp_reset_jump_s"], new["clock_skew_tolerance_s"])
        except Kinema4DError as exc:
            return str(exc)
        with self._lock:
            if merger is not None:
                self.merger, self._last = merger, None
            self._params = new
        return None

    def stale(self, stamp: float, max_age_s: float) -> float | None:
        """Age (s) of ``stamp`` when older than ``max_age_s`` + clock_skew_tolerance_s, else None."""
        guard = next(iter(self.guards.values()))
        return guard.stale(stamp, self.now_s(), max_age_s)

    def now_s(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def _on_msg(self, topic: str, msg: JointState) -> None:
        self.health.count("joint_states_received")
        stamp = stamp_to_seconds(msg.header.stamp)
        with self._lock:
            decision = self.guards[topic].check(stamp, self.now_s())
            if not decision.accept:
                kind = "future" if "ahead" in decision.reason else "out_of_order"
                self.health.drop(kind, f"{topic}: {decision.reason}")
                return
            if decision.reset:
                self.merger.reset()
                self.health.count("stamp_resets")
                self.node.get_logger().warning(f"{topic}: {decision.reason}")      # once per reset
            try:
                ignored = self.merger.add(JointSample(list(msg.name), list(msg.position), stamp,
                                                      self._resolved[topic]))
                merged = self.merger.merged()
            except Kinema4DError as exc:
                self._last_error = str(exc)
                self.health.reject("joint_state", str(exc))
                return
            if ignored:
                self.health.count("ignored_joint_names", len(ignored))
            self._last = (merged, msg.header.stamp)
        if decision.reset and self.on_reset is not None:
            self.on_reset(decision.reason)
        if self.on_joints is not None:
            self.on_joints(merged, msg.header.stamp)

    def latest(self) -> tuple[MergedJoints, Any]:
        """The newest complete merged state and its stamp message; InputError with the reason otherwise."""
        from kinema4d_core.errors import InputError

        with self._lock:
            if self._last is None:
                raise InputError(self._last_error, field="joint_states",
                                 fix="publish the robot's joint states on joint_state_topics "
                                     "(see joint_name_map / joint_name_prefix / fixed_joint_values)")
            return self._last

    def has_data(self) -> bool:
        return self._last is not None
