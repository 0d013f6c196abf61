"""Simulate one episode: the ONE ROS-free path from recorded or planned robot motion plus the
current camera image to a generated 4D rollout. The inference node, ``kinema4d simulate`` and the
batch runner (replay, evaluation) all call ``simulate_episode``.

The rules, in order (each a single place in the code):

1. Camera: the stream's image size (and its CameraInfo ``K`` when known) is checked against the
   calibration with ``camera.match_stream``: a different size is refused unless
   ``rescale_to_stream`` is asked for (then the calibration's K is rescaled to the stream; the
   image is never stretched). A first-frame depth must be registered to the image (same size).
2. Model size: a backend with a fixed generation size gets the image resized to it (colour: area
   average; depth: nearest) and the robot is rendered in the camera resized the same way (fx, cx
   by the width ratio, fy, cy by the height ratio, about pixel centres: ``CameraModel.resized``),
   so image and robot condition stay pixel-aligned even when the aspect ratio changes (the tiny
   preset's 48 x 96). The sizes are recorded in the metadata.
3. Joint limits: measured positions past a limit by at most ``limit_slack`` (encoder noise, a
   gripper squeezing past zero; 0.01 rad or m) are clipped into it and counted; a larger
   violation is refused with the joint and frame named (never clipped silently).
4. Robot timing: with ``frame_stamps`` (a recording: the selected camera frames' own stamps) the
   robot is rendered at the joint state interpolated at each stamp (``trajectory.sample_at``),
   one generated frame per camera frame; without them (a planned trajectory) at evenly spaced
   times over the trajectory (``trajectory.resample``). The rollout's metadata stores the times.
5. Steps: 0 means the backend's default (``BackendSpec.default_steps``).

Writing the rollout (``rollout.save_rollout``) is the caller's job: every caller stages its
outputs and moves them into place only when complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from kinema4d_core.errors import InputError
from kinema4d_core.types import CancelFn, Cancelled, GenerationRequest, ProgressFn

#: rad or m: measured joint states may overshoot the URDF limits by this much (clipped, counted)
LIMIT_SLACK = 0.01


@dataclass(frozen=True, eq=False)
class EpisodeRequest:
    """One episode to simulate (see the module docstring for the rules).

    Motion, exactly one of:
      trajectory: ``JointTrajectory`` whose columns name the joints of ``robot`` (any order),
        stamps in seconds in the camera's clock when ``frame_stamps`` is given;
      condition: an already rendered ``projection.RobotCondition`` (``kinema4d project``), used
        as is (camera and frames fixed; the first frame must be its size).
    robot: ``RobotModel``; camera: the calibration ``CameraModel`` (both needed with trajectory).
    first_frame: (H, W, 3) uint8 as the camera stream delivered it (H x W: the stream size).
    frame_stamps: (T,) seconds of the selected camera frames, or None (planned trajectory).
    first_depth: (H, W) float32 metres registered to ``first_frame``, or None.
    stream_K: (3, 3) the stream's CameraInfo intrinsics (checked against the calibration), or None.
    rescale_to_stream: accept a stream size different from the calibration (K rescaled).
    stream_source / calibration_source: name the stream (e.g. its topic) and the calibration (its
      file) in errors.
    n_frames: frames to generate without ``frame_stamps`` when the backend takes any length.
    max_extrapolation: seconds a frame stamp may lie outside the joint states (held at the end).
    steps: 0 = the backend's default.
    """

    first_frame: np.ndarray
    robot: Any = None
    camera: Any = None
    trajectory: Any = None
    condition: Any = None
    frame_stamps: np.ndarray | None = None
    first_depth: np.ndarray | None = None
    stream_K: np.ndarray | None = None
    rescale_to_stream: bool = False
    stream_source: str = "camera"
    calibration_source: str = "calibration"
    n_frames: int = 49
    max_extrapolation: float = 0.0
    limit_slack: float = LIMIT_SLACK
    seed: int = 42
    steps: int = 0
    guidance: float = 5.0
    guidance_mode: str = "faithful"


@dataclass(frozen=True, eq=False)
class PreparedEpisode:
    """What ``prepare_episode`` decided: the generation request (robot condition at the generated
    size), the camera it was rendered in, and the facts recorded in the rollout's metadata."""

    generation: GenerationRequest
    camera: Any
    info: dict[str, Any] = field(default_factory=dict)
    stream_camera: Any = None     # the calibration as it applies to the stream (its size and K)

    @property
    def condition(self) -> Any:
        return self.generation.robot


def clip_to_limits(robot: Any, names: Sequence[str], positions: np.ndarray,
                   slack: float = LIMIT_SLACK) -> tuple[np.ndarray, int]:
    """Clip measured positions (T,N) that overshoot the robot's limits by at most ``slack``
    (encoder noise, a gripper squeezing past zero); larger violations are left for the
    trajectory check to report. Returns (positions, number of clipped values)."""
    q = np.array(positions, np.float64, copy=True)
    index = {n: i for i, n in enumerate(robot.joint_names)}
    clipped = 0
    for col, name in enumerate(names):
        if name not in index:
            continue
        lo, hi = float(robot.lower[index[name]]), float(robot.upper[index[name]])
        v = q[:, col]
        near = ((v < lo) & (v >= lo - slack)) | ((v > hi) & (v <= hi + slack))
        clipped += int(near.sum())
        q[:, col] = np.where(near, np.clip(v, lo, hi), v)
    return q, clipped


