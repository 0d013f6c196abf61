"""Robot descriptions as labs have them: mesh URIs relative to the URDF, xacro files, continuous
joints, and the shipped FR3 / UR5e / YAM configs checked against their published kinematics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from kinema4d_core.errors import ConfigError
from kinema4d_core.robot import RobotModel, default_camera, load_robot, load_robot_config

BOX = (0.02, 0.04, 0.06)  # extents of the test mesh, metres

ARM = """<?xml version="1.0"?>
<robot name="arm">
  <link name="base"><visual><geometry><box size="0.1 0.1 0.1"/></geometry></visual></link>
  <link name="link1"><visual><origin xyz="0 0 0.1"/><geometry><mesh filename="{mesh}"/></geometry></visual></link>
  <link name="link2"/>
  <link name="tool"/>
  <joint name="j1" type="{j1_type}"><parent link="base"/><child link="link1"/>
    <origin xyz="0 0 0.2"/><axis xyz="0 0 1"/>{j1_limit}</joint>
  <joint name="j2" type="revolute"><parent link="link1"/><child link="link2"/>
    <origin xyz="0.3 0 0" rpy="1.5707963267948966 0 0"/><axis xyz="0 0 1"/>
    <limit lower="-2" upper="2" effort="1" velocity="1"/></joint>
  <joint name="tool_joint" type="fixed"><parent link="link2"/><child link="tool"/><origin xyz="0.1 0 0"/></joint>
