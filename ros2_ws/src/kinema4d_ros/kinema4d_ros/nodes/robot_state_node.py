"""robot_state_node: /robot_description and the robot's TF tree from joint states (robot_state_publisher's job).

| kind | name | type | QoS |
|---|---|---|---|
| sub | `joint_states` | sensor_msgs/JointState | sensor data (best effort, keep last 5): matches any publisher |
| pub | `robot_description` | std_msgs/String: the URDF, `package://` mesh URIs rewritten to `file://` absolute paths | reliable, transient local, depth 1 |
| pub | `/tf` | tf2_msgs/TFMessage: parent -> child link of every movable URDF joint named in the joint state | reliable, volatile, keep last 100 (tf2's) |
| pub | `/tf_static` | tf2_msgs/TFMessage: parent -> child link of every fixed URDF joint, once | reliable, transient local, depth 1 |
| pub | `robot_state/status` | std_msgs/String JSON (counters, rejected, last_reason) | reliable, transient local, depth 1 |

| parameter | default | meaning |
|---|---|---|
| robot | panda | robot config name (urdf/<name>.yaml) or robot yaml path (read-only) |
| publish_rate_limit_hz | 50.0 | at most this many /tf messages per second (0: one per joint state); a state arriving sooner is held and published when the period is over, so the newest state is never lost |
| strict_joint_names | false | reject joint states that name joints the robot does not have (false: ignore those names, as robot_state_publisher does) |
| status_period_s | 1.0 | period of robot_state/status (read-only) |
| use_sim_time | false | standard; /tf carries the joint state's own stamp either way; the node's timers (rate limit, status) run on the steady clock, so they work without /clock |

Transforms: one TransformStamped per URDF joint, header.frame_id = parent link, child_frame_id =
child link, T_parent_child computed with the core FK (``RobotModel.frame_poses``), metres,
stamped with the joint state's header.stamp (the node clock's now when that stamp is zero).
Mimic joints follow their leader. A partial joint state (some joints missing) is accepted, and
only the transforms of the joints it names (and their mimic followers) are published, as
robot_state_publisher does. Fixed joints go to /tf_static once at start (stamped now).

Bad joint states (names / positions length mismatch, duplicate or unknown names, NaN / inf) are
rejected with the reason (logged, throttled per reason, counted in the status) and the node
keeps running; measured positions slightly past the URDF limits are clipped into them (counted
as ``clipped_to_limits``), as the projector does.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage

from kinema4d_core.errors import ConfigError, InputError
from kinema4d_ros import qos
from kinema4d_ros.conversions import matrix_to_transform
from kinema4d_ros.diagnostics import OK, Diagnostics, Health, steady_timer
from kinema4d_ros.node_main import run_node
from kinema4d_ros.params import ParamSpec, declare_params

#: tf2_ros.TransformBroadcaster's QoS for /tf.
TF_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)

PARAMS = (
    ParamSpec("robot", "panda", "Robot config name (urdf/<name>.yaml) or path to a robot yaml.", read_only=True),
    ParamSpec("publish_rate_limit_hz", 50.0, "At most this many /tf messages per second (0: one per joint "
              "state); a state arriving sooner is published when the period is over.", min=0.0, max=1000.0),
    ParamSpec("strict_joint_names", False, "Reject joint states naming joints the robot does not have "
              "(false: ignore those names, as robot_state_publisher does)."),
    ParamSpec("status_period_s", 1.0, "Period of robot_state/status (seconds).", min=0.05, max=60.0,
              read_only=True),
)

MOVABLE_TYPES = ("revolute", "prismatic", "continuous")
_FILENAME_RE = re.compile(r"""(filename\s*=\s*)(["'])(.*?)\2""")


@dataclass(frozen=True)
class Edge:
    """One URDF joint: parent link -> child link."""

    joint: str
    type: str
    parent: str
    child: str


def urdf_edges(urdf_text: str) -> list[Edge]:
    """Every joint of the URDF as a parent -> child edge, in file order."""
    root = ET.fromstring(urdf_text)
    out = []
    for j in root.findall("joint"):
        parent, child = j.find("parent"), j.find("child")
        if parent is None or child is None:
            raise ConfigError(f"joint '{j.get('name')}' has no parent or child link", field="urdf",
                              fix="give every <joint> a <parent link=..> and <child link=..>")
        out.append(Edge(j.get("name"), j.get("type", ""), parent.get("link"), child.get("link")))
    return out


def rewrite_resource_uris(urdf_text: str, package_dirs, base_dir: Path) -> tuple[str, list[str]]:
    """URDF text with every ``filename=`` resource as a ``file://`` absolute path.

    ``package://pkg/rel`` is resolved through ``package_dirs`` (as the core does), relative paths
    against ``base_dir`` (the URDF's folder); other schemes are left as they are. Returns the text
    and the resolved paths that do not exist.
    """
    from kinema4d_core.robot import resolve_resource

    missing: list[str] = []

    def repl(m: re.Match) -> str:
        uri = m.group(3)
        if "://" in uri and not uri.startswith(("package://", "file://")):
            return m.group(0)
        path = resolve_resource(uri, package_dirs, base_dir, field="urdf").resolve()
        if not path.exists():
            missing.append(str(path))
        return f"{m.group(1)}{m.group(2)}{path.as_uri()}{m.group(2)}"

    return _FILENAME_RE.sub(repl, urdf_text), missing


def transforms_msgs(poses: dict[str, np.ndarray], edges: list[Edge], stamp) -> list[TransformStamped]:
    """TransformStamped parent -> child (T_parent_child) of ``edges`` from T_base_frame ``poses``."""
    return [matrix_to_transform(np.linalg.inv(poses[e.parent]) @ poses[e.child], e.parent, e.child, stamp)
            for e in edges]


class RobotStateNode(Node):
    """Joint states in, /tf + /tf_static + robot_description out (see module docstring)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("robot_state_node", **kwargs)
        self.health = Health(lambda text: self.get_logger().warning(text))
        self.p = declare_params(self, PARAMS, self._on_params)
        from kinema4d_core.robot import load_robot

        self.robot = load_robot(self.p["robot"])
        cfg = self.robot.config
        urdf_text = Path(cfg.urdf).read_text()
        self.description, missing = rewrite_resource_uris(urdf_text, cfg.package_dirs, Path(cfg.urdf).parent)
        for path in missing:
            self.get_logger().warning(f"robot_description: mesh {path} does not exist (RViz will not show it)")

        edges = urdf_edges(urdf_text)
        frames = set(self.robot.frame_names)
        unknown = sorted({n for e in edges for n in (e.parent, e.child) if n not in frames})
        if unknown:
            raise ConfigError(f"links {unknown} of {cfg.urdf} are not frames of the robot model", field="urdf",
                              fix="check the URDF")
        self.fixed_edges = [e for e in edges if e.type not in MOVABLE_TYPES]
        self.movable_edges = [e for e in edges if e.type in MOVABLE_TYPES]
        index = {n: i for i, n in enumerate(self.robot.joint_names)}
        # actuated joint index -> edges it moves (its own joint and its mimic followers)
        self._edges_of: dict[int, list[Edge]] = {i: [] for i in range(self.robot.n_joints)}
        for e in self.movable_edges:
            leader = self.robot.mimic_joints[e.joint][0] if e.joint in self.robot.mimic_joints else e.joint
            if leader not in index:
                raise ConfigError(f"joint '{e.joint}' is movable but not actuated by robot '{cfg.name}'",
                                  field="joint_names", fix="list it in the robot yaml's joint_names")
            self._edges_of[index[leader]].append(e)
        self._index = index
        self._q = self.robot.home()
        self._pending: tuple[np.ndarray, list[int], object] | None = None
        self._last_publish = -np.inf

        self.pub_description = self.create_publisher(String, "robot_description", qos.LATCHED)
        self.pub_tf = self.create_publisher(TFMessage, "/tf", TF_QOS)
        self.pub_tf_static = self.create_publisher(TFMessage, "/tf_static", qos.LATCHED)
        self.pub_status = self.create_publisher(String, "robot_state/status", qos.LATCHED)
        self.create_subscription(JointState, "joint_states", self._on_joint_state, qos.SENSOR_IN)
        # Timers run on the steady clock (steady_timer): with use_sim_time and no (or a paused)
        # /clock, ROS-time timers never fire, and a held-back joint state would never be published.
        self._flush_timer = None
        self._make_flush_timer()
        steady_timer(self, self.p["status_period_s"], self._publish_status)
        self.diagnostics = Diagnostics(self, self.health, lambda: (
            OK, f"publishing TF of {cfg.name} (base {cfg.base_frame})",
            {"robot": cfg.name, "base_frame": cfg.base_frame, "movable_joints": len(self.movable_edges)}))

        self.pub_description.publish(String(data=self.description))
        static = transforms_msgs(self.robot.frame_poses(self._q), self.fixed_edges, self.get_clock().now().to_msg())
        self.pub_tf_static.publish(TFMessage(transforms=static))
        self._publish_status()
        self.get_logger().info(
            f"robot_state ready: robot={cfg.name} base={cfg.base_frame} links={len(self.robot.link_names())} "
            f"movable joints={len(self.movable_edges)} fixed joints={len(self.fixed_edges)} "
            f"description={len(self.description)} chars")

    # ---- parameters -------------------------------------------------------------------------
    def _min_period(self) -> float:
        rate = float(self.p["publish_rate_limit_hz"])
        return 1.0 / rate if rate > 0 else 0.0

    def _make_flush_timer(self) -> None:
        if self._flush_timer is not None:
            self.destroy_timer(self._flush_timer)
            self._flush_timer = None
        period = self._min_period()
        if period > 0:
            # armed (reset) only while a state is held back
            self._flush_timer = steady_timer(self, period, self._flush, autostart=False)

    def _on_params(self, changed: dict) -> str | None:
        self.p.update(changed)
        if "publish_rate_limit_hz" in changed:
            self._make_flush_timer()
            if self._pending is not None:
                self._flush()
        return None

    # ---- input ------------------------------------------------------------------------------
    def _parse(self, msg: JointState) -> tuple[np.ndarray, list[int]]:
        """(positions of the named actuated joints, their indices); InputError with the reason."""
        names, pos = list(msg.name), list(msg.position)
        if len(names) != len(pos):
            raise InputError(f"{len(names)} names but {len(pos)} positions", field="joint_states.position",
                             fix="give one position per name")
        if not names:
            raise InputError("no joints named", field="joint_states.name", fix="name the joints")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InputError(f"joints {dupes} appear more than once", field="joint_states.name",
                             fix="name each joint once")
        mimics = self.robot.mimic_joints
        unknown = [n for n in names if n not in self._index and n not in mimics]
        if unknown and self.p["strict_joint_names"]:
            raise InputError(f"unknown joints {unknown} for robot '{self.robot.config.name}'",
                             field="joint_states.name",
                             fix=f"use {list(self.robot.joint_names)} (or set strict_joint_names:=false)")
        idx = [self._index[n] for n in names if n in self._index]
        if not idx:
            raise InputError(f"none of the robot's joints in {names}", field="joint_states.name",
                             fix=f"use {list(self.robot.joint_names)}")
        vals = np.array([p for n, p in zip(names, pos) if n in self._index], dtype=np.float64)
        bad = [self.robot.joint_names[i] for i, v in zip(idx, vals) if not np.isfinite(v)]
        if bad:
            raise InputError(f"joints {bad} are not finite", field="joint_states.position",
                             fix="publish finite positions")
        lo, hi = self.robot.lower[idx], self.robot.upper[idx]
        clipped = np.clip(vals, lo, hi)
        if np.any(clipped != vals):
            self.health.count("clipped_to_limits")
        return clipped, idx

    def _on_joint_state(self, msg: JointState) -> None:
        self.health.count("joint_states_received")
        try:
            vals, idx = self._parse(msg)
        except InputError as exc:
            self.health.reject("joint_states", str(exc))
            self._publish_status()
            return
        q = self._q.copy()
        q[idx] = vals
        self._q = q
        stamp = msg.header.stamp
        if stamp.sec == 0 and stamp.nanosec == 0:
            stamp = self.get_clock().now().to_msg()
        if self._pending is not None:           # merge: the held state's joints are published too
            self.health.count("merged")
            idx = sorted(set(idx) | set(self._pending[1]))
        self._pending = (q, idx, stamp)
        if time.monotonic() - self._last_publish >= self._min_period():
            self._flush()
        elif self._flush_timer is not None and self._flush_timer.is_canceled():
            self._flush_timer.reset()

    def _flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        pending, self._pending = self._pending, None
        if pending is None:
            return
        q, idx, stamp = pending
        t0 = time.perf_counter()
        try:
            poses = self.robot.frame_poses(q)
        except InputError as exc:                   # not expected: q is finite and within the limits
            self.health.reject("fk", str(exc))
            return
        edges = [e for i in sorted(set(idx)) for e in self._edges_of[i]]
        self.pub_tf.publish(TFMessage(transforms=transforms_msgs(poses, edges, stamp)))
        self._last_publish = time.monotonic()
        self.health.count("tf_published")
        self.health.latency((time.perf_counter() - t0) * 1e3)

    def _publish_status(self) -> None:
        cfg = self.robot.config
        self.pub_status.publish(String(data=self.health.to_json(
            node=self.get_name(), robot=cfg.name, base_frame=cfg.base_frame,
            movable_joints=len(self.movable_edges), fixed_joints=len(self.fixed_edges),
            publish_rate_limit_hz=float(self.p["publish_rate_limit_hz"]))))


def main(argv: list[str] | None = None) -> int:
    return run_node(RobotStateNode, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
