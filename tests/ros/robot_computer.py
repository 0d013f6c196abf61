"""A stand-in "robot computer" for the TF and acceptance tests, run as its own process on the
test's domain (loopback discovery, the domain chosen by the test).

It publishes what a lab's robot computer does:

- a robot_state_publisher-like TF: the robot base's links on /tf at 20 Hz, fixed links
  (``world -> base``) on /tf_static, and the camera driver's static chain from ``camera_link`` to
  ``camera_color_optical_frame`` (directly, or through ``camera_color_frame`` as realsense2_camera
  does when ``T_link_color`` is given);
- joint states at 20 Hz: all joints on ``/joint_states`` (default), or, as franka_ros2 does, the arm
  only on ``/joint_states`` and the gripper joints on ``gripper_topic``, with the Panda names'
  ``panda_`` prefix replaced by ``joint_prefix`` (e.g. ``fr3_``);
- optionally a RealSense-like camera at 10 Hz (``camera`` key): jpeg ``CompressedImage`` on
  ``<image_topic>/compressed`` (image_transport ``compressed``), 16UC1 depth in millimetres on
  ``depth_topic`` and ``camera_info`` from a calibration file.

Usage: ``python robot_computer.py '<json>'`` with keys ``base`` (robot base frame), ``q`` (Panda joint
positions, config order), ``T_link_optical`` (4x4 camera_link -> optical), optional ``T_link_color``
(4x4 camera_link -> camera_color_frame; then optical = color @ inv(color) @ T_link_optical),
``link_prefix`` (default ``panda_``), ``joint_prefix`` (default ``panda_``), ``gripper_topic``,
``camera`` = {calibration, image_topic, depth_topic, info_topic, depth_mm}. Runs until SIGINT / SIGTERM.
"""

from __future__ import annotations

import json
import signal
import sys


def camera_pattern(height: int, width: int):
    """The colour image the fake camera sends: a smooth gradient (jpeg keeps it within a few levels)."""
    import numpy as np

    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1),
                     np.full_like(x, 128)], axis=-1).astype(np.uint8)


def main() -> int:
    cfg = json.loads(sys.argv[1])
    import numpy as np
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, JointState
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
    link_prefix = cfg.get("link_prefix", "panda_")
    joint_prefix = cfg.get("joint_prefix", "panda_")
    names = [n.replace("panda_", joint_prefix, 1) for n in robot.joint_names]
    gripper_topic = cfg.get("gripper_topic")
    pub_grip = node.create_publisher(JointState, gripper_topic, 10) if gripper_topic else None
    n_arm = len(names) - 1 if gripper_topic else len(names)        # the Panda config: 7 arm joints + finger

    stamp = node.get_clock().now().to_msg()
    T_link = np.eye(4)
    T_link[:3, 3] = [0.0, 0.0, 0.333]
    T_link_optical = np.asarray(cfg["T_link_optical"], dtype=np.float64)
    static = [matrix_to_transform(np.eye(4), "world", base, stamp)]
    if "T_link_color" in cfg:                # realsense2_camera: camera_link -> color frame -> optical
        T_link_color = np.asarray(cfg["T_link_color"], dtype=np.float64)
        static += [matrix_to_transform(T_link_color, "camera_link", "camera_color_frame", stamp),
                   matrix_to_transform(np.linalg.inv(T_link_color) @ T_link_optical, "camera_color_frame",
                                       "camera_color_optical_frame", stamp)]
    else:
        static.append(matrix_to_transform(T_link_optical, "camera_link", "camera_color_optical_frame", stamp))
    pub_static.publish(TFMessage(transforms=static))

    def tick() -> None:
        now = node.get_clock().now().to_msg()
        pub_tf.publish(TFMessage(transforms=[matrix_to_transform(T_link, base, f"{link_prefix}link1", now)]))
        pub_js.publish(JointState(header=Header(stamp=now), name=names[:n_arm],
                                  position=[float(v) for v in q[:n_arm]]))
        if pub_grip is not None:            # franka_gripper publishes both fingers (the 2nd is a mimic joint)
            finger = names[-1]
            pub_grip.publish(JointState(header=Header(stamp=now), name=[finger, finger[:-1] + "2"],
                                        position=[float(q[-1])] * 2))

    node.create_timer(0.05, tick)

    cam_cfg = cfg.get("camera")
    if cam_cfg:
        from kinema4d_core.camera import load_calibration
        from kinema4d_ros.conversions import camera_model_to_info, numpy_to_compressed, numpy_to_image

        camera = load_calibration(cam_cfg["calibration"])
        optical = camera.child_frame
        pub_img = node.create_publisher(CompressedImage, cam_cfg["image_topic"] + "/compressed", 10)
        pub_depth = node.create_publisher(Image, cam_cfg["depth_topic"], 10)
        pub_info = node.create_publisher(CameraInfo, cam_cfg["info_topic"], 10)
        rgb = camera_pattern(camera.height, camera.width)
        depth = np.full((camera.height, camera.width), int(cam_cfg.get("depth_mm", 1500)), np.uint16)

        def camera_tick() -> None:
            now = node.get_clock().now().to_msg()
            pub_info.publish(camera_model_to_info(camera, now))
            pub_depth.publish(numpy_to_image(depth, "16UC1", optical, now))
            pub_img.publish(numpy_to_compressed(rgb, "jpeg", optical, now))

        node.create_timer(0.1, camera_tick)

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
