"""Benchmark of the robot pointmap rasterizer (prints figures; asserts nothing).

Targets (issue 2): 49-frame 480x720 pointmap of the full Panda visual mesh <= 0.5 s; single
frame FK + render <= 15 ms; 0 wrong pixels against an exact ray cast.

    .venv/bin/python bench/render.py [--threads 2] [--height 480 --width 720] [--repeat 20]
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="numba threads (default 2)")
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=720)
    ap.add_argument("--repeat", type=int, default=20, help="timed single-frame renders per case")
    ap.add_argument("--no-oracle", action="store_true", help="skip the embreex exactness check")
    args = ap.parse_args()
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))

    import numba
    import numpy as np

    from kinema4d_core.camera import CameraModel, look_at
    from kinema4d_core.render import RobotRenderer
    from kinema4d_core.robot import load_robot

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    robot = load_robot("panda")
    H, W = args.height, args.width
    f = 0.83 * W
    K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]])
    T = look_at([1.3, 0.6, 0.8], [0.0, 0.0, 0.45])
    rng = np.random.default_rng(0)
    Q = np.tile(robot.home(), (49, 1))
    Q[:, 0] = np.linspace(-0.7, 0.7, 49)
    Q[:, 3] = np.linspace(-2.3, -1.4, 49)
    print(f"Panda visual mesh: {sum(m.n_faces for m in robot.meshes)} triangles, {len(robot.meshes)} meshes; "
          f"{W}x{H}; numba threads {numba.get_num_threads()}; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs (figures are only meaningful on an otherwise idle machine)")
    for lens, D in (("pinhole", [0.0] * 5), ("plumb_bob", [-0.2, 0.08, 0.001, -0.002, -0.01])):
        cam = CameraModel(W, H, K, D, "plumb_bob", T)
        t0 = time.perf_counter()
        renderer = RobotRenderer(cam, robot.meshes, with_rgb=True)
        t_init = time.perf_counter() - t0
        q = robot.home()
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = renderer.render_base(robot.mesh_poses(q))
            times.append(time.perf_counter() - t0)
        t_single = float(np.median(times))
        t0 = time.perf_counter()
        poses = robot.mesh_poses_batch(Q)
        Tcb = cam.T_camera_base
        masks = 0
        for k in range(49):
            masks += int(renderer.render(Tcb @ poses[k]).mask.sum())
        t_seq = time.perf_counter() - t0
        print(f"[{lens:9s}] construct+warm-up {t_init:6.2f} s | FK+render 1 frame median {t_single * 1e3:6.2f} ms "
              f"(target <= 15) | 49 frames FK+render {t_seq:5.3f} s (target <= 0.5) | robot px/frame "
              f"{masks / 49:.0f}")
        if not args.no_oracle:
            from embreex import rtcore_scene
            from embreex.mesh_construction import TriangleMesh

            q = rng.uniform(robot.lower, robot.upper)
            Tcm = Tcb @ robot.mesh_poses(q)
            res = renderer.render(Tcm)
            t0 = time.perf_counter()
            scene = rtcore_scene.EmbreeScene()
            for mesh, Tm in zip(robot.meshes, Tcm):
                v = mesh.vertices.astype(np.float64) @ Tm[:3, :3].T + Tm[:3, 3]
                TriangleMesh(scene=scene, vertices=v[mesh.faces].astype(np.float32))
            rays = cam.pixel_rays().reshape(-1, 2)
            d = np.concatenate([rays, np.ones((rays.shape[0], 1))], axis=1)
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            out = scene.run(np.zeros(d.shape, np.float32), d.astype(np.float32), output=1)
            t_oracle = time.perf_counter() - t0
            hit = (out["geomID"] >= 0).reshape(H, W)
            z = (out["tfar"] * d[:, 2]).reshape(H, W)
            both = hit & res.mask
            dz = np.abs(z[both] - res.depth[both])
            print(f"            vs embreex ray cast ({t_oracle * 1e3:.0f} ms): wrong pixels {int((hit != res.mask).sum())} "
                  f"of {int(hit.sum())} robot pixels, |dz| median {np.median(dz) * 1e6:.2f} um max {dz.max() * 1e6:.2f} um")


if __name__ == "__main__":
    main()
