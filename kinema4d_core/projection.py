"""The projection job: joint trajectory -> robot condition (pointmaps, masks, robot RGB) in a camera.

``project_trajectory`` resamples the trajectory to ``n_frames`` (uniform over the episode), runs
forward kinematics, renders every frame with the exact rasterizer and normalizes the pointmap
sequence (Kinema4D's per-sequence min-max). Frames: camera optical frame, metres.

Output folder (``save_robot_condition``, written all at once through ``StagedOutput``):
- ``robot_pointmap.npz``: pointmap (T,H,W,3) f32 metres, depth (T,H,W) f32, mask (T,H,W) bool,
  link_id (T,H,W) i16, rgb (T,H,W,3) u8, joint_positions (T,N), joint_names (N,) str,
  K (3,3), T_base_camera (4,4), norm_low (3,), norm_high (3,)
- ``mask_pointmap.mp4``: the normalized robot pointmap as pseudo-RGB (Robo4D ``mask_pointmap``)
- ``mask_video.mp4``: the robot RGB render on black (Robo4D ``mask_videos``)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from kinema4d_core.camera import CameraModel
from kinema4d_core.conditioning import Normalization, apply_normalization, pointmap_normalization, pointmap_to_rgb
from kinema4d_core.errors import InputError
from kinema4d_core.io import StagedOutput, write_mp4, write_npz
from kinema4d_core.mesh import LinkMesh
from kinema4d_core.render import RobotRenderer

if TYPE_CHECKING:
    from kinema4d_core.robot import RobotModel

CONDITION_FILE = "robot_pointmap.npz"
POINTMAP_VIDEO = "mask_pointmap.mp4"
RGB_VIDEO = "mask_video.mp4"
VIDEO_FPS = 12.0


@dataclass(frozen=True, eq=False)
class RobotCondition:
    """Robot condition sequence in one camera (camera optical frame, metres).

    pointmap (T,H,W,3) f32 metric XYZ (0 off-robot); depth (T,H,W) f32 planar z; mask (T,H,W) bool;
    link_id (T,H,W) i16 (-1 off-robot); rgb (T,H,W,3) u8 robot render (zeros if not rendered);
    joint_positions (T,N) at the rendered frames; K (3,3); T_base_camera (4,4);
    normalization: the sequence extrema used for the [0,1] pointmap (``normalized_pointmap``).
    """

    pointmap: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    link_id: np.ndarray
    rgb: np.ndarray
    joint_positions: np.ndarray
    joint_names: tuple[str, ...]
    K: np.ndarray
    T_base_camera: np.ndarray
    normalization: Normalization

    @property
    def n_frames(self) -> int:
        return int(self.mask.shape[0])

    def normalized_pointmap(self) -> np.ndarray:
        """(T,H,W,3) float32 in [0,1] on robot pixels, 0 elsewhere."""
        return apply_normalization(self.pointmap, self.normalization, self.mask)


_RENDERER_CACHE: list[tuple[CameraModel, tuple[LinkMesh, ...], bool, RobotRenderer]] = []


def renderer_for(camera: CameraModel, meshes: Sequence[LinkMesh], *, with_rgb: bool) -> RobotRenderer:
    """A RobotRenderer for this camera object and mesh tuple, reused while both stay the same objects."""
    meshes = tuple(meshes)
    for cam, ms, rgb, renderer in _RENDERER_CACHE:
        if cam is camera and rgb == with_rgb and len(ms) == len(meshes) and all(a is b for a, b in zip(ms, meshes)):
            return renderer
    renderer = RobotRenderer(camera, meshes, with_rgb=with_rgb)
    _RENDERER_CACHE[:] = [(camera, meshes, with_rgb, renderer)]
    return renderer


def check_camera_frame(camera: CameraModel, robot: RobotModel, *, source: str = "calibration") -> None:
    """Refuse a camera whose extrinsics are not expressed in the robot's base frame.

    ``camera.T_base_camera`` is the pose of the optical frame in ``camera.parent_frame``; rendering
    FK poses (base frame) through a pose given in another frame would misplace the robot silently.
    ``source`` names where the calibration came from (a file path) for the error message.
    """
    if camera.parent_frame != robot.config.base_frame:
        raise InputError(f"the extrinsics are given in frame '{camera.parent_frame}', but the base frame of "
                         f"robot '{robot.config.name}' is '{robot.config.base_frame}'",
                         field=f"{source}: extrinsics.parent_frame",
                         fix="calibrate the camera against the robot's base frame (the pose of the camera "
                             "optical frame in that frame), or use the robot this calibration was made for")


def project_trajectory(robot, camera: CameraModel, traj, *, n_frames: int = 49, with_rgb: bool = True) -> RobotCondition:
    """Resample ``traj`` to ``n_frames``, run FK and render the robot in ``camera``.

    robot: ``RobotModel``; traj: ``JointTrajectory`` over ``robot.joint_names``.
    Raises InputError when the robot is visible in no frame.
    """
    from kinema4d_core.trajectory import resample

    _check_joint_order(robot, traj)
    return render_trajectory(robot, camera, resample(traj, n_frames), with_rgb=with_rgb)


def _check_joint_order(robot, traj) -> None:
    if tuple(traj.joint_names) != tuple(robot.joint_names):
        raise InputError(f"joint order {tuple(traj.joint_names)} differs from the robot's "
                         f"{tuple(robot.joint_names)}", field="trajectory.joint_names",
                         fix="build the trajectory with kinema4d_core.trajectory for this robot")


def render_trajectory(robot, camera: CameraModel, traj, *, with_rgb: bool = True) -> RobotCondition:
    """Render every frame of ``traj`` as it is (no resampling): FK and the robot in ``camera``.

    Use with ``trajectory.sample_at`` to put the robot at each camera frame's own stamp.
    Raises InputError when the robot is visible in no frame.
    """
    _check_joint_order(robot, traj)
    Q = robot.check_positions(traj.positions, field="trajectory.positions")
    poses = robot.mesh_poses_batch(Q)                                   # (T,M,4,4) T_base_mesh
    renderer = renderer_for(camera, robot.meshes, with_rgb=with_rgb)
    T, H, W = Q.shape[0], camera.height, camera.width
    pointmap = np.zeros((T, H, W, 3), np.float32)
    depth = np.zeros((T, H, W), np.float32)
    mask = np.zeros((T, H, W), bool)
    link_id = np.full((T, H, W), -1, np.int16)
    rgb = np.zeros((T, H, W, 3), np.uint8)
    T_camera_base = camera.T_camera_base
    for t in range(T):
        res = renderer.render(T_camera_base @ poses[t])
        pointmap[t], depth[t], mask[t], link_id[t] = res.pointmap, res.depth, res.mask, res.link_id
        if res.rgb is not None:
            rgb[t] = res.rgb
    if not mask.any():
        raise InputError(f"the robot is not visible from this camera in any of the {T} frames",
                         field="camera",
                         fix="check extrinsics (T_base_camera: camera optical frame in the robot base frame, "
                             "z pointing at the robot), parent_frame and the image size")
    norm = pointmap_normalization(pointmap, mask)
    return RobotCondition(pointmap=pointmap, depth=depth, mask=mask, link_id=link_id, rgb=rgb,
                          joint_positions=Q.copy(), joint_names=tuple(robot.joint_names), K=camera.K.copy(),
                          T_base_camera=camera.T_base_camera.copy(), normalization=norm)


def save_robot_condition(cond: RobotCondition, out_dir: str | os.PathLike) -> None:
    """Write robot_pointmap.npz, mask_pointmap.mp4 and mask_video.mp4 into ``out_dir`` (all or nothing)."""
    with StagedOutput(out_dir) as st:
        write_npz(st.path(CONDITION_FILE), dict(
            pointmap=cond.pointmap, depth=cond.depth, mask=cond.mask, link_id=cond.link_id, rgb=cond.rgb,
            joint_positions=np.asarray(cond.joint_positions, np.float64),
            joint_names=np.array(cond.joint_names, dtype=np.str_), K=np.asarray(cond.K, np.float64),
            T_base_camera=np.asarray(cond.T_base_camera, np.float64),
            norm_low=cond.normalization.low, norm_high=cond.normalization.high))
        write_mp4(st.path(POINTMAP_VIDEO), pointmap_to_rgb(cond.normalized_pointmap()), fps=VIDEO_FPS)
        write_mp4(st.path(RGB_VIDEO), cond.rgb, fps=VIDEO_FPS)


_KEYS = ("pointmap", "depth", "mask", "link_id", "rgb", "joint_positions", "joint_names", "K", "T_base_camera",
         "norm_low", "norm_high")


def load_robot_condition(out_dir: str | os.PathLike) -> RobotCondition:
    """Read a folder written by ``save_robot_condition`` (only the .npz is needed)."""
    path = Path(out_dir) / CONDITION_FILE
    if not path.is_file():
        raise InputError(f"{path} does not exist", field="out_dir",
                         fix="pass a folder written by `kinema4d project`")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as exc:
        raise InputError(f"{path} is not a readable .npz ({exc})", field="out_dir", fix="run the projection again") \
            from None
    missing = [k for k in _KEYS if k not in data]
    if missing:
        raise InputError(f"{path.name} lacks {missing}", field=missing[0], fix="run the projection again")
    T, H, W = data["mask"].shape
    for key, shape in (("pointmap", (T, H, W, 3)), ("depth", (T, H, W)), ("link_id", (T, H, W)),
                       ("rgb", (T, H, W, 3)), ("K", (3, 3)), ("T_base_camera", (4, 4)), ("norm_low", (3,)),
                       ("norm_high", (3,))):
        if data[key].shape != shape:
            raise InputError(f"shape {data[key].shape}, expected {shape}", field=key, fix="run the projection again")
    return RobotCondition(
        pointmap=data["pointmap"].astype(np.float32), depth=data["depth"].astype(np.float32),
        mask=data["mask"].astype(bool), link_id=data["link_id"].astype(np.int16), rgb=data["rgb"].astype(np.uint8),
        joint_positions=data["joint_positions"], joint_names=tuple(str(n) for n in data["joint_names"]),
        K=data["K"], T_base_camera=data["T_base_camera"],
        normalization=Normalization(low=data["norm_low"], high=data["norm_high"]))
