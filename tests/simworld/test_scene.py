"""The simulated lab's scene, camera model, depth and robot mask."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from kinema4d_core.camera import load_calibration
from kinema4d_core.errors import ConfigError, InputError
from kinema4d_core.robot import load_robot, load_robot_config
from kinema4d_core.simworld import READY_Q, SimConfig, SimWorld
from kinema4d_core.simworld.calibration import sim_camera_model


def test_scene_has_robot_cube_table_and_camera(small_world):
    m = small_world.model
    for body in ("panda_link0", "panda_hand", "panda_leftfinger", "cube"):
        assert m.body(body).id >= 0
    assert m.camera(small_world.config.camera_name).id >= 0
    assert m.nu == 8 and len(small_world.robot_geom_ids) > 10
    # the cube rests on the table top (base frame z = 0) at its half size
    assert small_world.reset(0).shape == (2,)
    assert small_world.object_poses()[0, 2] == pytest.approx(small_world.config.cube_size / 2, abs=1e-3)


def test_joint_names_follow_the_robot_config(small_world):
    assert small_world.joint_names == load_robot_config("panda").joint_names
    assert "panda_finger_joint1" in small_world.joint_names
    small_world.reset(0)
    assert np.allclose(small_world.joint_positions(), READY_Q, atol=2e-3)


def test_position_servos_track_a_target(small_world):
    small_world.reset(0)
    target = np.array(READY_Q) + np.array([0.2, 0.1, -0.1, 0.1, 0.2, -0.1, 0.3, -0.02])
    for _ in range(12):
        small_world.step_to(target)
    assert np.abs(small_world.joint_positions() - target).max() < 0.01
    assert small_world.data.time == pytest.approx(1.0, abs=0.01)   # 12 frames at 12 Hz


def test_bad_inputs_name_the_field(small_world):
    with pytest.raises(InputError, match="q_target"):
        small_world.step_to(np.zeros(3))
    with pytest.raises(ConfigError, match="SimConfig.width"):
        SimConfig(width=0)
    with pytest.raises(InputError, match="task"):
        small_world.run_episode("juggle", 49, 0)


def test_cube_centre_projects_onto_its_segmentation(small_world):
    """Camera model (K and T_base_camera) agrees with MuJoCo's rendering to sub-pixel accuracy."""
    cfg = replace(small_world.config, width=360, height=240)
    with SimWorld(cfg) as world:
        cam = world.camera_model()
        for cube_xy in [(0.5, -0.08), (0.35, 0.2), (0.65, 0.1)]:
            world.reset(cube_xy=cube_xy)
            pose = world.object_poses()[0]
            h = cfg.cube_size / 2
            corners = pose[:3] + np.array([[x, y, z] for x in (-h, h) for y in (-h, h) for z in (-h, h)])
            px = cam.project(corners @ cam.T_camera_base[:3, :3].T + cam.T_camera_base[:3, 3])
            # the silhouette of a convex box is the convex hull of its projected corners
            hull = cv2.convexHull(px.astype(np.float32))
            ys, xs = np.mgrid[0:cfg.height, 0:cfg.width]
            inside = np.array([cv2.pointPolygonTest(hull, (float(x), float(y)), False) >= 0
                               for x, y in zip(xs.ravel(), ys.ravel())]).reshape(xs.shape)
            seg = world.segmentation() == world.model.geom("cube").id
            assert seg.sum() > 50
            expected = np.array([xs[inside].mean(), ys[inside].mean()])
            observed = np.array([xs[seg].mean(), ys[seg].mean()])
            assert np.linalg.norm(expected - observed) < 0.5


def test_depth_is_planar_z_in_metres(small_world):
    """Table-top pixels: depth equals the optical-axis distance to the plane z = 0 (base frame)."""
    small_world.reset(0)
    frame = small_world.render()
    cam = small_world.camera_model()
    table = small_world.segmentation() == small_world.model.geom("table").id
    rays = cam.pixel_rays()                       # undistorted normalized (x/z, y/z)
    d = np.concatenate([rays, np.ones(rays.shape[:2] + (1,))], axis=-1)        # direction with z = 1
    R, t = cam.T_base_camera[:3, :3], cam.T_base_camera[:3, 3]
    dz_base = d @ R[2]                            # base-frame z change per unit camera z
    expected = -t[2] / dz_base                    # camera z where the ray meets z_base = 0
    hit = t + (d * expected[..., None]) @ R.T      # base-frame point on the plane
    # the table top spans x in [-0.25, 0.95], y in [-0.55, 0.55]; keep 2 cm off its edges
    on_top = (np.abs(hit[..., 0] - 0.35) < 0.58) & (np.abs(hit[..., 1]) < 0.53)
    top = table & (expected > 0) & on_top
    assert top.sum() > 0.5 * table.sum()
    assert np.abs(frame.depth[top] - expected[top]).max() < 1e-4
    assert frame.depth.dtype == np.float32


def test_robot_mask_matches_the_core_renderer(small_world):
    """MuJoCo's ground-truth robot mask and kinema4d_core.render agree (same meshes, same camera)."""
    from kinema4d_core.render import RobotRenderer

    robot = load_robot("panda")
    cam = small_world.camera_model()
    renderer = RobotRenderer(cam, robot.meshes)
    small_world.reset(0)
    q_goal = np.array(READY_Q) + np.array([0.4, 0.3, -0.2, 0.4, 0.3, -0.3, 0.5, -0.02])
    for q in (np.array(READY_Q), q_goal):
        for _ in range(15):
            small_world.step_to(q)
        sim = small_world.render()
        T_cam_mesh = cam.T_camera_base @ robot.mesh_poses(sim.joint_positions)
        core = renderer.render(T_cam_mesh).mask
        iou = (core & sim.robot_mask).sum() / (core | sim.robot_mask).sum()
        assert iou >= 0.95, iou


def test_calibration_file_is_the_sim_ground_truth(repo_root):
    saved = load_calibration(repo_root / "calibration" / "sim_camera.yaml")
    truth = sim_camera_model(SimConfig())
    assert (saved.width, saved.height) == (truth.width, truth.height)
    assert np.allclose(saved.K, truth.K) and np.allclose(saved.T_base_camera, truth.T_base_camera, atol=1e-9)
    assert saved.parent_frame == "panda_link0"
