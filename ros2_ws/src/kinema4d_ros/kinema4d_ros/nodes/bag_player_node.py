"""bag_player_node: republish a rosbag2 bag (sqlite3 or mcap) into the ROS graph, with /clock.

Works without rosbag2 (reads with ``rosbags``). Messages are republished as the recorded CDR
bytes (no re-serialization) on their recorded topics with their recorded types; topics whose
message type has no Python package in this environment are skipped (listed in the log); when
no selected topic is left, or a parameter is invalid, the node exits with status 2 and the reason.

| kind | name | type | QoS |
|---|---|---|---|
| pub | every recorded topic (or those in `topics`) | as recorded | reliable, keep last 100 |
| pub | `/clock` | rosgraph_msgs/Clock: bag time of the playback, every `clock_period_s` and before each message | reliable, keep last 100 |
| pub | `bag_player/status` | std_msgs/String JSON: state (playing/finished/failed), loop count, messages published | reliable, transient local, depth 1 |

| parameter (all read-only) | default | meaning |
|---|---|---|
| bag_path | (required) | rosbag2 folder or .db3 / .mcap file |
| rate | 1.0 | playback speed factor (> 0) |
| loop | false | start over at the end (the clock jumps back) |
| publish_clock | true | publish /clock with the bag's receive time (seconds) |
| clock_period_s | 0.01 | /clock period between messages (> 0) |
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
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from std_msgs.msg import String

from kinema4d_core.errors import ConfigError
from kinema4d_ros.diagnostics import ERROR, OK, Diagnostics, Health
from kinema4d_ros.node_main import run_node
from kinema4d_ros.params import ParamSpec, declare_params
from kinema4d_ros.qos import LATCHED


def message_class(msgtype: str) -> Any | None:
    """``pkg/msg/Type`` -> the rclpy message class, or None when the package is not installed."""
    pkg, _, name = msgtype.partition("/msg/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError):
        return None


PLAYBACK_HISTORY_DEPTH = 100  # per publisher, messages


def _check_bag(path: str) -> str | None:
    if not path or not Path(path).exists():
        return f"bag_path {path!r} does not exist (pass -p bag_path:=/path/to/bag, a folder or .db3/.mcap file)"
    return None


def _positive(name: str):
    return lambda v: None if v > 0 else f"{name}={v!r} must be > 0"


# Read once at start (playback runs in its own thread), hence read-only.
PARAMS = (
    ParamSpec("bag_path", "", "rosbag2 folder or .db3 / .mcap file to play.", read_only=True, check=_check_bag),
    ParamSpec("rate", 1.0, "Playback speed factor (> 0).", read_only=True, check=_positive("rate")),
    ParamSpec("loop", False, "Start over at the end (the clock jumps back).", read_only=True),
    ParamSpec("publish_clock", True, "Publish /clock with the bag's receive time.", read_only=True),
    ParamSpec("clock_period_s", 0.01, "Period of /clock between messages, seconds (> 0).", read_only=True,
              check=_positive("clock_period_s")),
    ParamSpec("start_delay_s", 0.5, "Wait before the first message, seconds (lets subscribers connect).",
              min=0.0, max=3600.0, read_only=True),
    ParamSpec("topics", [""], "Play only these topics (empty: all).", read_only=True),
    ParamSpec("wait_for_subscribers_s", 0.0, "Before playing, wait up to this long until every played topic has "
              "a subscriber (seconds).", min=0.0, max=3600.0, read_only=True),
)


class BagPlayer(Node):
    """Plays one bag in a background thread (see module docstring)."""

    def __init__(self) -> None:
        super().__init__("bag_player")
        from kinema4d_core.bags import bag_topics, bag_storage

        p = declare_params(self, PARAMS)
        self.bag_path = str(p["bag_path"])
        self.rate = float(p["rate"])
        self.loop = bool(p["loop"])
        self.publish_clock = bool(p["publish_clock"])
        self.clock_period = float(p["clock_period_s"])
        self.start_delay = float(p["start_delay_s"])
        self.wait_subs = float(p["wait_for_subscribers_s"])
        only = [str(t) for t in p["topics"] if str(t)]
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
        if not self.pubs:
            # (an empty topic list would make iter_messages play every topic, with no publisher)
            raise ConfigError(f"none of the selected topics can be played: {skipped or sorted(available)}",
                              field="topics", fix="install the message packages of those topics, or choose "
                                                  "topics whose types are installed")
        self.clock_pub = self.create_publisher(Clock, "/clock", qos) if self.publish_clock else None
        self.status_pub = self.create_publisher(String, "bag_player/status", LATCHED)
        self.published = 0
        self.loops = 0
        self.state, self.failure = "waiting", ""
        self.health = Health(lambda text: self.get_logger().warning(text))
        self.diagnostics = Diagnostics(self, self.health, self._diagnostic_state)
        self._stop_event = threading.Event()
        self._play_thread = threading.Thread(target=self._play, daemon=True)
        self._play_thread.start()
        self.get_logger().info(f"playing {self.bag_path} ({len(self.pubs)} topics) at rate {self.rate}"
                               f"{', looping' if self.loop else ''}")

    def _diagnostic_state(self) -> tuple[int, str, dict]:
        values = {"state": self.state, "loops": self.loops, "published": self.published, "bag_path": self.bag_path}
        if self.state == "failed":
            return ERROR, f"playback failed: {self.failure}", values
        return OK, f"{self.state}: {self.published} messages from {self.bag_path}", values

    def _send_status(self, state: str) -> None:
        self.state = state
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
                    self.health.count("published")
                self.loops += 1
                if bag_t0 is None:              # nothing to play: looping would spin without end
                    self.get_logger().warning("the selected topics hold no messages")
                    break
                if not self.loop:
                    break
                self._send_status("playing")
        except Exception as exc:  # noqa: BLE001 - reported on the status topic, the node stays up
            reason = str(exc) if isinstance(exc, Kinema4DError) else f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"playback stopped: {reason}")
            self.failure = reason
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
