"""sim_world_node: the MuJoCo simulated lab (kinema4d_core.simworld) on ROS 2.

Publishes the sim camera and robot state at ``rate_hz``; the service runs scripted episodes.

| kind      | name                     | type                         | QoS / notes                                     |
|-----------|--------------------------|------------------------------|-------------------------------------------------|
| publisher | joint_states             | sensor_msgs/JointState       | reliable, depth 10; Panda joints incl. finger 1 |
| publisher | camera/image_raw         | sensor_msgs/Image rgb8       | STREAM_OUT; frame <optical frame>               |
| publisher | camera/depth/image_raw   | sensor_msgs/Image 32FC1      | STREAM_OUT; planar z, metres, 0 = no surface    |
| publisher | camera/camera_info       | sensor_msgs/CameraInfo       | STREAM_OUT; ground truth = calibration/sim_camera.yaml |
| publisher | sim/robot_mask           | sensor_msgs/Image mono8      | STREAM_OUT; 255 on robot pixels, 0 elsewhere    |
| publisher | sim/object_poses         | geometry_msgs/PoseArray      | STREAM_OUT; cube pose in panda_link0            |
| publisher | /clock                   | rosgraph_msgs/Clock          | only with publish_clock; sim time               |
| service   | sim_world/run_episode    | std_srvs/Trigger             | blocks until the episode ends; message = JSON   |

Parameters (validated, described): rate_hz (12.0), publish_clock (false), task (push|pick_place),
episode_frames (49), seed (0; autostart episodes use seed, seed+1, ...), autostart (false),
width / height (720 / 480, read-only).

Threads: one worker thread owns the SimWorld (its GL context) and does all stepping, rendering
and publishing; the service callback (reentrant group, MultiThreadedExecutor) queues a request
and waits for the worker's result. An episode that fails (any exception) is answered with
success=false and the reason, and the worker keeps running; on shutdown a running episode ends
at its next frame. Response ``success`` says whether the episode ran; the task
outcome is ``"success"`` in the JSON message (task, seed, success, frames, cube_displacement_m, ...).
Stamps are sim time when publish_clock is true (monotonic across episodes), wall time otherwise.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import traceback
from dataclasses import replace

from geometry_msgs.msg import Pose, PoseArray
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_srvs.srv import Trigger

from kinema4d_core.errors import Kinema4DError
from kinema4d_ros import qos
from kinema4d_ros.conversions import camera_model_to_info, make_header, numpy_to_image, seconds_to_stamp
from kinema4d_ros.diagnostics import OK, WARN, Diagnostics, Health
from kinema4d_ros.node_main import run_node
from kinema4d_ros.params import ParamSpec, declare_params

TASK_CHOICES = ("push", "pick_place")
PARAMS = (
    ParamSpec("rate_hz", 12.0, "Frame rate of published frames and of the sim's control loop, Hz.", 0.5, 60.0),
    ParamSpec("publish_clock", False, "Publish /clock with sim time and stamp messages with it."),
    ParamSpec("task", "push", "Scripted task run by sim_world/run_episode.", choices=TASK_CHOICES),
    ParamSpec("episode_frames", 49, "Frames per episode (published, one per 1/rate_hz of sim time).", 2, 10000),
    ParamSpec("seed", 0, "Seed of the next episode (cube placement noise); autostart counts up from it.",
              0, 2**31 - 1),
    ParamSpec("autostart", False, "Run episodes back to back without service calls."),
    ParamSpec("width", 720, "Image width in pixels.", 16, 4096, read_only=True),
    ParamSpec("height", 480, "Image height in pixels.", 16, 4096, read_only=True),
)


class SimWorldNode(Node):
    def __init__(self) -> None:
        super().__init__("sim_world_node")
        self.params = declare_params(self, PARAMS, on_change=self._on_change)
        self._jobs: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._init_error: Exception | None = None
        self._clock_offset = 0.0      # sim seconds of all finished episodes / idle frames
        self.health = Health(lambda text: self.get_logger().warning(text))
        self._last_error = ""
        self.pub_joints = self.create_publisher(JointState, "joint_states", 10)
        self.pub_rgb = self.create_publisher(Image, "camera/image_raw", qos.STREAM_OUT)
        self.pub_depth = self.create_publisher(Image, "camera/depth/image_raw", qos.STREAM_OUT)
        self.pub_info = self.create_publisher(CameraInfo, "camera/camera_info", qos.STREAM_OUT)
        self.pub_mask = self.create_publisher(Image, "sim/robot_mask", qos.STREAM_OUT)
        self.pub_poses = self.create_publisher(PoseArray, "sim/object_poses", qos.STREAM_OUT)
        self.pub_clock = self.create_publisher(Clock, "/clock", 10)
        self.create_service(Trigger, "sim_world/run_episode", self._on_run_episode,
                            callback_group=ReentrantCallbackGroup())
        self._worker = threading.Thread(target=self._work, name="sim_world", daemon=True)
        self._worker.start()
        self._ready.wait(120.0)
        if self._init_error is not None:
            raise self._init_error
        self.diagnostics = Diagnostics(self, self.health, self._diagnostic_state)
        self.get_logger().info(f"sim world ready: {self.params['width']}x{self.params['height']} at "
                               f"{self.params['rate_hz']} Hz, task {self.params['task']}")

    # ---- parameters / service ------------------------------------------------------------------
    def _on_change(self, changed: dict) -> str | None:
        self.params.update(changed)
        return None

    def _on_run_episode(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        done = threading.Event()
        box: dict = {}
        self._jobs.put((self.params["task"], int(self.params["episode_frames"]), int(self.params["seed"]), done, box))
        while not done.wait(0.2):
            if self._stop.is_set():
                response.success, response.message = False, json.dumps({"error": "node is shutting down"})
                return response
        response.success = "error" not in box
        response.message = json.dumps(box.get("summary") or {"error": box.get("error")})
        return response

    # ---- worker --------------------------------------------------------------------------------
    def _work(self) -> None:
        try:
            from kinema4d_core.simworld import SimConfig, SimWorld

            cfg = replace(SimConfig(), width=int(self.params["width"]), height=int(self.params["height"]),
                          rate_hz=float(self.params["rate_hz"]))
            self.world = SimWorld(cfg)
            self.camera = self.world.camera_model()
        except Exception as exc:  # reported by __init__
            self._init_error = exc
            self._ready.set()
            return
        self._ready.set()
        next_auto_seed = int(self.params["seed"])
        try:
            while not self._stop.is_set():
                try:
                    job = self._jobs.get(timeout=1.0 / self.params["rate_hz"])
                except queue.Empty:
                    job = None
                if job is None and self.params["autostart"]:
                    job = (self.params["task"], int(self.params["episode_frames"]), next_auto_seed, None, {})
                    next_auto_seed += 1
                if job is None:
                    try:
                        self._publish_idle()
                    except Exception:
                        if self._shutting_down():
                            break               # Ctrl-C: the context (and its publishers) are gone
                        raise
                    continue
                self._run(*job)
        finally:
            self.world.close()

    def _shutting_down(self) -> bool:
        return self._stop.is_set() or not self.context.ok()

    def _set_rate(self) -> None:
        rate = float(self.params["rate_hz"])
        if abs(rate - self.world.config.rate_hz) > 1e-9:
            self.world.config = replace(self.world.config, rate_hz=rate)

    def _run(self, task: str, n_frames: int, seed: int, done: threading.Event | None, box: dict) -> None:
        self._set_rate()
        period = 1.0 / self.world.config.rate_hz
        next_time = time.monotonic()
        offset = self._clock_offset

        def on_frame(index: int, frame) -> None:
            nonlocal next_time
            if self._stop.is_set():
                raise RuntimeError("stopped")           # end a long episode at once on shutdown
            delay = next_time - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_time = max(next_time + period, time.monotonic() - period)
            self._publish(frame, offset + frame.stamp)

        try:
            episode = self.world.run_episode(task, n_frames, seed, on_frame=on_frame)
            box["summary"] = episode.summary()
            self._last_error = ""
            self._clock_offset = offset + float(episode.stamps[-1]) + period
            self.get_logger().info(f"episode done: {json.dumps(box['summary'])}")
        except Kinema4DError as exc:
            box["error"] = str(exc)
            self.get_logger().error(f"episode failed: {exc}")
            self._last_error = box["error"]
        except Exception as exc:  # noqa: BLE001 - answered in the service response; the worker stays up
            if self._shutting_down():
                box["error"] = "node is shutting down"      # Ctrl-C mid-episode: publishers are gone
            else:
                box["error"] = f"{type(exc).__name__}: {exc}"
                self._last_error = box["error"]
                self.get_logger().error(f"episode failed: {box['error']}\n{traceback.format_exc()}")
        finally:
            if done is not None:
                done.set()

    def _publish_idle(self) -> None:
        self._set_rate()
        frame = self.world.render()
        self._publish(frame, self._clock_offset)
        self._clock_offset += 1.0 / self.world.config.rate_hz

    def _publish(self, frame, sim_seconds: float) -> None:
        stamp = seconds_to_stamp(sim_seconds) if self.params["publish_clock"] else self.get_clock().now().to_msg()
        if self.params["publish_clock"]:
            self.pub_clock.publish(Clock(clock=stamp))
        optical = self.camera.child_frame
        self.pub_rgb.publish(numpy_to_image(frame.rgb, "rgb8", optical, stamp))
        self.pub_depth.publish(numpy_to_image(frame.depth, "32FC1", optical, stamp))
        self.pub_mask.publish(numpy_to_image(frame.robot_mask, "mono8", optical, stamp))
        self.pub_info.publish(camera_model_to_info(self.camera, stamp))
        js = JointState(header=make_header(self.camera.parent_frame, stamp), name=list(self.world.joint_names),
                        position=[float(v) for v in frame.joint_positions])
        self.pub_joints.publish(js)
        poses = PoseArray(header=make_header(self.camera.parent_frame, stamp))
        for p in frame.object_poses:
            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = (float(v) for v in p[:3])
            pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in p[3:])
            poses.poses.append(pose)
        self.pub_poses.publish(poses)
        self.health.count("frames_published")

    def _diagnostic_state(self) -> tuple[int, str, dict]:
        values = {"task": self.params["task"], "rate_hz_target": float(self.params["rate_hz"]),
                  "last_error": self._last_error}
        if self._last_error:
            return WARN, f"last episode failed: {self._last_error}", values
        return OK, f"publishing the sim world at {self.params['rate_hz']} Hz", values

    def close(self) -> None:
        self._stop.set()
        self._worker.join(timeout=10.0)


def main(argv: list[str] | None = None) -> int:
    return run_node(SimWorldNode, multithreaded=True, threads=4, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
