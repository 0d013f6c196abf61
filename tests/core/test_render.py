"""RobotRenderer against an exact, independent ray caster (embreex) and on hand-built scenes."""

from __future__ import annotations

import numpy as np
import pytest
from embreex import rtcore_scene
from embreex.mesh_construction import TriangleMesh

from kinema4d_core.camera import CameraModel, look_at
from kinema4d_core.errors import InputError
from kinema4d_core.mesh import LinkMesh
from kinema4d_core.render import RobotRenderer

H, W = 120, 160
K = np.array([[150.0, 0.0, 79.5], [0.0, 148.0, 59.5], [0.0, 0.0, 1.0]])
LENSES = {
    "pinhole": ("plumb_bob", [0.0] * 5),
    "plumb_bob": ("plumb_bob", [-0.22, 0.07, 0.0015, -0.001, -0.01]),
    "rational_polynomial": ("rational_polynomial", [0.4, -0.1, -0.001, 0.0012, 0.01, 0.65, -0.04, 0.01]),
}


def camera(lens: str, T_base_camera=np.eye(4), size=(H, W), K_=K) -> CameraModel:
    model, D = LENSES[lens]
    return CameraModel(width=size[1], height=size[0], K=K_, D=D, distortion_model=model, T_base_camera=T_base_camera)


def ray_cast(cam: CameraModel, meshes, T_camera_mesh):
    """Exact oracle: embree ray cast through every pixel centre's undistorted ray.

    Returns (hit mask, planar depth z, mesh index per pixel or -1)."""
    scene = rtcore_scene.EmbreeScene()
    for mesh, T in zip(meshes, T_camera_mesh):
        v = mesh.vertices.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
        TriangleMesh(scene=scene, vertices=v[mesh.faces].astype(np.float32))
    rays = cam.pixel_rays().reshape(-1, 2)
    d = np.concatenate([rays, np.ones((rays.shape[0], 1))], axis=1)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    out = scene.run(np.zeros(d.shape, np.float32), d.astype(np.float32), output=1)
    hit = out["geomID"] >= 0
    z = np.where(hit, out["tfar"] * d[:, 2], 0.0)
    return hit.reshape(cam.height, cam.width), z.reshape(cam.height, cam.width), out["geomID"].reshape(cam.height, cam.width)


@pytest.fixture(scope="module")
def panda():
    from kinema4d_core.robot import load_robot

    return load_robot("panda")


def random_view(rng: np.random.Generator) -> np.ndarray:
    azimuth = rng.uniform(0, 2 * np.pi)
    elevation = rng.uniform(-0.1, 0.8)
    radius = rng.uniform(1.3, 2.0)
    eye = radius * np.array([np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation),
                             np.sin(elevation)]) + [0, 0, 0.4]
    return look_at(eye, rng.uniform([-0.15, -0.15, 0.25], [0.15, 0.15, 0.6]))


@pytest.mark.parametrize("lens", sorted(LENSES))
def test_panda_render_matches_exact_ray_cast(panda, lens):
    rng = np.random.default_rng({"pinhole": 0, "plumb_bob": 1, "rational_polynomial": 2}[lens])
    renderer = None
    for _ in range(3):
        q = rng.uniform(panda.lower, panda.upper)
        cam = camera(lens, random_view(rng))
        renderer = RobotRenderer(cam, panda.meshes, with_rgb=True)
        T_camera_mesh = cam.T_camera_base @ panda.mesh_poses(q)
        res = renderer.render(T_camera_mesh)
        hit, z, geom = ray_cast(cam, panda.meshes, T_camera_mesh)
        assert hit.sum() > 300, "the random view must actually see the robot"
        iou = (hit & res.mask).sum() / (hit | res.mask).sum()
        assert iou >= 0.995
        both = hit & res.mask
        assert np.median(np.abs(res.depth[both] - z[both])) < 0.5e-3
        link_of_geom = np.array([m.link_index for m in panda.meshes])
        assert np.mean(res.link_id[both] == link_of_geom[geom[both]]) > 0.99
        # images are consistent with each other
        assert np.array_equal(res.mask, res.link_id >= 0)
        assert np.array_equal(res.mask, res.depth > 0)
        assert np.all(res.rgb[~res.mask] == 0) and np.any(res.rgb[res.mask] > 0)
        assert np.all(res.pointmap[~res.mask] == 0)


@pytest.mark.parametrize("lens", ["pinhole", "plumb_bob"])
def test_pointmap_is_depth_times_pixel_ray(panda, lens):
    cam = camera(lens, look_at([1.4, 0.5, 0.9], [0.0, 0.0, 0.4]))
    res = RobotRenderer(cam, panda.meshes).render(cam.T_camera_base @ panda.mesh_poses(panda.home()))
    rays = cam.pixel_rays()
    m = res.mask
    assert m.sum() > 500
    expected = np.concatenate([rays, np.ones((H, W, 1))], axis=-1) * res.depth[..., None]
    assert np.allclose(res.pointmap[m], expected[m], rtol=1e-6, atol=1e-7)
    assert np.array_equal(res.pointmap[..., 2], res.depth)


