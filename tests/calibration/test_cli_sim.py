"""End to end in the simulated lab: `kinema4d calibrate handeye` on rendered ChArUco images, then the
overlay of the robot rendered with the estimated calibration against MuJoCo's ground-truth mask;
`kinema4d calibrate align-mesh` writing a twin folder; bad input never overwrites a calibration."""

from __future__ import annotations


import imageio.v2 as imageio
import numpy as np
import pytest
import yaml

from kinema4d_core.calibration.board import load_board
from kinema4d_core.calibration.geometry import pose_errors
from kinema4d_core.calibration.overlay import render_robot_mask, score_masks
from kinema4d_core.calibration.synthetic import flange_board_pose, robot_board_views, warp_board_image
from kinema4d_core.camera import load_calibration, look_at, save_calibration
from kinema4d_core.cli import main
from kinema4d_core.mesh import transform_points
from kinema4d_core.robot import load_robot


@pytest.fixture(scope="module")
def sim():
    from kinema4d_core.simworld.world import SimWorld

    world = SimWorld()
    frame = world.render()
    camera = world.camera_model()
    q = world.joint_positions()
    world.close()
    return camera, frame, q


@pytest.fixture(scope="module")
def views_dir(tmp_path_factory, sim, repo_root):
    """10 views of the flange-mounted board rendered into the sim camera + joints.npz."""
    camera, _, _ = sim
    robot = load_robot("panda")
    board = load_board(repo_root / "calibration" / "charuco_board.yaml")
    Q, poses = robot_board_views(robot, camera, board, flange_board_pose(board), 10, rng=np.random.default_rng(7))
    folder = tmp_path_factory.mktemp("views")
    rng = np.random.default_rng(0)
    for i, T in enumerate(poses):
        grey = warp_board_image(camera, board, T).astype(np.float64)
        noisy = np.clip(grey + rng.normal(0, 2.0, grey.shape), 0, 255).astype(np.uint8)
        imageio.imwrite(folder / f"view_{i:03d}.png", np.repeat(noisy[..., None], 3, axis=2))
    np.savez(folder / "joints.npz", joint_names=np.array(robot.joint_names), positions=Q)
    return folder


def _initial_calibration(tmp_path, camera):
    """A calibration file with the right intrinsics and a wrong pose (to be replaced)."""
    path = tmp_path / "camera.yaml"
    save_calibration(camera.with_pose(look_at((1.0, -1.0, 1.0), (0.0, 0.0, 0.0))), path)
    return path


