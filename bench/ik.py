"""Kinematics figures: FK of all frames, mesh_poses_batch for 49 frames, IK along a smooth 49-pose
trajectory (target: <= 5 ms in total) and cold-start IK. Prints figures; asserts nothing.

Run: .venv/bin/python bench/ik.py [--robot panda] [--repeats 20]
Timings are the best of ``repeats`` runs (the machine may be shared), median in brackets.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np

from kinema4d_core.robot import load_robot
from kinema4d_core.trajectory import IKSolver, from_ee_poses


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(best, median) wall time of fn in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times))


def smooth_trajectory(robot, n: int = 49) -> np.ndarray:
    """(n,N) a smooth joint path from home (a quarter sine wave on every joint, within limits)."""
    q0 = robot.home()
    span = np.minimum(robot.upper - q0, q0 - robot.lower)
    s = np.sin(np.linspace(0.0, np.pi / 2, n))[:, None]
    return q0 + 0.5 * span * s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--robot", default="panda")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    t0 = time.perf_counter()
    robot = load_robot(args.robot)
    t_model = time.perf_counter() - t0
    t0 = time.perf_counter()
    meshes = robot.meshes
    t_mesh = time.perf_counter() - t0
    print(f"robot {args.robot}: {robot.n_joints} joints, {len(meshes)} meshes, "
          f"{sum(m.n_faces for m in meshes)} triangles")
    print(f"load model {t_model * 1e3:.1f} ms, meshes {t_mesh * 1e3:.1f} ms (disk cache may apply)")

    q = robot.home()
    best, med = timed(lambda: robot.frame_poses(q), args.repeats * 50)
    print(f"frame_poses (all {len(robot.frame_names)} frames, validated): {best * 1e6:.1f} us [{med * 1e6:.1f}]")
    best, med = timed(lambda: robot.ee_pose(q), args.repeats * 50)
    print(f"ee_pose: {best * 1e6:.1f} us [{med * 1e6:.1f}]")

    Q = smooth_trajectory(robot)
    best, med = timed(lambda: robot.mesh_poses_batch(Q), args.repeats)
    print(f"mesh_poses_batch 49 frames: {best * 1e3:.2f} ms [{med * 1e3:.2f}]")

    poses = np.stack([robot.ee_pose(qq) for qq in Q])
    solver = IKSolver(robot)
    traj = from_ee_poses(robot, poses, q_seed=Q[0], solver=solver)
    err = max(np.abs(robot.ee_pose(qq) - T).max() for qq, T in zip(traj.positions, poses))
    best, med = timed(lambda: from_ee_poses(robot, poses, q_seed=Q[0], solver=solver), args.repeats)
    print(f"IK smooth 49-pose trajectory: {best * 1e3:.2f} ms total [{med * 1e3:.2f}] "
          f"(target <= 5 ms), max |FK(IK(T)) - T| = {err:.2e}")

    rng = np.random.default_rng(0)
    targets = [robot.ee_pose(rng.uniform(robot.lower, robot.upper)) for _ in range(50)]
    t0 = time.perf_counter()
    results = [solver.solve(T, robot.home()) for T in targets]
    dt = time.perf_counter() - t0
    ok = sum(r.converged for r in results)
    print(f"IK cold start from home (random reachable targets): {dt / len(targets) * 1e3:.2f} ms/solve, "
          f"{ok}/{len(targets)} converged")


if __name__ == "__main__":
    main()
