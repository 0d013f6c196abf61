"""Benchmark of the MuJoCo simulated lab: render and physics cost, episode time, task outcomes,
and agreement of the sim's robot mask with the core renderer. Prints figures; asserts nothing.

    MUJOCO_GL=egl .venv/bin/python bench/simworld.py [--height 480 --width 720] [--seeds 10]
        [--policies scripted,aim-2cm,aim-4cm,aim-8cm]   (outcome table per policy)
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

from kinema4d_core.simworld import READY_Q, SimConfig, SimWorld  # noqa: E402


def timed(fn, repeat: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=720)
    ap.add_argument("--seeds", type=int, default=10, help="seeds per task for the outcome table")
    ap.add_argument("--outcome-size", type=int, nargs=2, default=(120, 180), metavar=("H", "W"),
                    help="image size for the outcome runs (outcomes do not depend on it)")
    ap.add_argument("--policies", default="scripted", help="comma-separated policies for the outcome table")
    args = ap.parse_args()

    t = time.perf_counter()
    world = SimWorld(SimConfig(width=args.width, height=args.height))
    print(f"build SimWorld ({args.width}x{args.height}): {time.perf_counter() - t:.2f} s")
    print(f"render (rgb + depth + segmentation): {timed(world.render, 10):.1f} ms/frame")
    print(f"physics frame (1/12 s, {world.config.steps_per_frame} steps): "
          f"{timed(lambda: world.step_to(np.array(READY_Q)), 50):.2f} ms")
    t = time.perf_counter()
    ep = world.run_episode("push", 49, 0)
    print(f"49-frame push episode at {args.width}x{args.height}: {time.perf_counter() - t:.2f} s")

    from kinema4d_core.render import RobotRenderer
    from kinema4d_core.robot import load_robot

    robot = load_robot("panda")
    cam = world.camera_model()
    renderer = RobotRenderer(cam, robot.meshes)
    ious = []
    for k in range(0, 49, 8):
        core = renderer.render(cam.T_camera_base @ robot.mesh_poses(ep.joint_positions[k])).mask
        sim = ep.robot_mask[k]
        ious.append((core & sim).sum() / (core | sim).sum())
    print(f"robot mask IoU sim vs core renderer: min {min(ious):.4f}, mean {np.mean(ious):.4f}")
    world.close()

    h, w = args.outcome_size
    with SimWorld(SimConfig(width=w, height=h)) as small:
        for policy in args.policies.split(","):
            for task in ("push", "pick_place"):
                wins = []
                for seed in range(args.seeds):
                    e = small.run_episode(task, 49, seed, policy=policy)
                    wins.append(e.success)
                    print(f"  {task:10s} {policy} seed {seed:3d}: success={e.success!s:5s} "
                          f"displacement={e.metrics['cube_displacement_m']:.3f} m "
                          f"to_target={e.metrics['distance_to_target_m']:.3f} m lift={e.metrics['max_lift_m']:.3f} m")
                print(f"{task} {policy}: {sum(wins)}/{len(wins)} successes")


if __name__ == "__main__":
    main()