</robot>
"""
LIMIT = '<limit lower="-1" upper="1" effort="1" velocity="1"/>'


def _write_robot(folder, urdf_name: str, mesh_uri: str, *, j1_type="revolute", package_dirs=None,
                 text: str | None = None):
    urdf = folder / urdf_name
    urdf.parent.mkdir(parents=True, exist_ok=True)
    urdf.write_text(text if text is not None else
                    ARM.format(mesh=mesh_uri, j1_type=j1_type, j1_limit=LIMIT if j1_type == "revolute" else ""))
    cfg = folder / "arm.yaml"
    lines = [f"urdf: {urdf_name}", "base_frame: base", "ee_frame: tool", "joint_names: [j1, j2]"]
    if package_dirs:
        lines.append(f"package_dirs: {package_dirs}")
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def _stl(path):
    import trimesh

    path.parent.mkdir(parents=True, exist_ok=True)
    trimesh.creation.box(extents=BOX).export(path)
    return path


@pytest.fixture(autouse=True)
def _no_mesh_cache(monkeypatch):
    monkeypatch.setenv("KINEMA4D_CACHE_DIR", "off")
    monkeypatch.delenv("ROS_PACKAGE_PATH", raising=False)
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)


# ---- mesh URIs ------------------------------------------------------------------------------

@pytest.mark.parametrize("urdf_name, mesh_at, uri", [
    ("arm.urdf", "meshes/link1.stl", "meshes/link1.stl"),
    ("arm.urdf", "meshes/link1.stl", "./meshes/link1.stl"),
    ("urdf/arm.urdf", "meshes/link1.stl", "../meshes/link1.stl"),
    ("my_arm_description/urdf/arm.urdf", "my_arm_description/meshes/link1.stl",
     "package://my_arm_description/meshes/link1.stl"),  # package folder found above the URDF
])
def test_mesh_uris_relative_to_the_urdf_need_no_settings(tmp_path, urdf_name, mesh_at, uri):
    _stl(tmp_path / mesh_at)
    robot = RobotModel(load_robot_config(_write_robot(tmp_path, urdf_name, uri)))
    (mesh,) = [m for m in robot.meshes if m.link == "link1"]
    np.testing.assert_allclose(mesh.vertices.max(0) - mesh.vertices.min(0), BOX, atol=1e-6)
    np.testing.assert_allclose(mesh.vertices.mean(0), [0, 0, 0.1], atol=1e-6)  # visual origin applied


def test_file_uri_and_package_dirs_still_work(tmp_path):
    stl = _stl(tmp_path / "elsewhere" / "link1.stl")
    robot = RobotModel(load_robot_config(_write_robot(tmp_path / "a", "arm.urdf", f"file://{stl}")))
    assert [m.link for m in robot.meshes] == ["base", "link1"]
    _stl(tmp_path / "share" / "pkg_x" / "m" / "link1.stl")
    robot = RobotModel(load_robot_config(_write_robot(tmp_path / "b", "arm.urdf", "package://pkg_x/m/link1.stl",
                                                      package_dirs=[str(tmp_path / "share")])))
    assert [m.link for m in robot.meshes] == ["base", "link1"]


def test_missing_mesh_names_urdf_uri_tried_paths_and_fix(tmp_path):
    cfg = _write_robot(tmp_path, "urdf/arm.urdf", "package://arm_description/meshes/link1.stl",
                       package_dirs=[str(tmp_path / "share")])
    with pytest.raises(ConfigError) as err:
        RobotModel(load_robot_config(cfg))
    text = str(err.value)
    assert err.value.field == "link1.visual.mesh"
    assert "package://arm_description/meshes/link1.stl" in text and str(tmp_path / "urdf" / "arm.urdf") in text
    assert str(tmp_path / "share" / "arm_description" / "meshes" / "link1.stl") in text  # a tried path
    assert "package_dirs" in err.value.fix
    cfg = _write_robot(tmp_path / "rel", "arm.urdf", "../meshes/nope.stl")
    with pytest.raises(ConfigError) as err:
        RobotModel(load_robot_config(cfg))
    assert str(tmp_path / "rel" / ".." / "meshes" / "nope.stl") in str(err.value)
    assert "relative to the URDF" in err.value.fix


# ---- xacro ----------------------------------------------------------------------------------

def test_xacro_file_is_refused_with_the_command_to_run(tmp_path):
    cfg = _write_robot(tmp_path, "model.urdf.xacro", "meshes/link1.stl")
    with pytest.raises(ConfigError) as err:
        RobotModel(load_robot_config(cfg))
    assert err.value.field == "urdf"
    assert "xacro model.urdf.xacro > model.urdf" in err.value.fix and "ros2 run xacro xacro" in err.value.fix


@pytest.mark.parametrize("snippet", [
    '<xacro:property name="l1" value="0.3"/>',
    '<link name="extra"><visual><geometry><box size="${l1} 0.1 0.1"/></geometry></visual></link>',
])
def test_urdf_with_xacro_content_is_refused(tmp_path, snippet):
    _stl(tmp_path / "meshes" / "link1.stl")
    text = ARM.format(mesh="meshes/link1.stl", j1_type="revolute", j1_limit=LIMIT).replace(
        '<robot name="arm">', '<robot name="arm" xmlns:xacro="http://www.ros.org/wiki/xacro">' + snippet)
    cfg = _write_robot(tmp_path, "arm.urdf", "", text=text)
    with pytest.raises(ConfigError, match="xacro") as err:
        RobotModel(load_robot_config(cfg))
    assert "xacro arm.urdf > " in err.value.fix


# ---- continuous joints ----------------------------------------------------------------------

def _hand_fk(q1: float, q2: float) -> np.ndarray:
    """T_base_tool of the test arm, composed by hand."""
    def rz(a):
        c, s = np.cos(a), np.sin(a)
        return np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])

    def tr(x, y, z):
        T = np.eye(4)
        T[:3, 3] = (x, y, z)
        return T

    rx90 = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1.0]])
    return tr(0, 0, 0.2) @ rz(q1) @ tr(0.3, 0, 0) @ rx90 @ rz(q2) @ tr(0.1, 0, 0)


def test_continuous_joint_has_no_limits_no_clipping_and_no_wrapping(tmp_path):
    _stl(tmp_path / "meshes" / "link1.stl")
    robot = RobotModel(load_robot_config(_write_robot(tmp_path, "arm.urdf", "meshes/link1.stl",
                                                      j1_type="continuous")))
    assert robot.continuous.tolist() == [True, False]
    assert robot.lower[0] == -np.inf and robot.upper[0] == np.inf and robot.lower[1] == -2.0
    np.testing.assert_array_equal(robot.home(), [0.0, 0.0])
    for q in ([0.4, 0.7], [7.0, -1.2], [-12.5, 1.9], [np.pi, 0.0]):
        assert robot.check_positions(q)[0] == q[0]  # not clipped, not wrapped
        np.testing.assert_allclose(robot.ee_pose(q), _hand_fk(*q), atol=1e-12)
    # a full turn later is the same pose (the value itself is kept as given)
    np.testing.assert_allclose(robot.ee_pose([7.0, 0.3]), robot.ee_pose([7.0 - 2 * np.pi, 0.3]), atol=1e-12)
    np.testing.assert_allclose(robot.ee_pose([0.5, 0.3])[:3, 3],
                               [0.3 * np.cos(0.5) + 0.1 * np.cos(0.5) * np.cos(0.3),
                                0.3 * np.sin(0.5) + 0.1 * np.sin(0.5) * np.cos(0.3), 0.2 + 0.1 * np.sin(0.3)],
                               atol=1e-12)
    # the revolute joint still has its limits
    with pytest.raises(Exception, match="j2"):
        robot.check_positions([0.0, 2.5])


def test_ik_restarts_work_with_a_continuous_joint(tmp_path):
    from kinema4d_core.trajectory import IKSolver

    _stl(tmp_path / "meshes" / "link1.stl")
    robot = RobotModel(load_robot_config(_write_robot(tmp_path, "arm.urdf", "meshes/link1.stl",
                                                      j1_type="continuous")))
    target = _hand_fk(2.9, 0.6)
    res = IKSolver(robot).solve(target, np.array([-2.9, -0.6]))
    assert res.converged and np.all(np.isfinite(res.q))
    np.testing.assert_allclose(robot.ee_pose(res.q)[:3, 3], target[:3, 3], atol=1e-4)


# ---- shipped lab robots ---------------------------------------------------------------------

LAB_ROBOTS = ["fr3", "ur5e", "yam"]


def _dh(theta, d, a, alpha):
    """Standard DH: Rz(theta) Tz(d) Tx(a) Rx(alpha)."""
    ct, st, ca, sa = np.cos(theta), np.sin(theta), np.cos(alpha), np.sin(alpha)
    return np.array([[ct, -st * ca, st * sa, a * ct], [st, ct * ca, -ct * sa, a * st], [0, sa, ca, d], [0, 0, 0, 1]])


def _mdh(theta, d, a, alpha):
    """Modified (Craig) DH: Rx(alpha) Tx(a) Rz(theta) Tz(d)."""
    ct, st, ca, sa = np.cos(theta), np.sin(theta), np.cos(alpha), np.sin(alpha)
    return np.array([[ct, -st, 0, a], [st * ca, ct * ca, -sa, -d * sa], [st * sa, ct * sa, ca, d * ca], [0, 0, 0, 1]])


UR5E_DH = [(0.1625, 0.0, np.pi / 2), (0.0, -0.425, 0.0), (0.0, -0.3922, 0.0), (0.1333, 0.0, np.pi / 2),
           (0.0997, 0.0, -np.pi / 2), (0.0996, 0.0, 0.0)]  # (d, a, alpha), Universal Robots' published table
FR3_MDH = [(0.333, 0.0, 0.0), (0.0, 0.0, -np.pi / 2), (0.316, 0.0, np.pi / 2), (0.0, 0.0825, np.pi / 2),
           (0.384, -0.0825, -np.pi / 2), (0.0, 0.0, np.pi / 2), (0.0, 0.088, np.pi / 2)]  # (d, a, alpha), Franka docs


def _test_qs(robot, n=4):
    rng = np.random.default_rng(3)
    lo, hi = np.maximum(robot.lower, -np.pi), np.minimum(robot.upper, np.pi)
    return [robot.home()] + [rng.uniform(lo, hi) for _ in range(n)]


@pytest.mark.parametrize("name", LAB_ROBOTS)
def test_lab_robot_loads_with_driver_joint_names(name):
    robot = load_robot(name)
    expected = {"fr3": [f"fr3_joint{i}" for i in range(1, 8)] + ["fr3_finger_joint1"],
                "ur5e": ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "wrist_1_joint", "wrist_2_joint",
                         "wrist_3_joint"],
                "yam": [f"joint{i}" for i in range(1, 7)] + ["gripper"]}[name]
    assert list(robot.joint_names) == expected
    assert robot.config.camera is not None
    assert np.all(np.isfinite(robot.ee_pose(robot.home())))


def test_ur5e_fk_matches_the_dh_table():
    robot = load_robot("ur5e")
    for q in _test_qs(robot):
        T = np.eye(4)
        for qi, (d, a, alpha) in zip(q, UR5E_DH):
            T = T @ _dh(qi, d, a, alpha)
        poses = robot.frame_poses(q)
        # DH base = the UR 'base' frame (base_link turned by pi about z); DH flange = tool0
        np.testing.assert_allclose(np.linalg.inv(poses["base"]) @ poses["tool0"], T, atol=1e-9)
    # the home pose (-pi/2 shoulder lift, pi/2 elbow) by hand: tool0 in base_link
    np.testing.assert_allclose(robot.ee_pose(robot.home())[:3, 3], [0.3922 + 0.0997, 0.1333, 0.1625 + 0.425 - 0.0996],
                               atol=1e-4)


def test_fr3_fk_matches_the_dh_table_and_the_panda():
    robot, panda = load_robot("fr3"), load_robot("panda")
    for q in _test_qs(robot):
        T = np.eye(4)
        for qi, (d, a, alpha) in zip(q[:7], FR3_MDH):
            T = T @ _mdh(qi, d, a, alpha)
        T = T @ _mdh(0.0, 0.107, 0.0, 0.0)  # flange
        poses = robot.frame_poses(q)
        np.testing.assert_allclose(poses["fr3_link8"], T, atol=1e-9)
        hand_tcp = T @ _mdh(-np.pi / 4, 0.1034, 0.0, 0.0)
        np.testing.assert_allclose(robot.ee_pose(q), hand_tcp, atol=1e-9)
        if np.all((q >= panda.lower) & (q <= panda.upper)):  # same kinematics as the Panda
            np.testing.assert_allclose(robot.ee_pose(q), panda.ee_pose(q), atol=1e-6)


# i2rt yam.xml (i2rt-robotics/i2rt): body pos, quat (w x y z), joint axis
YAM_XML = [((0, 0, 0.0679999999995413), (-1.29867173464042e-06, -0.707108079858281, -1.29867650493682e-06,
                                          0.707105482510044), (-1, 0, 0)),
           ((-0.0455, -0.0339, -0.02), (1.32679489667753e-06, 0, 0, -0.99999999999912), (0, 1, 0)),
           ((4.08431e-07, -0.0688, 0.264), (1.32679489667753e-06, 0, 0, -0.99999999999912), (0, 1, 0)),
           ((-0.0600003, -0.0688, -0.244999), (1, 0, 0, 0), (0, 1, 0)),
           ((-0.0405003, 0.0338995, -0.0739989), (1, 0, 0, 0), (1, 0, 0)),
           ((0.0404996, 2.39858e-07, -0.0356), (1, 0, 0, 0), (0, 0, -1))]


def test_yam_fk_matches_the_published_mujoco_model():
    robot = load_robot("yam")
    for q in _test_qs(robot):
        T = np.eye(4)
        for qi, (pos, wxyz, axis) in zip(q[:6], YAM_XML):
            body = np.eye(4)
            body[:3, 3] = pos
            body[:3, :3] = Rotation.from_quat([*wxyz[1:], wxyz[0]]).as_matrix()
            motion = np.eye(4)
            motion[:3, :3] = Rotation.from_rotvec(qi * np.asarray(axis, float)).as_matrix()
            T = T @ body @ motion
        np.testing.assert_allclose(robot.frame_poses(q)["link6"], T, atol=2e-5)
    # gripper: normalised 0..1, each finger 0.0475 m along +-y of link6
    open_, closed = robot.home(), robot.home()
    closed[-1] = 0.0
    poses_o, poses_c = robot.frame_poses(open_), robot.frame_poses(closed)
    gap = lambda p: np.linalg.norm(p["tip_left"][:3, 3] - p["tip_right"][:3, 3])  # noqa: E731
    assert gap(poses_o) - gap(poses_c) == pytest.approx(2 * 0.0475, abs=1e-9)


@pytest.mark.parametrize("name", LAB_ROBOTS)
def test_lab_robot_renders_a_robot_mask_in_its_default_camera(name):
    from kinema4d_core.render import RobotRenderer

    robot = load_robot(name)
    cam = default_camera(robot.config).resized(120, 160)
    result = RobotRenderer(cam, robot.meshes).render_base(robot.mesh_poses(robot.home()))
    assert 0.005 < result.mask.mean() < 0.5
    assert len(set(np.unique(result.link_id)) - {-1}) >= 5  # most links visible
    # the end effector projects inside the image, onto or near robot pixels
    p_cam = cam.T_camera_base @ robot.ee_pose(robot.home())[:, 3]
    u, v = cam.project(p_cam[None, :3])[0]
    assert 0 <= u < cam.width and 0 <= v < cam.height
    r = 6
    assert result.mask[max(0, int(v) - r):int(v) + r, max(0, int(u) - r):int(u) + r].any()
