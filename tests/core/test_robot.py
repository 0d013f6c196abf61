"""RobotModel: configs, forward kinematics against an independent URDF chain, limits, mimic joints,
input validation and link meshes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from kinema4d_core.errors import ConfigError, InputError
from kinema4d_core.mesh import LinkMesh, transform_points
from kinema4d_core.robot import (RobotModel, cmeel_share, list_robots, load_robot, load_robot_config)

ROBOTS = ["panda", "xarm7"]


# ---- an independent FK: URDF joint origins/axes composed with numpy + scipy ------------------

def _origin(elem) -> np.ndarray:
    T = np.eye(4)
    o = elem.find("origin")
    if o is not None:
        T[:3, 3] = [float(x) for x in o.get("xyz", "0 0 0").split()]
        rpy = [float(x) for x in o.get("rpy", "0 0 0").split()]
        T[:3, :3] = Rotation.from_euler("xyz", rpy).as_matrix()  # URDF: fixed-axis roll, pitch, yaw
    return T


def urdf_chain_fk(urdf: Path, base: str, positions: dict[str, float]) -> dict[str, np.ndarray]:
    """T_base_link of every link reachable from ``base``; mimic joints follow their leader."""
    root = ET.parse(urdf).getroot()
    joints = list(root.findall("joint"))
    poses = {base: np.eye(4)}
    pending = True
    while pending:
        pending = False
        for j in joints:
            parent, child = j.find("parent").get("link"), j.find("child").get("link")
            if parent not in poses or child in poses:
                continue
            name, jtype = j.get("name"), j.get("type")
            mimic = j.find("mimic")
            if mimic is not None:
                value = float(mimic.get("multiplier", 1)) * positions[mimic.get("joint")] + float(mimic.get("offset", 0))
            else:
                value = positions.get(name, 0.0)
            axis = np.array([float(x) for x in (j.find("axis").get("xyz") if j.find("axis") is not None
                                                 else "1 0 0").split()])
            motion = np.eye(4)
            if jtype in ("revolute", "continuous"):
                motion[:3, :3] = Rotation.from_rotvec(axis * value).as_matrix()
            elif jtype == "prismatic":
                motion[:3, 3] = axis * value
            poses[child] = poses[parent] @ _origin(j) @ motion
            pending = True
    return poses


def random_q(robot: RobotModel, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(robot.lower, robot.upper)


# ---- configs --------------------------------------------------------------------------------

def test_shipped_configs_are_listed_and_load():
    assert {"panda", "xarm7"} <= set(list_robots())
    cfg = load_robot_config("panda")
    assert cfg.ee_frame == "panda_hand_tcp"
    assert cfg.joint_names == tuple(f"panda_joint{i}" for i in range(1, 8)) + ("panda_finger_joint1",)
    assert cfg.gripper is not None and cfg.gripper.joint == "panda_finger_joint1"
    assert cfg.urdf.is_file() and cfg.mesh_kind == "visual"
    assert load_robot_config(cfg.source) == cfg  # a path to a yaml works too


def test_robots_dir_can_be_overridden(tmp_path, monkeypatch):
    src = load_robot_config("xarm7").source.read_text()
    (tmp_path / "other_arm.yaml").write_text(src.replace("name: xarm7", "name: other_arm"))
    monkeypatch.setenv("KINEMA4D_ROBOTS_DIR", str(tmp_path))
    assert list_robots() == ["other_arm"]
    assert load_robot_config("other_arm").name == "other_arm"


def test_unknown_robot_name_is_a_config_error():
    with pytest.raises(ConfigError, match="no robot config named 'nope'") as err:
        load_robot_config("nope")
    assert "panda" in str(err.value)


def _write_config(tmp_path: Path, **overrides) -> Path:
    import yaml

    raw = yaml.safe_load(load_robot_config("panda").source.read_text())
    raw.update(overrides)
    raw = {k: v for k, v in raw.items() if v is not ...}
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("overrides, field", [
    ({"colour": "red"}, "colour"),
    ({"ee_frame": ...}, "ee_frame"),
    ({"mesh_kind": "pretty"}, "mesh_kind"),
    ({"gripper": {"joint": "panda_joint9", "open": 0.04, "closed": 0.0}}, "gripper.joint"),
    ({"home": [0.0, 1.0]}, "home"),
    ({"urdf": "does/not/exist.urdf"}, "urdf"),
])
def test_malformed_config_names_the_field(tmp_path, overrides, field):
    with pytest.raises(ConfigError) as err:
        load_robot_config(_write_config(tmp_path, **overrides))
    assert err.value.field == field


@pytest.mark.parametrize("overrides, field, text", [
    ({"ee_frame": "panda_nose"}, "ee_frame", "panda_nose"),
    ({"joint_names": [f"panda_joint{i}" for i in range(1, 8)], "gripper": None, "home": None},
     "joint_names", "panda_finger_joint1"),
    ({"joint_names": [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint2"],
      "gripper": None, "home": None}, "joint_names", "mimic"),
    ({"gripper": {"joint": "panda_finger_joint1", "open": 0.08, "closed": 0.0}}, "gripper.open", "limits"),
    ({"home": [0.0] * 8}, "home", "panda_joint4"),  # all zeros violates joint 4's limit
])
def test_config_inconsistent_with_urdf_is_rejected(tmp_path, overrides, field, text):
    with pytest.raises((ConfigError, InputError)) as err:
        RobotModel(load_robot_config(_write_config(tmp_path, **overrides)))
    assert err.value.field == field
    assert text in str(err.value)


def test_missing_mesh_file_names_link_and_path(tmp_path):
    urdf = load_robot_config("panda").urdf
    text = urdf.read_text().replace("meshes/visual/link3.dae", "meshes/visual/link3_missing.dae")
    (tmp_path / "broken.urdf").write_text(text)
    path = _write_config(tmp_path, urdf="broken.urdf")
    with pytest.raises(ConfigError) as err:
        RobotModel(load_robot_config(path))
    assert err.value.field == "panda_link3.visual.mesh"
    assert "link3_missing.dae" in str(err.value) and "panda_link3" in str(err.value)


# ---- kinematics -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ROBOTS)
def test_fk_matches_an_independent_urdf_chain(name):
    robot = load_robot(name)
    rng = np.random.default_rng(7)
    for _ in range(5):
        q = random_q(robot, rng)
        expected = urdf_chain_fk(robot.config.urdf, robot.config.base_frame, dict(zip(robot.joint_names, q)))
        got = robot.frame_poses(q)
        links = [n for n in robot.link_names() if n in expected]
        assert len(links) >= 8
        for link in links:
            np.testing.assert_allclose(got[link], expected[link], atol=1e-9, err_msg=link)
        np.testing.assert_allclose(robot.ee_pose(q), expected[robot.config.ee_frame], atol=1e-9)


@pytest.mark.parametrize("name", ROBOTS)
def test_joint_limits_come_from_the_urdf(name):
    robot = load_robot(name)
    root = ET.parse(robot.config.urdf).getroot()
    for i, jname in enumerate(robot.joint_names):
        limit = next(j for j in root.findall("joint") if j.get("name") == jname).find("limit")
        assert robot.lower[i] == pytest.approx(float(limit.get("lower")))
        assert robot.upper[i] == pytest.approx(float(limit.get("upper")))
    home = robot.home()
    assert np.all(home >= robot.lower) and np.all(home <= robot.upper)


def test_panda_mimic_finger_follows_the_first_finger():
    robot = load_robot("panda")
    assert "panda_finger_joint2" in robot.mimic_joints and robot.n_joints == 8
    gaps = []
    for opening in (0.0, 0.013, 0.04):
        q = robot.home()
        q[7] = opening
        poses = robot.frame_poses(q)
        T_hand_left = np.linalg.inv(poses["panda_hand"]) @ poses["panda_leftfinger"]
        T_hand_right = np.linalg.inv(poses["panda_hand"]) @ poses["panda_rightfinger"]
        assert T_hand_left[1, 3] == pytest.approx(opening, abs=1e-12)
        assert T_hand_right[1, 3] == pytest.approx(-opening, abs=1e-12)  # finger 2 moves with finger 1
        gaps.append(T_hand_left[1, 3] - T_hand_right[1, 3])
    np.testing.assert_allclose(gaps, [0.0, 0.026, 0.08], atol=1e-12)


# ---- joint vectors and validation ----------------------------------------------------------

def test_joint_vector_reorders_and_ignores_mimic_joints():
    robot = load_robot("panda")
    names = list(reversed(robot.joint_names)) + ["panda_finger_joint2"]
    values = [0.01 * i for i in range(len(names))]
    q = robot.joint_vector(names, values)
    assert q.shape == (8,)
    for jname, value in zip(names[:-1], values):
        assert q[robot.joint_names.index(jname)] == value
    Q = robot.joint_vector(names, np.tile(values, (3, 1)))
    assert Q.shape == (3, 8) and np.all(Q == q)


def test_joint_vector_rejects_unknown_missing_and_duplicate_names():
    robot = load_robot("panda")
    names = list(robot.joint_names)
    with pytest.raises(InputError, match="unknown joints \\['elbow'\\]") as err:
        robot.joint_vector(names + ["elbow"], np.zeros(9))
    assert "panda_joint1" in str(err.value)  # lists the valid names
    with pytest.raises(InputError, match="missing joints \\['panda_joint3'\\]"):
        robot.joint_vector([n for n in names if n != "panda_joint3"], np.zeros(7))
    with pytest.raises(InputError, match="more than once"):
        robot.joint_vector(names + ["panda_joint1"], np.zeros(9))
    with pytest.raises(InputError, match="values"):
        robot.joint_vector(names, np.zeros(5))


def test_check_positions_rejects_bad_shapes_non_finite_and_out_of_limit_values():
    robot = load_robot("panda")
    good = np.tile(robot.home(), (4, 1))
    assert robot.check_positions(good).shape == (4, 8)
    for bad_shape in (np.zeros(7), np.zeros((2, 3, 8)), np.zeros((4, 9))):
        with pytest.raises(InputError, match="expected shape"):
            robot.check_positions(bad_shape)
    for bad in (np.nan, np.inf):
        q = good.copy()
        q[2, 4] = bad
        with pytest.raises(InputError, match="panda_joint5.*frame 2") as err:
            robot.check_positions(q, field="positions")
        assert err.value.field == "positions"
    q = good.copy()
    q[3, 3] = 0.0  # joint 4 upper limit is -0.0698
    with pytest.raises(InputError, match="panda_joint4' = 0 at frame 3 is outside its limits"):
        robot.check_positions(q)
    q[3, 3] = robot.upper[3] + 5e-7  # within tolerance: accepted and clipped
    assert robot.check_positions(q)[3, 3] == robot.upper[3]


# ---- meshes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, n_links", [("panda", 11), ("xarm7", 8)])
def test_meshes_one_per_link_in_link_frames(name, n_links):
    robot = load_robot(name)
    meshes = robot.meshes
    assert len(meshes) == n_links
    assert [m.link_index for m in meshes] == list(range(n_links))
    assert all(m.n_faces > 100 for m in meshes)
    q = random_q(robot, np.random.default_rng(3))
    frames = robot.frame_poses(q)
    poses = robot.mesh_poses(q)
    for m, pose in zip(meshes, poses):
        np.testing.assert_allclose(pose, frames[m.link], atol=1e-12)
    batch = robot.mesh_poses_batch(np.stack([q, robot.home()]))
    assert batch.shape == (2, n_links, 4, 4)
    np.testing.assert_allclose(batch[0], poses, atol=1e-12)
    np.testing.assert_allclose(batch[1], robot.mesh_poses(robot.home()), atol=1e-12)


def test_panda_visual_meshes_keep_their_material_colours():
    robot = load_robot("panda")
    colours = np.unique(np.concatenate([m.face_colors for m in robot.meshes]), axis=0)
    assert len(colours) >= 3  # white shells, dark grey joints, ...
    hand_height = np.ptp(robot.meshes[8].vertices[:, 2])  # panda_hand: a ~7 cm tall part (metres, scaled)
    assert 0.05 < hand_height < 0.12


def test_finger_meshes_are_mirror_images_at_the_hand():
    """The right finger's visual has a 180 deg yaw: check the placement was applied."""
    robot = load_robot("panda")
    left, right = robot.meshes[9], robot.meshes[10]
    assert left.link == "panda_leftfinger" and right.link == "panda_rightfinger"
    mirrored = left.vertices * np.array([-1, -1, 1], dtype=np.float32)
    np.testing.assert_allclose(np.sort(mirrored[:, 1]), np.sort(right.vertices[:, 1]), atol=1e-6)
    q = robot.home()
    poses = robot.mesh_poses(q)
    lw, rw = transform_points(poses[9], left.vertices), transform_points(poses[10], right.vertices)
    T_ee = robot.ee_pose(q)
    # both fingers hang between the hand and the TCP
    for pts in (lw, rw):
        local = transform_points(np.linalg.inv(T_ee), pts)
        assert local[:, 2].max() < 0.01 and local[:, 2].min() > -0.06


