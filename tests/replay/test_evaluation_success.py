"""Success detection (kinema4d_core.success) on real renders: robot pixels never count as the
object, in an empty scene where the robot moves (ground truth with a slightly misregistered
robot mask, and a first-frame copy with the robot's ghost), and a real lift in the sim world
is detected."""

from __future__ import annotations

import numpy as np
import pytest

from kinema4d_core import success as S

H, W = 240, 360   # the backend comparison's size; the pixel criteria scale from 480x720


def _table_depth(camera):
    """Planar depth (m) of the table plane z = 0 seen by ``camera`` (NaN where not hit)."""
    rays = camera.pixel_rays()
    d_cam = np.concatenate([rays, np.ones(rays.shape[:2] + (1,))], -1)          # (H,W,3) at z_cam = 1
    R, t = camera.T_base_camera[:3, :3], camera.T_base_camera[:3, 3]
    dz = d_cam @ R[2]                                                            # base-frame z per unit depth
    depth = -t[2] / dz
    depth[~(depth > 0)] = np.nan
    return depth


@pytest.fixture(scope="module")
def empty_scene():
    """The Panda raising its arm over an empty table (no object), rendered with the real renderer:
    the ground-truth pointmap, and the robot mask rendered with a camera 2 px off (a typical
    calibration error) as evaluation would get it."""
    from dataclasses import replace

    from kinema4d_core.metrics import depth_to_pointmap
    from kinema4d_core.projection import render_trajectory
    from kinema4d_core.robot import load_robot
    from kinema4d_core.simworld.calibration import sim_camera_model
    from kinema4d_core.simworld.scene import SimConfig
    from kinema4d_core.trajectory import JointTrajectory

    robot = load_robot("panda")
    cam = sim_camera_model(SimConfig()).resized(H, W)
    T = 8
    q = np.repeat(robot.home()[None], T, 0)
    q[:, 1] += np.linspace(0.0, -0.6, T)        # shoulder back: the arm rises
    q[:, 3] += np.linspace(0.0, 0.8, T)         # elbow opens: the hand rises
    traj = JointTrajectory(robot.joint_names, q, np.arange(T) * 0.1)
    cond = render_trajectory(robot, cam, traj, with_rgb=False)
    table = _table_depth(cam)
    depth = np.where(cond.mask, cond.depth, table[None])
    pm = depth_to_pointmap(depth, cam.K)
    K_off = cam.K.copy()
    K_off[0, 2] += 2.0
    off = replace(cam, K=K_off, P=np.hstack([K_off, np.zeros((3, 1))]))
    mask_off = render_trajectory(robot, off, traj, with_rgb=False).mask
    return pm, cond.mask, mask_off, cam.T_base_camera


def test_an_empty_scene_with_a_moving_robot_is_no_success(empty_scene):
    pm, mask, mask_off, T_bc = empty_scene
    crit = S.SuccessCriteria(task="lift", lift_height=0.05)
    # exact masks: nothing but table and robot, so no object at all
    exact = S.detect_success(pm, mask, T_bc, crit)
    assert not exact.success and exact.frames_with_object == 0 and exact.object_pixels.max() == 0
    # a 2 px misregistered mask leaves robot slivers at its edges: never an object
    shifted = S.detect_success(pm, mask_off, T_bc, crit)
    assert not shifted.success and shifted.object_pixels.max() == 0
    assert shifted.summary()["robot_dilation_px"] == 2 and shifted.summary()["min_object_pixels"] == 5
    # a loose rule (1 px dilation, any pixel) takes the slivers for an object: the defaults must not
    loose = S.SuccessCriteria(task="lift", lift_height=0.05, min_object_pixels=1, robot_dilation_px=1,
                              reference_size=None)
    assert S.detect_success(pm, mask_off, T_bc, loose).frames_with_object > 0


