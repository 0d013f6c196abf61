"""bag_player_node: republish a rosbag2 bag (sqlite3 or mcap) into the ROS graph, with /clock.

Works without rosbag2 (reads with ``rosbags``). Messages are republished as the recorded CDR
bytes (no re-serialization) on their recorded topics with their recorded types; topics whose
message type has no Python package in this environment are skipped (listed in the log).

| kind | name | type | QoS |
|---|---|---|---|
| pub | every recorded topic (or those in `topics`) | as recorded | reliable, keep last 100 |
| pub | `/clock` | rosgraph_msgs/Clock: bag time of the playback, every `clock_period_s` and before each message | reliable, keep last 100 |
| pub | `bag_player/status` | std_msgs/String JSON: state (playing/finished), loop count, messages published | reliable, transient local, depth 1 |

| parameter | default | meaning |
|---|---|---|
| bag_path | (required) | rosbag2 folder or .db3 / .mcap file |
| rate | 1.0 | playback speed factor (> 0) |
| loop | false | start over at the end (the clock jumps back) |
| publish_clock | true | publish /clock with the bag's receive time (seconds) |
| clock_period_s | 0.01 | /clock period between messages |
| start_delay_s | 0.5 | wait before the first message (lets subscribers connect) |
| topics | [] | only these topics (empty: all) |
| wait_for_subscribers_s | 0.0 | before playing, wait up to this long until every played topic has a subscriber |

Time: the bag's receive timestamps drive the schedule and /clock; header stamps inside the
messages are left as recorded, so nodes with use_sim_time see consistent times.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
from pathlib import Path
from typing import Any

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from std_msgs.msg import String

from kinema4d_core.errors import ConfigError
from kinema4d_ros.node_main import run_node


def message_class(msgtype: str) -> Any | None:
    """``pkg/msg/Type`` -> the rclpy message class, or None when the package is not installed."""
    pkg, _, name = msgtype.partition("/msg/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError):
        return None


PLAYBACK_HISTORY_DEPTH = 100  # per publisher, messages

class BagPlayer(Node):
    """Plays one bag in a background thread (see module docstring)."""

    def __init__(self) -> None:
        super().__init__("bag_player")
        from kinema4d_core.bags import bag_topics, bag_storage

        self.bag_path = str(self.declare_parameter("bag_path", "").value)
        self.rate = float(self.declare_parameter("rate", 1.0).value)
        self.loop = bool(self.declare_parameter("loop", False).value)
        self.publish_clock = bool(self.declare_parameter("publish_clock", True).value)
        self.clock_period = float(self.declare_parameter("clock_period_s", 0.01).value)
        self.start_delay = float(self.declare_parameter("start_delay_s", 0.5).value)
        self.wait_subs = float(self.declare_parameter("wait_for_subscribers_s", 0.0).value)
        only = [str(t) for t in self.declare_parameter("topics", [""]).value if str(t)]
        if not self.bag_path or not Path(self.bag_path).exists():
            raise ConfigError(f"bag {self.bag_path!r} does not exist", field="bag_path",
                              fix="pass -p bag_path:=/path/to/bag (folder or .db3/.mcap)")
        if not self.rate > 0:
            raise ConfigError(f"rate {self.rate} must be > 0", field="rate", fix="e.g. -p rate:=1.0")
        bag_storage(self.bag_path)
        available = bag_topics(self.bag_path)
        missing = [t for t in only if t not in available]
        if missing:
            raise ConfigError(f"topics {missing} are not in the bag ({sorted(available)})", field="topics",
                              fix="list topics that the bag has, or leave topics empty")
        # Reliable with a deep history: playback is bursty (rate > 1), and with KEEP_LAST a slow
        # subscriber loses any sample that falls out of the writer's history before it is acked.
        qos = QoSProfile(depth=PLAYBACK_HISTORY_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs: dict[str, Any] = {}
        skipped = []
        for topic, msgtype in sorted(available.items()):
            if only and topic not in only:
                continue
            cls = message_class(msgtype)
            if cls is None:
                skipped.append(f"{topic} ({msgtype})")
                continue
            self.pubs[topic] = self.create_publisher(cls, topic, qos)
        if skipped:
            self.get_logger().warning(f"skipping topics without an installed message package: {skipped}")
        self.clock_pub = self.create_publisher(Clock, "/clock", qos) if self.publish_clock else None
        self.status_pub = self.create_publisher(
            String, "bag_player/status", QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.published = 0
        self.loops = 0
        self._stop_event = threading.Event()
        self._play_thread = threading.Thread(target=self._play, daemon=True)
        self._play_thread.start()
        self.get_logger().info(f"playing {self.bag_path} ({len(self.pubs)} topics) at rate {self.rate}"
                               f"{', looping' if self.loop else ''}")

    def _send_status(self, state: str) -> None:
        self.status_pub.publish(String(data=json.dumps({"state": state, "loops": self.loops,
                                                        "published": self.published})))

    def _send_clock(self, t_ns: int) -> None:
        if self.clock_pub is not None:
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = int(t_ns // 1_000_000_000), int(t_ns % 1_000_000_000)
            self.clock_pub.publish(msg)

    def _sleep_until(self, wall_target: float, bag_t0: int, wall_t0: float) -> bool:
        """Sleep to ``wall_target`` publishing /clock meanwhile; False if stopping."""
        while True:
            now = time.monotonic()
            if self._stop_event.is_set():
                return False
            if now >= wall_target:
                return True
            self._send_clock(bag_t0 + int((now - wall_t0) * self.rate * 1e9))
            time.sleep(min(self.clock_period, wall_target - now))

    def _play(self) -> None:
        from kinema4d_core.bags import iter_messages
        from kinema4d_core.errors import Kinema4DError

        if self._stop_event.wait(self.start_delay):
            return
        deadline = time.monotonic() + self.wait_subs
        while time.monotonic() < deadline and any(p.get_subscription_count() == 0 for p in self.pubs.values()):
            if self._stop_event.wait(0.05):
                return
        self._send_status("playing")
        try:
            while not self._stop_event.is_set():
                wall_t0 = time.monotonic()
                bag_t0 = None
                for topic, _msgtype, t_ns, raw in iter_messages(self.bag_path, list(self.pubs)):
                    if bag_t0 is None:
                        bag_t0 = t_ns
                    if not self._sleep_until(wall_t0 + (t_ns - bag_t0) * 1e-9 / self.rate, bag_t0, wall_t0):
                        return
                    self._send_clock(t_ns)
                    self.pubs[topic].publish(raw)
                    self.published += 1
                self.loops += 1
                if not self.loop:
                    break
                self._send_status("playing")
        except Exception as exc:  # noqa: BLE001 - reported on the status topic, the node stays up
            reason = str(exc) if isinstance(exc, Kinema4DError) else f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"playback stopped: {reason}")
            self._send_status("failed")
            return
        self._send_status("finished")
        self.get_logger().info(f"finished: {self.published} messages")

    def close(self) -> None:
        self._stop_event.set()
        self._play_thread.join(timeout=2.0)


def main(argv: list[str] | None = None) -> int:
    return run_node(BagPlayer, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
