"""robot_state_node as a real process over loopback DDS (own domain id via the ros_env fixture).

Specification:
- robot_description (latched) is the URDF with every mesh as a file:// URI of an existing file;
- /tf carries parent -> child of every movable joint, stamped with the joint state's stamp, and
  /tf_static (latched) the fixed joints; composed, panda_link0 -> panda_hand equals the core FK;
- bad joint states (NaN, length mismatch, unknown name) are rejected and counted in
  robot_state/status, and the node still answers a good state afterwards.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

from kinema4d_ros.conversions import transform_to_matrix
from tests.ros.rosproc import NodeProcess, RosClient, publish_until, wait_for

pytestmark = pytest.mark.ros


def _compose(transforms: dict, root: str, frame: str) -> np.ndarray:
    """T_root_frame from {child: TransformStamped} by walking child -> parent up to root."""
    T = np.eye(4)
    while frame != root:
        tf = transforms[frame]
        T = transform_to_matrix(tf) @ T
        frame = tf.header.frame_id
    return T


def test_description_tf_matches_fk_and_bad_states_are_counted(ros_env, tmp_path):
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String
    from tf2_msgs.msg import TFMessage

    from kinema4d_core.robot import load_robot
    from kinema4d_ros import qos
    from kinema4d_ros.nodes.robot_state_node import TF_QOS

    robot = load_robot("panda")
    q = 0.5 * (robot.lower + robot.upper) + 0.3 * (robot.upper - robot.lower) * np.sin(np.arange(robot.n_joints) + 1)
    node = NodeProcess("robot_state_node", ros_env, tmp_path / "node.log",
                       ros_args=["-p", "robot:=panda", "-p", "strict_joint_names:=true"])
    client = RosClient(ros_env)
    try:
        descriptions: list = []
        tf: list = []
        tf_static: list = []
        status: list = []
        client.node.create_subscription(String, "robot_description", descriptions.append, qos.LATCHED)
        client.node.create_subscription(TFMessage, "/tf", tf.append, TF_QOS)
        client.node.create_subscription(TFMessage, "/tf_static", tf_static.append, qos.LATCHED)
        client.node.create_subscription(String, "robot_state/status", lambda m: status.append(json.loads(m.data)),
                                        qos.LATCHED)
        pub = client.node.create_publisher(JointState, "joint_states", qos.STREAM_OUT)

        def joint_state(values, names=None, sec=100) -> JointState:
            msg = JointState(name=list(names or robot.joint_names), position=[float(v) for v in values])
            msg.header.stamp = Time(sec=sec, nanosec=250_000_000)
            return msg

        def tf_with_stamp(sec: int):
            return next((m for m in tf if m.transforms and m.transforms[0].header.stamp.sec == sec), None)

        # robot_description: latched, URDF text, meshes as existing file:// paths
        wait_for(lambda: descriptions, 20.0, "the latched robot_description\n" + node.output())
        text = descriptions[-1].data
        assert "<robot" in text and "package://" not in text
        uris = re.findall(r'filename="([^"]+)"', text)
        assert uris and all(u.startswith("file://") for u in uris)
        for uri in set(uris):
            assert Path(unquote(urlparse(uri).path)).is_file(), uri

        # a good joint state -> /tf with its stamp; composed with /tf_static it equals the core FK
        msg = publish_until(pub, lambda: joint_state(q, sec=100), lambda: tf_with_stamp(100), 20.0,
                            "/tf for the first joint state\n" + node.output())
        wait_for(lambda: tf_static, 10.0, "the latched /tf_static")
        assert all(t.header.stamp.nanosec == 250_000_000 for t in msg.transforms)
        moving = {t.child_frame_id: t for t in msg.transforms}
        static = {t.child_frame_id: t for t in tf_static[-1].transforms}
        assert {"panda_link1", "panda_link7", "panda_leftfinger", "panda_rightfinger"} <= set(moving)
        assert {"panda_link8", "panda_hand", "panda_hand_tcp"} <= set(static) and not set(static) & set(moving)
        fk = robot.frame_poses(q)
        both = {**static, **moving}
        for frame in ("panda_hand", "panda_hand_tcp", "panda_rightfinger"):
            np.testing.assert_allclose(_compose(both, "panda_link0", frame), fk[frame], atol=1e-6, err_msg=frame)

        # bad states: rejected with the reason and counted; the node keeps running
        nan = q.copy()
        nan[2] = np.nan
        pub.publish(joint_state(nan, sec=201))
        pub.publish(JointState(name=list(robot.joint_names), position=[0.0] * 3))
        pub.publish(joint_state([*q, 0.0], [*robot.joint_names, "no_such_joint"], sec=202))
        wait_for(lambda: status and status[-1]["rejected_total"] >= 3, 10.0,
                 "3 rejected joint states in robot_state/status\n" + node.output())
        assert "joint_states" in status[-1]["last_reason"]
        assert node.alive(), node.output()
        assert tf_with_stamp(201) is None and tf_with_stamp(202) is None

        q2 = robot.home()
        msg = publish_until(pub, lambda: joint_state(q2, sec=300), lambda: tf_with_stamp(300), 10.0,
                            "/tf for a good joint state after the bad ones\n" + node.output())
        moving = {t.child_frame_id: t for t in msg.transforms}
        np.testing.assert_allclose(_compose({**static, **moving}, "panda_link0", "panda_hand"),
                                   robot.frame_poses(q2)["panda_hand"], atol=1e-6)
        log = node.output()
        assert "not finite" in log and "no_such_joint" in log and "positions" in log
    finally:
        client.close()
        code = node.stop()
    assert code == 0, node.output()


def test_rate_limit_keeps_the_newest_state_and_sim_time_starts(ros_env, tmp_path):
    """At 2 Hz a burst of 10 states gives at most a few /tf messages, and the newest one is among them."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import JointState
    from tf2_msgs.msg import TFMessage

    from kinema4d_core.robot import load_robot
    from kinema4d_ros import qos
    from kinema4d_ros.nodes.robot_state_node import TF_QOS

    robot = load_robot("panda")
    node = NodeProcess("robot_state_node", ros_env, tmp_path / "node.log",
                       ros_args=["-p", "publish_rate_limit_hz:=2.0", "-p", "use_sim_time:=true"])
    client = RosClient(ros_env)
    try:
        tf: list = []
        client.node.create_subscription(TFMessage, "/tf", tf.append, TF_QOS)
        pub = client.node.create_publisher(JointState, "joint_states", qos.STREAM_OUT)

        def joint_state(sec: int) -> JointState:
            msg = JointState(name=list(robot.joint_names), position=[float(v) for v in robot.home()])
            msg.header.stamp = Time(sec=sec)
            return msg

        publish_until(pub, lambda: joint_state(1), lambda: tf, 20.0, "the first /tf\n" + node.output())
        n0 = len(tf)
        for sec in range(10, 20):
            pub.publish(joint_state(sec))
        wait_for(lambda: any(m.transforms[0].header.stamp.sec == 19 for m in tf), 5.0,
                 "/tf of the newest state of the burst\n" + node.output())
        assert len(tf) - n0 <= 3, [m.transforms[0].header.stamp.sec for m in tf]
    finally:
        client.close()
        node.stop()
