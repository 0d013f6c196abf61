"""Counters for dropped and rejected input, throttled per-reason logging, and a JSON status.

Nodes never crash on a bad message: they call ``Health.reject(kind, reason)`` (counted, logged
at most once per ``log_period_s`` per kind, remembered as ``last_reason``) and keep running.
``Health.snapshot()`` is what the node publishes as std_msgs/String JSON on its status topic.
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
        # Throttle per kind and per reason prefix: a flood of one problem logs once a period,
        # while a different problem (other field / other text) is still logged at once.
        self._maybe_log(f"reject:{kind}:{reason[:48]}", f"rejected {kind}: {reason}")

    def drop(self, kind: str, reason: str) -> None:
        """Count a well-formed message dropped on purpose (stale, out of order, superseded)."""
        with self._lock:
            self.dropped[kind] += 1
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
