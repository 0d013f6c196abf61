"""``kinema4d project``: joint trajectory + robot + calibrated camera -> robot condition folder."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from kinema4d_core.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "project", help="render a robot trajectory into a calibrated camera (robot pointmap, mask, RGB)",
        description="Resample a joint trajectory to --frames frames, run forward kinematics and render the "
                    "robot into the calibrated camera. Writes robot_pointmap.npz, mask_pointmap.mp4 and "
                    "mask_video.mp4 into --out (all or nothing).")
    p.add_argument("--robot", required=True, help="robot name (see urdf/) or path to a robot config yaml")
    p.add_argument("--calibration", required=True, type=Path, help="camera calibration YAML (camera_info + extrinsics)")
    p.add_argument("--trajectory", required=True, type=Path, help="trajectory .npz (positions / velocities / ee_poses)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--frames", type=int, default=49, help="frames after uniform resampling (default 49)")
    p.add_argument("--height", type=int, default=None, help="render height; needs --width (K is scaled)")
    p.add_argument("--width", type=int, default=None, help="render width; needs --height (K is scaled)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kinema4d_core.camera import load_calibration
    from kinema4d_core.projection import check_camera_frame, project_trajectory, save_robot_condition
    from kinema4d_core.robot import load_robot
    from kinema4d_core.trajectory import load_trajectory_file

    start = time.perf_counter()
    if (args.height is None) != (args.width is None):
        raise InputError("--height and --width must be given together", field="--height/--width",
                         fix="pass both, e.g. --height 480 --width 720, or neither")
    if args.height is not None and (args.height < 8 or args.width < 8):
        raise InputError(f"image {args.height}x{args.width} is too small", field="--height/--width",
                         fix="use at least 8x8 pixels")
    if args.frames < 2:
        raise InputError(f"must be >= 2, got {args.frames}", field="--frames", fix="e.g. --frames 49")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"{args.out} exists and is not a folder", field="--out", fix="choose a folder path")
    robot = load_robot(args.robot)
    camera = load_calibration(args.calibration)
    check_camera_frame(camera, robot, source=str(args.calibration))
    if args.height is not None:
        camera = camera.resized(args.height, args.width)
    traj = load_trajectory_file(args.trajectory, robot)
    cond = project_trajectory(robot, camera, traj, n_frames=args.frames, with_rgb=True)
    save_robot_condition(cond, args.out)
    pixels = cond.mask.reshape(cond.n_frames, -1).sum(axis=1)
    print(f"kinema4d project: {cond.n_frames} frames {camera.width}x{camera.height}, robot visible in "
          f"{int((pixels > 0).sum())}/{cond.n_frames} frames, {int(pixels.sum())} robot pixels "
          f"(mean {pixels.mean():.1f}/frame), {time.perf_counter() - start:.2f} s -> {args.out}")
    return 0
