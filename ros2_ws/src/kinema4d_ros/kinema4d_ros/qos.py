"""QoS profiles used by every kinema4d_ros node (one place, so publishers and subscribers match).

- ``SENSOR_IN``: inputs from sensors and robot state (best effort, keep last 5). A best-effort
  subscriber matches both reliable and best-effort publishers, so drivers of either kind work.
- ``STREAM_OUT``: derived image/point streams (reliable, keep last 2, volatile). Reliable so
  RViz's default (reliable) displays connect; keep-last means a slow reader never blocks us.
- ``LATCHED``: state that a late joiner must still get (reliable, transient local, depth 1):
  status JSON, run_done, /tf_static.
"""

from __future__ import annotations

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

SENSOR_IN: QoSProfile = qos_profile_sensor_data

STREAM_OUT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)

LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


def stream_in(depth: int = 2) -> QoSProfile:
    """Best-effort keep-last subscriber profile for large streams (matches STREAM_OUT and SENSOR_IN)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)