def quad(link_index: int, corners, color=(200, 100, 50), link="quad") -> LinkMesh:
    """Two triangles spanning the 4 corners (in order around the quad)."""
    return LinkMesh(link=link, link_index=link_index, vertices=np.asarray(corners, np.float32),
                    faces=np.array([[0, 1, 2], [0, 2, 3]]), face_colors=np.array([color, color], np.uint8))


def test_z_buffer_keeps_the_nearest_of_two_overlapping_triangles_in_either_order():
    cam = camera("pinhole")
    near = quad(3, [[-0.2, -0.2, 1.0], [0.2, -0.2, 1.0], [0.2, 0.2, 1.0], [-0.2, 0.2, 1.0]], (255, 0, 0))
    # far quad is larger and slanted: its depth varies over the image, it is behind `near` everywhere
    far = quad(7, [[-1.0, -1.0, 1.5], [1.0, -1.0, 2.0], [1.0, 1.0, 2.0], [-1.0, 1.0, 1.5]], (0, 0, 255))
    identity = np.tile(np.eye(4), (2, 1, 1))
    for meshes in ([near, far], [far, near]):
        res = RobotRenderer(cam, meshes, with_rgb=True).render(identity)
        centre = res.link_id[50:70, 70:90]
        assert np.all(centre == 3) and np.allclose(res.depth[50:70, 70:90], 1.0)
        assert np.all(res.rgb[50:70, 70:90] == [255, 0, 0])
        # outside the near quad the far quad shows, with its own (perspective-correct) depth
        assert res.link_id[5, 5] == 7 and res.link_id[5, 150] == 7
        hit, z, _ = ray_cast(cam, meshes, identity)
        assert np.array_equal(hit, res.mask)
        assert np.abs(res.depth - z).max() < 1e-5


def test_pixel_centres_are_at_integer_coordinates():
    cam = camera("pinhole")
    fx, cx = K[0, 0], K[0, 2]

    def covered_columns(u_edge: float) -> np.ndarray:
        # a wall at z = 1 whose right edge projects exactly to column coordinate u_edge
        x_edge = (u_edge - cx) / fx
        wall = quad(0, [[-2.0, -2.0, 1.0], [x_edge, -2.0, 1.0], [x_edge, 2.0, 1.0], [-2.0, 2.0, 1.0]])
        res = RobotRenderer(cam, [wall]).render(np.eye(4)[None])
        cols = np.flatnonzero(res.mask[60])
        assert np.all(res.mask[:, cols]) and not np.any(res.mask[:, cols[-1] + 1:])
        return cols

    assert covered_columns(40.4)[-1] == 40      # pixel 40's centre (u = 40.0) is inside
    assert covered_columns(39.6)[-1] == 39      # ... and outside when the edge is left of it
    assert covered_columns(40.5)[-1] == 40      # a pixel boundary (x.5) separates columns 40 | 41


def test_triangles_crossing_the_near_plane_are_clipped_not_dropped():
    cam = camera("plumb_bob")
    # a floor plane under the camera that starts behind it and runs 5 m ahead
    floor = quad(1, [[-3.0, 0.3, -1.0], [3.0, 0.3, -1.0], [3.0, 0.3, 5.0], [-3.0, 0.3, 5.0]])
    res = RobotRenderer(cam, [floor], near=0.05).render(np.eye(4)[None])
    hit, z, _ = ray_cast(cam, [floor], np.eye(4)[None])
    assert hit.sum() > 2000
    assert (hit & res.mask).sum() / (hit | res.mask).sum() > 0.995
    assert np.abs(res.depth[hit & res.mask] - z[hit & res.mask]).max() < 1e-4


def test_large_triangles_under_strong_distortion_match_the_ray_cast():
    # big triangles (the general, edge-sampled bounding path) reaching outside the field of view
    for lens in ("plumb_bob", "rational_polynomial"):
        cam = camera(lens)
        tri = LinkMesh(link="big", link_index=0,
                       vertices=np.array([[-1.5, -0.1, 1.0], [0.25, -0.6, 1.2], [0.2, 0.5, 0.9]], np.float32),
                       faces=np.array([[0, 1, 2]]), face_colors=np.array([[9, 9, 9]], np.uint8))
        res = RobotRenderer(cam, [tri]).render(np.eye(4)[None])
        hit, z, _ = ray_cast(cam, [tri], np.eye(4)[None])
        assert 0 < hit.sum() < H * W
        assert np.sum(hit != res.mask) <= 0.001 * hit.sum() + 2
        assert np.abs(res.depth[hit & res.mask] - z[hit & res.mask]).max() < 1e-5


def test_nothing_visible_gives_empty_images():
    cam = camera("pinhole")
    behind = quad(0, [[-1, -1, -2.0], [1, -1, -2.0], [1, 1, -2.0], [-1, 1, -2.0]])
    res = RobotRenderer(cam, [behind], with_rgb=True).render(np.eye(4)[None])
    assert not res.mask.any() and np.all(res.link_id == -1) and not res.depth.any() and not res.rgb.any()


def test_render_rejects_wrong_pose_count():
    cam = camera("pinhole")
    r = RobotRenderer(cam, [quad(0, [[-1, -1, 2], [1, -1, 2], [1, 1, 2], [-1, 1, 2]])])
    with pytest.raises(InputError) as err:
        r.render(np.tile(np.eye(4), (2, 1, 1)))
    assert err.value.field == "T_camera_mesh"
