"""A stand-in "robot computer" for the TF tests, run as its own process on the test's domain.

It publishes what a lab's robot computer does: a robot_state_publisher-like TF (the robot base's
links on /tf at 20 Hz, fixed links and the camera driver's ``camera_link ->
camera_color_optical_frame`` on /tf_static) and ``/joint_states``. Usage:
``python robot_computer.py '<json>'`` with keys base, q (panda joint positions), T_link_optical
(4x4). Runs until SIGINT / SIGTERM.
"""

from __future__ import annotations

import json
import signal
import sys


def main() -> int:
    cfg = json.loads(sys.argv[1])
    import numpy as np
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Header
    from tf2_msgs.msg import TFMessage

    from kinema4d_core.robot import load_robot
    from kinema4d_ros.conversions import matrix_to_transform

    rclpy.init()
    node = rclpy.create_node("robot_state_publisher")
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pub_static = node.create_publisher(TFMessage, "/tf_static", latched)
    pub_tf = node.create_publisher(TFMessage, "/tf", 100)
    pub_js = node.create_publisher(JointState, "/joint_states", 10)
    robot = load_robot("panda")
    q = np.asarray(cfg["q"], dtype=np.float64)
    base = cfg["base"]
    stamp = node.get_clock().now().to_msg()
    T_link = np.eye(4)
    T_link[:3, 3] = [0.0, 0.0, 0.333]
    pub_static.publish(TFMessage(transforms=[
        matrix_to_transform(np.eye(4), "world", base, stamp),
        matrix_to_transform(np.asarray(cfg["T_link_optical"]), "camera_link", "camera_color_optical_frame", stamp)]))

    def tick() -> None:
        now = node.get_clock().now().to_msg()
        pub_tf.publish(TFMessage(transforms=[matrix_to_transform(T_link, base, "panda_link1", now)]))
        pub_js.publish(JointState(header=Header(stamp=now),
                                  name=list(robot.joint_names), position=[float(v) for v in q]))

    node.create_timer(0.05, tick)
    stop = {"now": False}
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.update(now=True))
    while not stop["now"]:
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