def test_with_meshes_swaps_meshes_and_keeps_kinematics():
    robot = load_robot("panda")
    tri = LinkMesh(link="panda_link7", link_index=0, vertices=np.eye(3), faces=[[0, 1, 2]],
                   face_colors=[[1, 2, 3]])
    other = robot.with_meshes([tri])
    assert other.meshes == (tri,) and len(robot.meshes) == 11
    q = robot.home()
    np.testing.assert_allclose(other.mesh_poses(q)[0], robot.frame_poses(q)["panda_link7"], atol=1e-12)
    with pytest.raises(InputError, match="link_index"):
        robot.with_meshes([LinkMesh("panda_link7", 3, np.eye(3), [[0, 1, 2]], [[0, 0, 0]])])
    with pytest.raises(InputError, match="not a frame"):
        robot.with_meshes([LinkMesh("tentacle", 0, np.eye(3), [[0, 1, 2]], [[0, 0, 0]])])


@pytest.mark.parametrize("faces, field", [
    ([[0, 1, 3]], "faces"),       # past the last vertex
    ([[0, 1, -1]], "faces"),      # negative: numpy indexing would silently wrap to the last vertex
    ([[0, 1]], "faces"),
])
def test_link_mesh_rejects_bad_faces_naming_the_field(faces, field):
    with pytest.raises(InputError) as err:
        LinkMesh("panda_link7", 0, np.eye(3), faces, [[0, 0, 0]] * len(faces))
    assert err.value.field == field
    with pytest.raises(ValueError):      # InputError stays a ValueError for existing callers
        LinkMesh("panda_link7", 0, np.eye(3), faces, [[0, 0, 0]] * len(faces))


def test_load_robot_is_cached_per_config():
    assert load_robot("panda") is load_robot("panda")
    assert load_robot("panda") is not load_robot("xarm7")


def test_cmeel_share_holds_example_robot_data():
    assert (cmeel_share() / "example-robot-data" / "robots" / "panda_description").is_dir()


def test_mesh_disk_cache_returns_the_same_meshes(tmp_path, monkeypatch):
    monkeypatch.setenv("KINEMA4D_CACHE_DIR", str(tmp_path))
    config = load_robot_config("xarm7")
    fresh = RobotModel(config).meshes          # builds and writes the cache
    assert len(list((tmp_path / "meshes").glob("xarm7-*.npz"))) == 1
    cached = RobotModel(config).meshes         # reads it back
    for a, b in zip(fresh, cached):
        assert a.link == b.link and a.link_index == b.link_index
        assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
        assert np.array_equal(a.face_colors, b.face_colors)
    monkeypatch.setenv("KINEMA4D_CACHE_DIR", "off")
    uncached = RobotModel(config).meshes
    assert all(np.array_equal(a.vertices, b.vertices) for a, b in zip(fresh, uncached))
