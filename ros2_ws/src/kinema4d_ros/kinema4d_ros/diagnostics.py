"""Counters for dropped and rejected input, throttled per-reason logging, and a JSON status.

Nodes never crash on a bad message: they call ``Health.reject(kind, reason)`` (counted, logged
at most once per ``log_period_s`` per kind, remembered as ``last_reason``) and keep running.
``Health.snapshot()`` is what the node publishes as std_msgs/String JSON on its status topic.
``Diagnostics`` publishes the same counters as one diagnostic_msgs/DiagnosticStatus per node on
``/diagnostics`` (~1 Hz): input rates (Hz, from the counters), drops and rejections with their last
reason, and the node's own state (e.g. the inference model), level OK / WARN / ERROR.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from typing import Any, Callable


class Health:
    """Thread-safe counters + throttled warnings for one node."""

    def __init__(self, log: Callable[[str], None], *, log_period_s: float = 1.0):
        self._log = log
        self._period = log_period_s
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.last_reason = ""
        self.reject_reasons: dict[str, str] = {}
        self.drop_reasons: dict[str, str] = {}
        self.last_problem = ""             # the last rejection or drop, "kind: reason"
        self._last_log: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self._latency_ms: deque[float] = deque(maxlen=300)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def latency(self, ms: float) -> None:
        with self._lock:
            self._latency_ms.append(ms)

    def _maybe_log(self, key: str, text: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last_log.get(key, -1e9) < self._period:
                self._suppressed[key] += 1
                return
            self._last_log[key] = now
            suppressed = self._suppressed.pop(key, 0)
        self._log(text + (f" ({suppressed} similar suppressed)" if suppressed else ""))

    def reject(self, kind: str, reason: str) -> None:
        """Count a rejected (malformed) message of ``kind`` and log ``reason`` (throttled per reason)."""
        with self._lock:
            self.rejected[kind] += 1
            self.last_reason = f"{kind}: {reason}"
            self.reject_reasons[kind] = reason
            self.last_problem = f"rejected {kind}: {reason}"
        # Throttle per kind and per reason prefix: a flood of one problem logs once a period,
        # while a different problem (other field / other text) is still logged at once.
        self._maybe_log(f"reject:{kind}:{reason[:48]}", f"rejected {kind}: {reason}")

    def drop(self, kind: str, reason: str) -> None:
        """Count a well-formed message dropped on purpose (stale, out of order, superseded)."""
        with self._lock:
            self.dropped[kind] += 1
            self.drop_reasons[kind] = reason
            self.last_problem = f"dropped {kind}: {reason}"
        self._maybe_log("drop:" + kind, f"dropped input ({kind}): {reason}")

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        with self._lock:
            lat = sorted(self._latency_ms)
            out: dict[str, Any] = {
                "counts": dict(self.counts),
                "rejected": dict(self.rejected),
                "dropped": dict(self.dropped),
                "rejected_total": sum(self.rejected.values()),
                "dropped_total": sum(self.dropped.values()),
                "last_reason": self.last_reason,
            }
            if lat:
                out["latency_ms_p50"] = round(lat[len(lat) // 2], 3)
                out["latency_ms_p95"] = round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 3)
        out.update(extra)
        return out

    def to_json(self, **extra: Any) -> str:
        return json.dumps(self.snapshot(**extra), sort_keys=True)


def steady_timer(node, period_s: float, callback: Callable[[], None], **kwargs: Any):
    """``node.create_timer`` on the steady clock.

    Status and housekeeping timers must keep running in sim time too: with ``use_sim_time`` and
    no (or a paused) ``/clock`` -- a replay that ended, a paused simulator -- ROS-time timers never
    fire. ``kwargs`` go to ``create_timer`` (callback_group, autostart).
    """
    from rclpy.clock import Clock, ClockType

    return node.create_timer(period_s, callback, clock=Clock(clock_type=ClockType.STEADY_TIME), **kwargs)


OK, WARN, ERROR = 0, 1, 2          # diagnostic_msgs/DiagnosticStatus levels


class Diagnostics:
    """One diagnostic_msgs/DiagnosticStatus for ``node`` on ``/diagnostics`` every ``period_s``.

    - ``rate_hz.<counter>``: messages per second of each ``Health.count`` counter since the last
      publish (input rates such as ``joint_states_received``);
    - ``count.<counter>``, ``rejected.<kind>`` / ``reject_reason.<kind>``, ``dropped.<kind>`` /
      ``drop_reason.<kind>``: totals and the last reason of each;
    - ``state()`` (optional) returns ``(level, message, values)``: the node's own state (model
      loaded, busy, playing...), ``values`` added as ``key: value``.

    Level: the worst of ``state()``'s and WARN when messages were rejected or dropped since the
    last publish (message: how many and the last reason); OK otherwise. Name: the node's fully
    qualified name without the leading slash; hardware_id ``kinema4d``.
    """

    def __init__(self, node, health: Health, state: Callable[[], tuple[int, str, dict]] | None = None, *,
                 period_s: float = 1.0, callback_group=None) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile

        self._node, self._health, self._state = node, health, state
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", QoSProfile(depth=10))
        self._last_t = time.monotonic()
        self._last_counts: Counter[str] = Counter()
        self._last_bad = 0
        self.timer = steady_timer(node, period_s, self.publish, callback_group=callback_group)

    def status(self):
        """The DiagnosticStatus now (and the rates are measured from the previous call)."""
        from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

        h = self._health
        now = time.monotonic()
        with h._lock:
            counts, rejected, dropped = Counter(h.counts), Counter(h.rejected), Counter(h.dropped)
            rreasons, dreasons, last = dict(h.reject_reasons), dict(h.drop_reasons), h.last_problem
        dt = max(now - self._last_t, 1e-6)
        values: dict[str, Any] = {}
        for name in sorted(counts):
            values[f"rate_hz.{name}"] = round((counts[name] - self._last_counts[name]) / dt, 3)
            values[f"count.{name}"] = counts[name]
        for kind in sorted(rejected):
            values[f"rejected.{kind}"] = rejected[kind]
            values[f"reject_reason.{kind}"] = rreasons.get(kind, "")
        for kind in sorted(dropped):
            values[f"dropped.{kind}"] = dropped[kind]
            values[f"drop_reason.{kind}"] = dreasons.get(kind, "")
        values["rejected_total"] = sum(rejected.values())
        values["dropped_total"] = sum(dropped.values())
        level, message = OK, "ok"
        if self._state is not None:
            level, message, extra = self._state()
            values.update(extra)
        bad = values["rejected_total"] + values["dropped_total"]
        new_bad = bad - self._last_bad
        if new_bad > 0:
            level = max(level, WARN)
            message = f"{message}; {new_bad} input(s) rejected or dropped in the last {dt:.1f} s (last: {last})"
        self._last_t, self._last_counts, self._last_bad = now, counts, bad
        return DiagnosticStatus(level=bytes([level]), name=self._node.get_fully_qualified_name().lstrip("/"),
                                message=message, hardware_id="kinema4d",
                                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])

    def publish(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        try:
            status = self.status()
            msg = DiagnosticArray(status=[status])
            msg.header.stamp = self._node.get_clock().now().to_msg()
            self._pub.publish(msg)
        except Exception as exc:  # noqa: BLE001 - diagnostics never take a node down (e.g. at shutdown)
            if self._node.context.ok():
                self._node.get_logger().warning(f"diagnostics not published: {type(exc).__name__}: {exc}")