def test_handeye_cli_recovers_the_sim_camera_and_overlays_the_robot(tmp_path, sim, views_dir, repo_root, capsys):
    camera, frame, q = sim
    out = _initial_calibration(tmp_path, camera)
    code = main(["calibrate", "handeye", "--robot", "panda", "--board", str(repo_root / "calibration/charuco_board.yaml"),
                 "--views", str(views_dir), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "view_009" in printed and "rms" in printed
    est = load_calibration(out)
    t_err, r_err = pose_errors(est.T_base_camera, camera.T_base_camera)
    assert t_err <= 0.002 and r_err <= 0.2, (t_err, r_err)
    assert (out.parent / "camera.yaml.bak").exists()

    mask = render_robot_mask(load_robot("panda"), est, q)
    score = score_masks(mask, frame.robot_mask)
    assert score.iou >= 0.97, score
    assert score.boundary_px < 1.5, score


def test_mismatched_board_definition_fails_without_touching_the_file(tmp_path, sim, views_dir, repo_root, capsys):
    camera, _, _ = sim
    out = _initial_calibration(tmp_path, camera)
    before = out.read_bytes()
    doc = yaml.safe_load((repo_root / "calibration/charuco_board.yaml").read_text())
    doc["dictionary"] = "DICT_6X6_250"
    wrong = tmp_path / "wrong_board.yaml"
    wrong.write_text(yaml.safe_dump(doc))
    code = main(["calibrate", "handeye", "--robot", "panda", "--board", str(wrong), "--views", str(views_dir),
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code != 0
    assert "board not found" in err and "usable views" in err
    assert out.read_bytes() == before and not (out.parent / "camera.yaml.bak").exists()


def test_too_few_views_fails_without_touching_the_file(tmp_path, sim, views_dir, repo_root, capsys):
    camera, _, _ = sim
    out = _initial_calibration(tmp_path, camera)
    before = out.read_bytes()
    few = tmp_path / "few"
    few.mkdir()
    for i in range(3):
        (few / f"view_{i:03d}.png").write_bytes((views_dir / f"view_{i:03d}.png").read_bytes())
    with np.load(views_dir / "joints.npz") as data:
        np.savez(few / "joints.npz", joint_names=data["joint_names"], positions=data["positions"][:3])
    code = main(["calibrate", "handeye", "--robot", "panda", "--board", str(repo_root / "calibration/charuco_board.yaml"),
                 "--views", str(few), "--out", str(out)])
    assert code != 0 and "only 3 usable views" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_thresholds_reject_a_result_without_writing(tmp_path, sim, views_dir, repo_root, capsys):
    camera, _, _ = sim
    out = _initial_calibration(tmp_path, camera)
    before = out.read_bytes()
    code = main(["calibrate", "handeye", "--robot", "panda", "--board", str(repo_root / "calibration/charuco_board.yaml"),
                 "--views", str(views_dir), "--out", str(out), "--max-rms-px", "0.001"])
    assert code == 1 and "nothing written" in capsys.readouterr().out
    assert out.read_bytes() == before


def test_align_mesh_cli_writes_a_loadable_twin(tmp_path, capsys):
    import trimesh
    from scipy.spatial.transform import Rotation

    from kinema4d_core.twin import load_twin

    robot = load_robot("panda")
    q_ref = robot.home()
    poses = robot.mesh_poses(q_ref)
    V = np.concatenate([transform_points(p, m.vertices.astype(np.float64)) for p, m in zip(poses, robot.meshes)])
    offsets = np.cumsum([0] + [len(m.vertices) for m in robot.meshes])
    F = np.concatenate([m.faces + offsets[i] for i, m in enumerate(robot.meshes)])
    T = np.eye(4)
    T[:3, :3] = 0.8 * Rotation.from_euler("zyx", [40, 10, -20], degrees=True).as_matrix()
    T[:3, 3] = [1.0, 2.0, -0.5]
    V_recon = transform_points(T, V)
    trimesh.Trimesh(V_recon, F, process=False).export(tmp_path / "recon.ply")
    rng = np.random.default_rng(2)
    idx = rng.choice(len(V), 25, replace=False)
    np.savez(tmp_path / "corr.npz", recon_points=V_recon[idx], base_points=V[idx] + rng.normal(0, 0.003, (25, 3)),
             joint_names=np.array(robot.joint_names), q_ref=q_ref)
    code = main(["calibrate", "align-mesh", "--robot", "panda", "--mesh", str(tmp_path / "recon.ply"),
                 "--correspondences", str(tmp_path / "corr.npz"), "--out", str(tmp_path / "twin")])
    assert code == 0, capsys.readouterr()
    spec = yaml.safe_load((tmp_path / "twin" / "twin.yaml").read_text())
    np.testing.assert_allclose(np.asarray(spec["T_recon_base"]), T, atol=1e-3)
    meshes = load_twin(tmp_path / "twin", robot)
    assert {m.link for m in meshes} >= {"panda_link0", "panda_link4", "panda_hand"}

    # A rigid outlier-only correspondence set is unusable: non-zero exit, no folder written.
    np.savez(tmp_path / "bad.npz", recon_points=V_recon[idx], base_points=rng.normal(size=(25, 3)),
             joint_names=np.array(robot.joint_names), q_ref=q_ref)
    code = main(["calibrate", "align-mesh", "--robot", "panda", "--mesh", str(tmp_path / "recon.ply"),
                 "--correspondences", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "twin2")])
    assert code != 0 and not (tmp_path / "twin2" / "twin.yaml").exists()


@pytest.mark.parametrize("content", [b"not an npz", None])
def test_unreadable_joints_file_is_a_clear_error(tmp_path, repo_root, capsys, content):
    """A damaged joints.npz (or one with pickled objects) used to end in a traceback."""
    views = tmp_path / "views"
    views.mkdir()
    imageio.imwrite(views / "view_000.png", np.zeros((8, 8, 3), np.uint8))
    if content is None:
        np.savez(views / "joints.npz", joint_names=np.array(["a"]), positions=np.array([[{"q": 1}]], dtype=object))
    else:
        (views / "joints.npz").write_bytes(content)
    out = tmp_path / "camera.yaml"
    code = main(["calibrate", "handeye", "--robot", "panda", "--board", str(repo_root / "calibration/charuco_board.yaml"),
                 "--views", str(views), "--out", str(out),
                 "--camera-info", str(repo_root / "calibration" / "sim_camera.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and "joints.npz" in err and "cannot read" in err
    assert not out.exists()


@pytest.mark.parametrize("name, content, text", [
    ("recon.ply", b"not a mesh", "cannot read"),      # trimesh's ValueError used to end in a traceback
    ("recon.obj", b"# no faces\n", "no triangles"),   # an empty mesh failed later with an unrelated message
])
def test_align_mesh_cli_unreadable_mesh_is_a_clear_error(tmp_path, capsys, name, content, text):
    (tmp_path / name).write_bytes(content)
    code = main(["calibrate", "align-mesh", "--robot", "panda", "--mesh", str(tmp_path / name),
                 "--correspondences", str(tmp_path / "corr.npz"), "--out", str(tmp_path / "twin")])
    err = capsys.readouterr().err
    assert code == 2 and "--mesh" in err and text in err
    assert not (tmp_path / "twin").exists()
