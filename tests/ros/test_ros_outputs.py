"""Outputs a ROS user consumes, with real processes on loopback DDS: /diagnostics from every node
(rates, drops / rejections with reasons, model state), the prediction as a timed sequence with
matching camera_info, the Simulate result (where the outputs are, summary figures) and the
goal's ee_poses frame honoured through TF or refused."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tests.ros.rosproc import NodeProcess, RosClient, publish_until, wait_for
from tests.ros.test_inference_node import _done, _goal, _rgb_image, _status_and_image_pub, inference  # noqa: F401
from tests.ros.test_inference_node import small_calibration  # noqa: F401

pytestmark = pytest.mark.ros

NODES = ("projector_node", "robot_state_node", "inference_node", "calibration_node", "sim_world_node", "bag_player")


@pytest.mark.slow
def test_every_node_publishes_diagnostics_with_rates_drops_and_model_state(ros_env, tmp_path, small_calibration):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from sensor_msgs.msg import JointState

    from tests.replay.replay_helpers import write_recording

    calib, _camera = small_calibration
    bag = write_recording(tmp_path / "rec", episodes=[(100.0, 5)], h=12, w=16)
    client = RosClient(ros_env)
    seen: dict[str, list] = {}
    lock = threading.Lock()

    def on_diag(msg: DiagnosticArray) -> None:
        with lock:
            for st in msg.status:
                seen.setdefault(st.name, []).append((st.level[0] if isinstance(st.level, bytes) else int(st.level),
                                                     st.message, st.hardware_id, {kv.key: kv.value for kv in st.values}))

    client.node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 100)
    bad = client.node.create_publisher(JointState, "joint_states", 10)
    procs = [
        NodeProcess("projector_node", ros_env, tmp_path / "projector.log",
                    ros_args=["-p", f"calibration_file:={calib}"]),
        NodeProcess("robot_state_node", ros_env, tmp_path / "robot_state.log"),
        NodeProcess("inference_node", ros_env, tmp_path / "inference.log",
                    ros_args=["-p", f"calibration_file:={calib}", "-p", f"output_root:={tmp_path / 'runs'}"]),
        NodeProcess("calibration_node", ros_env, tmp_path / "calibration.log",
                    ros_args=["-p", f"calibration_file:={calib}", "-p", "overlay_period_s:=0.0"]),
        NodeProcess("sim_world_node", ros_env, tmp_path / "sim_world.log",
                    ros_args=["-p", "width:=64", "-p", "height:=48", "-p", "rate_hz:=5.0"]),
        NodeProcess("bag_player_node", ros_env, tmp_path / "player.log",
                    ros_args=["-p", f"bag_path:={bag}", "-p", "loop:=true", "-p", "publish_clock:=false",
                              "-p", "topics:=[/camera/image_raw]"]),
    ]
    try:
        def names_seen():
            with lock:
                return all(n in seen for n in NODES)
        wait_for(names_seen, 90, f"a diagnostic status from each of {NODES}; seen: {sorted(seen)}; logs: "
                                 + "\n".join(p.output()[-600:] for p in procs))

        def rejected(node: str, key: str):
            with lock:
                return [s for s in seen[node] if int(s[3].get(key, "0")) >= 1]
        # a malformed joint state (2 names, 1 position): rejected by each joint input, counted with the reason
        publish_until(bad, lambda: JointState(name=["panda_joint1", "panda_joint2"], position=[0.0]),
                      lambda: rejected("projector_node", "rejected.joint_state")
                      and rejected("robot_state_node", "rejected.joint_states"), 30, "the bad joint state rejected")
        for node, key in (("projector_node", "joint_state"), ("robot_state_node", "joint_states")):
            level, message, hw, values = rejected(node, f"rejected.{key}")[0]
            assert hw == "kinema4d"
            assert values[f"reject_reason.{key}"], values        # the reason travels with the counter
            assert int(values["rejected_total"]) >= 1
        wait_for(lambda: any(s[0] == DiagnosticStatus.WARN[0] and "rejected or dropped" in s[1]
                             for s in seen["robot_state_node"]), 10, "a WARN naming the rejection")
        with lock:
            warn = next(s for s in seen["robot_state_node"] if s[0] == DiagnosticStatus.WARN[0]
                        and "rejected or dropped" in s[1])
        assert "position" in warn[1] or "joint" in warn[1], warn[1]    # the last reason is in the message
        # input rates: robot_state and projector receive the sim world's joint states
        wait_for(lambda: any(float(s[3].get("rate_hz.joint_states_received", "0")) > 0
                             for s in seen["robot_state_node"]), 30, "a joint_states rate on robot_state_node")
        wait_for(lambda: any(float(s[3].get("rate_hz.frames_published", "0")) > 0 for s in seen["sim_world_node"]),
                 30, "the sim world's frame rate")
        # model state of inference, playback state of the player
        with lock:
            inf = seen["inference_node"][-1][3]
            player = seen["bag_player"]
            calib_values = seen["calibration_node"][-1][3]
        assert inf["backend"] == "static-scene" and inf["model_loaded"] == "True" and inf["busy"] == ""
        assert calib_values["calibration_file"] == str(calib)
        wait_for(lambda: any(int(s[3].get("count.published", "0")) > 0 for s in seen["bag_player"]), 30,
                 "bag_player published messages")
        assert all(s[3]["bag_path"] == str(bag) for s in player)
        for p in procs:
            assert p.alive(), p.output()[-2000:]
    finally:
        client.close()
        for p in procs:
            p.stop()


def _stamp(msg) -> int:
    """Nanoseconds (an int: float seconds since 1970 lose the nanoseconds)."""
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _ee_goal(poses: np.ndarray, frame_id: str):
    from geometry_msgs.msg import PoseStamped
    from scipy.spatial.transform import Rotation

    from kinema4d_interfaces.action import Simulate

    goal = Simulate.Goal()
    for T in poses:
        ps = PoseStamped()
        ps.header.frame_id = frame_id
        ps.pose.position.x, ps.pose.position.y, ps.pose.position.z = (float(v) for v in T[:3, 3])
        q = Rotation.from_matrix(T[:3, :3]).as_quat()
        ps.pose.orientation.x, ps.pose.orientation.y, ps.pose.orientation.z, ps.pose.orientation.w = (float(v) for v in q)
        goal.ee_poses.append(ps)
    return goal


@pytest.mark.slow
def test_prediction_is_a_timed_sequence_and_result_says_where_and_ee_frames_follow_tf(inference):  # noqa: F811
    from rclpy.action import ActionClient
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage

    from kinema4d_core.robot import load_robot
    from kinema4d_core.rollout import load_rollout
    from kinema4d_interfaces.action import Simulate
    from kinema4d_ros import qos
    from kinema4d_ros.conversions import matrix_to_transform
    from kinema4d_ros.nodes.inference_node import PREDICTION_QOS

    proc, client, camera, runs = inference
    status, done, pub_img = _status_and_image_pub(client, camera)
    images, infos = [], []
    client.node.create_subscription(Image, "kinema4d/prediction/image", images.append, PREDICTION_QOS)
    client.node.create_subscription(CameraInfo, "kinema4d/prediction/camera_info", infos.append, PREDICTION_QOS)
    # the camera frame carries a stamp far from the node clock: the prediction starts at it
    from builtin_interfaces.msg import Time

    first_stamp = Time(sec=1_600_000_000, nanosec=123_456_789)

    def stamped_image():
        msg = _rgb_image(camera)
        msg.header.stamp = first_stamp
        return msg

    publish_until(pub_img, stamped_image, lambda: status and status[-1]["has_image"], 20,
                  "the node to hold a camera frame")
    action = ActionClient(client.node, Simulate, "kinema4d/simulate")
    assert action.wait_for_server(timeout_sec=20), "kinema4d/simulate server not available"
    robot = load_robot("panda")

    def run(goal):
        handle = wait_for(_done(action.send_goal_async(goal)), 20, "goal response").result()
        assert handle.accepted
        return wait_for(_done(handle.get_result_async()), 120, "goal result").result().result

    # 1. a joint trajectory over 4 s resampled to 49 frames: frames 4 / 48 s apart
    result = run(_goal(robot))
    assert result.success, result.message
    assert result.run_id and result.output_dir.endswith(result.run_id)
    assert {"rollout.npz", "rgb.mp4", "run.json"} <= set(result.files)
    assert result.frames == 49 and result.backend == "static-scene" and result.seed == 42
    assert result.frame_period_s == pytest.approx(4.0 / 48, abs=1e-6)
    wait_for(lambda: len(images) == 49 and len(infos) == 49, 20, "49 prediction images and camera_infos")
    stamps = np.array([_stamp(m) for m in images], dtype=np.int64)
    assert stamps[0] == first_stamp.sec * 1_000_000_000 + first_stamp.nanosec, \
        "frame 0 must carry the conditioning camera image's stamp, not the node clock"
    assert np.all(np.diff(stamps) > 0)
    np.testing.assert_allclose(np.diff(stamps) * 1e-9, 4.0 / 48, atol=2e-9)
    assert [_stamp(m) for m in infos] == list(stamps)
    assert {m.header.frame_id for m in images} == {m.header.frame_id for m in infos} == {camera.child_frame}
    assert (infos[0].width, infos[0].height) == (images[0].width, images[0].height)
    np.testing.assert_allclose(np.reshape(infos[0].k, (3, 3)), load_rollout(result.output_dir).K, atol=1e-9)

    # 2. ee_poses in a frame TF does not know: refused, naming the frame and the fix
    q0 = robot.home()
    T_base_ee = np.stack([robot.ee_pose(np.clip(q0 + 0.03 * i, robot.lower, robot.upper)) for i in range(4)])
    refused = run(_ee_goal(T_base_ee, "table"))
    assert not refused.success and "'table'" in refused.message and robot.config.base_frame in refused.message
    assert "publish TF" in refused.message

    # 3. the same poses given in the base frame and in a TF-connected frame give the same rollout
    in_base = run(_ee_goal(T_base_ee, robot.config.base_frame))
    assert in_base.success, in_base.message
    T_base_table = np.eye(4)
    T_base_table[:3, :3] = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    T_base_table[:3, 3] = [0.3, -0.1, 0.05]
    tf_pub = client.node.create_publisher(TFMessage, "/tf_static", qos.LATCHED)
    tf_pub.publish(TFMessage(transforms=[matrix_to_transform(T_base_table, robot.config.base_frame, "table")]))
    T_table_ee = np.linalg.inv(T_base_table) @ T_base_ee
    via_tf = None
    for _ in range(20):      # the latched transform reaches the node after discovery
        via_tf = run(_ee_goal(T_table_ee, "table"))
        if via_tf.success or "TF has no transform" not in via_tf.message:
            break
        time.sleep(0.25)
    assert via_tf.success, via_tf.message
    a, b = load_rollout(in_base.output_dir), load_rollout(via_tf.output_dir)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_allclose(a.pointmap, b.pointmap, atol=1e-6)

    # 4. prediction_timing realtime: the same stamps, and frame i published at start + t_i
    from tests.ros.test_projector_node import _set_params

    _set_params(client, "inference_node", prediction_timing="realtime")
    arrivals: list[tuple[float, int]] = []
    client.node.create_subscription(Image, "kinema4d/prediction/image",
                                    lambda m: arrivals.append((time.monotonic(), _stamp(m))), PREDICTION_QOS)
    time.sleep(1.0)                 # let the new subscription match before the goal
    result = run(_goal(robot))
    assert result.success, result.message
    wait_for(lambda: len(arrivals) == 49, 20, "49 realtime prediction images")
    t, st = np.array([a for a, _ in arrivals]), np.array([b for _, b in arrivals], dtype=np.int64)
    np.testing.assert_allclose(np.diff(st) * 1e-9, 4.0 / 48, atol=2e-9)
    assert t[-1] - t[0] >= 4.0 - 0.3, f"realtime frames arrived over {t[-1] - t[0]:.2f} s, not ~4 s"
    action.destroy()