def test_a_first_frame_copy_keeps_the_robots_ghost_out_of_the_object(empty_scene):
    pm, mask, mask_off, T_bc = empty_scene
    frozen = np.repeat(pm[:1], len(pm), 0)          # what the static-scene baseline generates
    crit = S.SuccessCriteria(task="lift")
    result = S.detect_success(frozen, mask, T_bc, crit)
    assert not result.success and result.frames_with_object == 0
    # without the first-frame mask the ghost robot is a big "object" in the later frames
    pixels, _ = S.object_pixels(frozen[-1], mask[-1], T_bc, crit)
    assert pixels.sum() > 100


def test_the_largest_component_above_the_minimum_size_is_the_object():
    T_bc = np.eye(4)
    T_bc[:3, :3] = np.diag([1.0, -1.0, -1.0])
    T_bc[2, 3] = 1.0
    K = np.array([[40.0, 0, 19.5], [0, 40.0, 19.5], [0, 0, 1]])
    from kinema4d_core.metrics import depth_to_pointmap

    depth = np.ones((40, 40))
    depth[10:20, 10:20] = 0.94        # a 100 px object 6 cm tall
    depth[30:33, 30:33] = 0.9         # a 9 px speck
    pm = depth_to_pointmap(depth, K)
    crit = S.SuccessCriteria(reference_size=None)
    obj, pts = S.object_pixels(pm, None, T_bc, crit)
    assert obj.sum() == 100 and obj[10:20, 10:20].all()
    np.testing.assert_allclose(pts[:, 2], 0.06, atol=1e-9)
    too_big = S.SuccessCriteria(min_object_pixels=101, reference_size=None)
    assert S.object_pixels(pm, None, T_bc, too_big)[0].sum() == 0
    # pixel parameters scale with the image: 20 px at 480x720 is 5 px at 240x360, 3 px dilation 2 px
    assert S.SuccessCriteria().at_size(240, 360) == (2, 5) and S.SuccessCriteria().at_size(480, 720) == (3, 20)
    with pytest.raises(Exception, match="min_object_pixels"):
        S.SuccessCriteria(min_object_pixels=0)


@pytest.mark.slow
def test_a_real_lift_in_the_sim_world_is_a_success_and_its_first_frame_copy_is_not():
    from kinema4d_core.evaluation import sim_success_criteria
    from kinema4d_core.metrics import depth_to_pointmap
    from kinema4d_core.projection import render_trajectory
    from kinema4d_core.robot import load_robot
    from kinema4d_core.service import clip_to_limits
    from kinema4d_core.simworld import SimConfig, SimWorld
    from kinema4d_core.trajectory import JointTrajectory

    robot = load_robot("panda")
    with SimWorld(SimConfig(width=W, height=H)) as world:
        ep = world.run_episode("pick_place", 49, 1)
        cam = world.camera_model()
    assert ep.success                                        # the sim's physics says: lifted and placed
    pm = depth_to_pointmap(np.where(ep.depth > 0, ep.depth, np.nan), ep.K)
    q, _ = clip_to_limits(robot, ep.joint_names, ep.joint_positions)   # the service's rule (gripper overshoot)
    traj = JointTrajectory(tuple(ep.joint_names), q, ep.stamps)
    mask = render_trajectory(robot, cam, traj, with_rgb=False).mask   # the robot condition, as evaluation uses
    crit = sim_success_criteria(["pick_place"])["pick_place"]
    result = S.detect_success(pm, mask, ep.T_base_camera, crit)
    assert result.success, result.summary()
    assert result.frames_with_object >= 40 and np.max(result.object_pixels) >= crit.min_object_pixels
    lift_only = S.detect_success(pm, mask, ep.T_base_camera, S.SuccessCriteria(
        task="lift", lift_height=crit.lift_height, workspace=crit.workspace))
    assert lift_only.success and np.nanmax(lift_only.lift) > crit.lift_height
    frozen = S.detect_success(np.repeat(pm[:1], len(pm), 0), mask, ep.T_base_camera, crit)
    assert not frozen.success
