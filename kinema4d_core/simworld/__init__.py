"""MuJoCo simulated lab: Panda on a table, a 5 cm cube, a target region and a fixed oblique camera.

    world = SimWorld(SimConfig(width=720, height=480))
    episode = world.run_episode("push", n_frames=49, seed=3)    # frames, states, success from physics
    save_episode(episode, "episode.npz")
    world.close()

ROS-free; ``kinema4d_ros.nodes.sim_world_node`` publishes it. Set MUJOCO_GL=egl (default here).
"""

import os

# headless rendering (Mesa llvmpipe via EGL) unless the caller chose a backend before importing mujoco
os.environ.setdefault("MUJOCO_GL", "egl")

from kinema4d_core.simworld.episode import Episode, load_episode, save_episode  # noqa: E402
from kinema4d_core.simworld.scene import READY_Q, SimConfig  # noqa: E402
from kinema4d_core.simworld.tasks import TASKS  # noqa: E402
from kinema4d_core.simworld.world import SimFrame, SimWorld, run_episode  # noqa: E402

__all__ = ["Episode", "READY_Q", "SimConfig", "SimFrame", "SimWorld", "TASKS", "load_episode", "run_episode",
           "save_episode"]