def _resize(image: np.ndarray, hw: tuple[int, int], *, nearest: bool) -> np.ndarray:
    import cv2

    if image.shape[:2] == tuple(hw):
        return image
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    return cv2.resize(image, (hw[1], hw[0]), interpolation=interp)


def _check_frame(frame: Any) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise InputError(f"expected (H, W, 3) uint8, got {frame.shape} {frame.dtype}", field="first_frame",
                         fix="pass the camera image as 8-bit RGB")
    return frame


def prepare_episode(request: EpisodeRequest, backend: Any) -> PreparedEpisode:
    """Apply the rules of the module docstring; InputError/ConfigError name what is wrong."""
    from kinema4d_core.backends import check_request
    from kinema4d_core.registry import BackendSpec, backend_spec

    spec = backend_spec(backend.name)
    frames, size = BackendSpec.geometry(backend)
    steps = int(request.steps) or max(1, spec.default_steps)
    frame = _check_frame(request.first_frame)
    depth = None if request.first_depth is None else np.asarray(request.first_depth, np.float32)
    if (request.trajectory is None) == (request.condition is None):
        raise InputError("give exactly one of trajectory and condition", field="episode",
                         fix="a joint trajectory to render, or a robot condition from `kinema4d project`")
    if request.condition is not None:
        gen = GenerationRequest(first_frame=frame, robot=request.condition, first_depth=depth, seed=request.seed,
                                steps=steps, guidance=request.guidance, guidance_mode=request.guidance_mode)
        check_request(gen, num_frames=frames, size=size)
        return PreparedEpisode(gen, None, {"robot_times": "given condition", "steps": steps})
    if request.robot is None or request.camera is None:
        raise InputError("a trajectory needs the robot and the camera calibration", field="episode",
                         fix="pass robot= (RobotModel) and camera= (CameraModel)")
    from kinema4d_core.camera import match_stream
    from kinema4d_core.projection import check_camera_frame, render_trajectory
    from kinema4d_core.trajectory import from_positions, resample, sample_at

    robot = request.robot
    # 1. the stream against the calibration
    h, w = frame.shape[:2]
    camera = match_stream(request.camera, w, h, request.stream_K, rescale=request.rescale_to_stream,
                          source=request.stream_source)
    check_camera_frame(camera, robot, source=request.calibration_source)
    stream_camera = camera
    if depth is not None and depth.shape != (h, w):
        raise InputError(f"first depth is {depth.shape[1]}x{depth.shape[0]}, the image {w}x{h}", field="first_depth",
                         fix="register the depth image to the colour image (same size), or leave it out")
    info: dict[str, Any] = {"stream_size": [w, h], "calibration_size": [request.camera.width, request.camera.height],
                            "rescaled_to_stream": (w, h) != (request.camera.width, request.camera.height),
                            "stream_K_checked": request.stream_K is not None}
    # 2. the model's generation size
    if size is not None and tuple(size) != (h, w):
        camera = camera.resized(int(size[0]), int(size[1]))
        frame = np.ascontiguousarray(_resize(frame, size, nearest=False))
        depth = None if depth is None else _resize(depth, size, nearest=True)
    info["generated_size"] = [camera.width, camera.height]
    # 3. joint limits
    traj = request.trajectory
    positions, clipped = clip_to_limits(robot, traj.joint_names, traj.positions, request.limit_slack)
    traj = from_positions(robot, list(traj.joint_names), positions, stamps=traj.stamps)
    info["positions_clipped_to_limits"] = clipped
    # 4. robot timing
    if request.frame_stamps is not None:
        stamps = np.asarray(request.frame_stamps, np.float64).reshape(-1)
        if frames is not None and len(stamps) != frames:
            raise InputError(f"{len(stamps)} camera frames were selected, {backend.name} generates {frames}",
                             field="frame_stamps", fix=f"select {frames} camera frames (--frames {frames})")
        at = sample_at(traj, stamps, max_extrapolation=request.max_extrapolation, field="frame_stamps")
        info["robot_times"] = "frame stamps"
    else:
        at = resample(traj, frames or request.n_frames)
        info["robot_times"] = "evenly spaced over the trajectory"
    info["frame_stamps"] = None if at.stamps is None else [float(t) for t in at.stamps]
    cond = render_trajectory(robot, camera, at, with_rgb=getattr(backend, "variant", None) != "pm")
    gen = GenerationRequest(first_frame=frame, robot=cond, first_depth=depth, seed=request.seed, steps=steps,
                            guidance=request.guidance, guidance_mode=request.guidance_mode)
    check_request(gen, num_frames=frames, size=size)
    info["steps"] = steps
    return PreparedEpisode(gen, camera, info, stream_camera)


def simulate_episode(request: EpisodeRequest | PreparedEpisode, backend: Any, *, progress: ProgressFn | None = None,
                     should_cancel: CancelFn | None = None) -> Any:
    """Generate the rollout (``rollout.Rollout``) of one episode with ``backend``.

    ``request`` may be a ``PreparedEpisode`` (to keep the robot condition, e.g. as ground truth).
    Metadata gains ``episode``: the rules' outcome (frame stamps, clipped positions, sizes).
    Raises ``Cancelled`` when ``should_cancel()`` turns True.
    """
    prepared = request if isinstance(request, PreparedEpisode) else prepare_episode(request, backend)
    if should_cancel is not None and should_cancel():
        raise Cancelled("cancelled before generation")
    rollout = backend.generate(prepared.generation, progress=progress, should_cancel=should_cancel)
    rollout.metadata = dict(rollout.metadata, episode=dict(prepared.info))
    return rollout
