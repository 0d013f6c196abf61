"""Digital twin: reconstructed link pieces (recon frame, similarity T_recon_base) become link-frame
meshes that the URDF kinematics drive exactly like the factory meshes."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation

from kinema4d_core.errors import ConfigError, InputError
from kinema4d_core.mesh import transform_points
from kinema4d_core.robot import load_robot
from kinema4d_core.twin import TwinPiece, load_twin, similarity_inverse, twin_meshes


def similarity(scale: float, rotvec, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = scale * Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = t
    return T


T_RECON_BASE = similarity(1.7, [0.3, -1.1, 2.0], [0.4, -2.0, 5.0])


def synthetic_reconstruction(robot, q_ref, T_recon_base):
    """Factory meshes posed at q_ref, mapped into the recon frame (what a scan would deliver)."""
    poses = robot.mesh_poses(q_ref)
    pieces = []
    for mesh, T_base_link in zip(robot.meshes, poses):
        p_recon = transform_points(T_recon_base @ T_base_link, mesh.vertices.astype(np.float64))
        pieces.append(TwinPiece(mesh.link, p_recon, mesh.faces, mesh.face_colors))
    return pieces


def base_vertices(robot, q):
    return [transform_points(T, m.vertices.astype(np.float64)) for m, T in zip(robot.meshes, robot.mesh_poses(q))]


@pytest.mark.parametrize("name", ["panda", "xarm7"])
def test_twin_from_synthetic_reconstruction_renders_like_the_factory_meshes(name):
    robot = load_robot(name)
    rng = np.random.default_rng(5)
    q_ref = robot.home()
    twin = twin_meshes(robot, synthetic_reconstruction(robot, q_ref, T_RECON_BASE), q_ref, T_RECON_BASE)
    twin_robot = robot.with_meshes(twin)
    assert [m.link for m in twin] == [m.link for m in robot.meshes]
    for _ in range(3):
        q = rng.uniform(robot.lower, robot.upper)
        for got, want in zip(base_vertices(twin_robot, q), base_vertices(robot, q)):
            np.testing.assert_allclose(got, want, atol=1e-6)
    for a, b in zip(twin, robot.meshes):
        assert np.array_equal(a.face_colors, b.face_colors)


def test_pieces_of_one_link_are_merged_and_vertex_colours_averaged():
    robot = load_robot("xarm7")
    q_ref = robot.home()
    T_base_link = robot.frame_poses(q_ref)["link3"]
    tri = np.array([[0.0, 0, 0], [0.1, 0, 0], [0, 0.1, 0]])
    recon = transform_points(T_RECON_BASE @ T_base_link, tri)
    pieces = [TwinPiece("link3", recon, [[0, 1, 2]], colors=[[0, 0, 0], [30, 60, 90], [60, 120, 180]]),
              TwinPiece("link3", recon + 1.0, [[0, 2, 1]])]
    (mesh,) = twin_meshes(robot, pieces, q_ref, T_RECON_BASE)
    assert mesh.link == "link3" and mesh.link_index == 0
    np.testing.assert_allclose(mesh.vertices[:3], tri, atol=1e-6)
    assert mesh.faces.tolist() == [[0, 1, 2], [3, 5, 4]]
    assert mesh.face_colors[0].tolist() == [30, 60, 90]


@pytest.mark.parametrize("T", [
    np.diag([1.0, 2.0, 1.0, 1.0]),                     # anisotropic scale
    np.diag([1.0, 1.0, -1.0, 1.0]),                    # reflection
    np.eye(3),                                          # wrong shape
    np.vstack([np.eye(4)[:3], [0.1, 0, 0, 1]]),         # projective last row
])
def test_non_similarity_transforms_are_rejected(T):
    with pytest.raises(InputError) as err:
        similarity_inverse(T)
    assert err.value.field == "T_recon_base"


def test_similarity_inverse_undoes_the_transform():
    T_inv, scale = similarity_inverse(T_RECON_BASE)
    assert scale == pytest.approx(1.7)
    np.testing.assert_allclose(T_inv @ T_RECON_BASE, np.eye(4), atol=1e-12)


def test_bad_pieces_are_rejected():
    robot = load_robot("xarm7")
    q_ref = robot.home()
    tri = np.eye(3)
    with pytest.raises(InputError, match="not a link") as err:
        twin_meshes(robot, [TwinPiece("gripper_finger", tri, [[0, 1, 2]])], q_ref, np.eye(4))
    assert err.value.field == "pieces[0](gripper_finger).link"
    with pytest.raises(InputError) as err:
        twin_meshes(robot, [TwinPiece("link1", tri, [[0, 1, 3]])], q_ref, np.eye(4))
    assert err.value.field.endswith(".faces")
    with pytest.raises(InputError) as err:
        twin_meshes(robot, [TwinPiece("link1", tri, [[0, 1, 2]], colors=np.zeros((2, 3)))], q_ref, np.eye(4))
    assert err.value.field.endswith(".colors")
    with pytest.raises(InputError) as err:
        twin_meshes(robot, [TwinPiece("link1", tri, [[0, 1, 2]])], q_ref + 100.0, np.eye(4))
    assert err.value.field == "q_ref"


def test_twin_folder_round_trip(tmp_path):
    import trimesh

    robot = load_robot("xarm7")
    q_ref = robot.home() + 0.1
    pieces = synthetic_reconstruction(robot, q_ref, T_RECON_BASE)[2:4]
    (tmp_path / "pieces").mkdir()
    for piece in pieces:
        mesh = trimesh.Trimesh(piece.vertices, piece.faces, face_colors=piece.colors, process=False)
        mesh.export(tmp_path / "pieces" / f"{piece.link}.ply")
    names = list(reversed(robot.joint_names))
    (tmp_path / "twin.yaml").write_text(yaml.safe_dump({
        "T_recon_base": T_RECON_BASE.tolist(), "joint_names": names,
        "q_ref": [float(x) for x in q_ref[::-1]]}))
    loaded = load_twin(tmp_path, robot)
    direct = twin_meshes(robot, pieces, q_ref, T_RECON_BASE)
    assert [m.link for m in loaded] == [m.link for m in direct] == ["link2", "link3"]
    for a, b in zip(loaded, direct):
        assert a.n_faces == b.n_faces
        np.testing.assert_allclose(np.sort(a.vertices, axis=0), np.sort(b.vertices, axis=0), atol=1e-5)
        assert np.array_equal(np.unique(a.face_colors, axis=0), np.unique(b.face_colors, axis=0))


def test_twin_folder_errors(tmp_path):
    robot = load_robot("xarm7")
    with pytest.raises(ConfigError, match="twin.yaml"):
        load_twin(tmp_path, robot)
    (tmp_path / "twin.yaml").write_text(yaml.safe_dump({"T_recon_base": np.eye(4).tolist(),
                                                         "joint_names": list(robot.joint_names)}))
    with pytest.raises(ConfigError) as err:
        load_twin(tmp_path, robot)
    assert err.value.field == "q_ref"
    (tmp_path / "twin.yaml").write_text(yaml.safe_dump({"T_recon_base": np.eye(4).tolist(),
                                                         "joint_names": list(robot.joint_names),
                                                         "q_ref": robot.home().tolist()}))
    with pytest.raises(ConfigError) as err:
        load_twin(tmp_path, robot)
    assert err.value.field == "pieces"


def test_twin_folder_names_the_non_numeric_key(tmp_path):
    robot = load_robot("xarm7")
    q_ref = robot.home().tolist()
    q_ref[2] = "zero"
    (tmp_path / "twin.yaml").write_text(yaml.safe_dump({"T_recon_base": np.eye(4).tolist(),
                                                         "joint_names": list(robot.joint_names), "q_ref": q_ref}))
    with pytest.raises(ConfigError) as err:
        load_twin(tmp_path, robot)
    assert err.value.field == "q_ref"          # was reported as T_recon_base
    (tmp_path / "twin.yaml").write_text(yaml.safe_dump({"T_recon_base": [["x"] * 4] * 4,
                                                         "joint_names": list(robot.joint_names),
                                                         "q_ref": robot.home().tolist()}))
    with pytest.raises(ConfigError) as err:
        load_twin(tmp_path, robot)
    assert err.value.field == "T_recon_base"


def test_twin_folder_with_an_unreadable_piece_names_the_file(tmp_path):
    robot = load_robot("xarm7")
    (tmp_path / "twin.yaml").write_text(yaml.safe_dump({"T_recon_base": np.eye(4).tolist(),
                                                         "joint_names": list(robot.joint_names),
                                                         "q_ref": robot.home().tolist()}))
    (tmp_path / "pieces").mkdir()
    (tmp_path / "pieces" / "link2.ply").write_bytes(b"not a mesh")
    with pytest.raises(ConfigError) as err:        # was a bare ValueError from trimesh
        load_twin(tmp_path, robot)
    assert err.value.field == "pieces/link2.ply"
