"""Reconstructed-mesh alignment: Umeyama + RANSAC + ICP against the Panda URDF surface, per-link pieces."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from kinema4d_core.calibration.align import (Correspondences, align_mesh, ransac_similarity, segment_mesh,
                                             similarity_rotation, umeyama)
from kinema4d_core.calibration.geometry import rotation_angle_deg
from kinema4d_core.errors import CalibrationError
from kinema4d_core.mesh import transform_points
from kinema4d_core.robot import load_robot
from kinema4d_core.twin import twin_meshes

SCALE = 2.5
R_TRUE = Rotation.from_euler("xyz", [20, -35, 70], degrees=True).as_matrix()
T_RECON_BASE = np.block([[SCALE * R_TRUE, np.array([[0.3], [-1.2], [2.0]])], [np.zeros((1, 3)), np.ones((1, 1))]])


@pytest.fixture(scope="module")
def panda_scene():
    """Panda mesh at q_ref in the base frame, and the same mesh in a scaled, rotated 'recon' frame."""
    robot = load_robot("panda")
    q_ref = robot.home()
    poses = robot.mesh_poses(q_ref)
    V = np.concatenate([transform_points(p, m.vertices.astype(np.float64)) for p, m in zip(poses, robot.meshes)])
    offsets = np.cumsum([0] + [len(m.vertices) for m in robot.meshes])
    F = np.concatenate([m.faces + offsets[i] for i, m in enumerate(robot.meshes)])
    owner = np.concatenate([np.full(m.n_faces, i) for i, m in enumerate(robot.meshes)])
    return robot, q_ref, V, F, owner, transform_points(T_RECON_BASE, V)


def _correspondences(V, V_recon, q_ref, k=40, noise=0.004, outliers=0.3, seed=0):
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(V), k, replace=False)
    base = V[idx] + rng.normal(0.0, noise, (k, 3))
    bad = rng.permutation(k)[: int(round(outliers * k))]
    base[bad] += rng.normal(0.0, 0.3, (len(bad), 3))
    return Correspondences(V_recon[idx], base, q_ref), bad


def test_umeyama_is_exact_on_clean_points():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(10, 3))
    dst = transform_points(T_RECON_BASE, src)
    np.testing.assert_allclose(umeyama(src, dst), T_RECON_BASE, atol=1e-10)


def test_ransac_separates_inliers_from_outliers(panda_scene):
    _, q_ref, V, _, _, V_recon = panda_scene
    corr, bad = _correspondences(V, V_recon, q_ref)
    fit = ransac_similarity(corr.recon, corr.base, threshold=0.03)
    assert not fit.inliers[bad].any() and fit.inliers.sum() == len(fit.inliers) - len(bad)


def test_recovers_a_known_similarity_within_1mm_0p1deg_0p1pct(panda_scene):
    robot, q_ref, V, _, _, V_recon = panda_scene
    corr, _ = _correspondences(V, V_recon, q_ref)
    al = align_mesh(V_recon, corr, robot)
    err = np.linalg.norm(transform_points(al.T_base_recon, V_recon) - V, axis=1)
    assert err.max() <= 0.001, err.max()
    assert rotation_angle_deg(similarity_rotation(al.T_recon_base), R_TRUE) <= 0.1
    assert abs(al.scale / SCALE - 1.0) <= 0.001
    assert al.icp is not None and al.icp.converged and al.icp.rms < 0.001


def test_all_outliers_is_a_clear_error(panda_scene):
    robot, q_ref, V, _, _, V_recon = panda_scene
    rng = np.random.default_rng(3)
    corr = Correspondences(V_recon[:20], rng.normal(size=(20, 3)), q_ref)
    with pytest.raises(CalibrationError) as err:
        align_mesh(V_recon, corr, robot)
    assert err.value.field == "correspondences"


def test_pieces_follow_forward_kinematics(panda_scene):
    """Cut per link, moved by FK to another configuration, the reconstruction lands on the URDF meshes."""
    robot, q_ref, V, F, owner_true, V_recon = panda_scene
    corr, _ = _correspondences(V, V_recon, q_ref, seed=1)
    al = align_mesh(V_recon, corr, robot)
    pieces, owner = segment_mesh(V_recon, F, al.T_base_recon, robot, q_ref)
    assert (owner == owner_true).mean() > 0.95
    twin = twin_meshes(robot, pieces, q_ref, al.T_recon_base)
    q_new = q_ref.copy()
    q_new[[0, 1, 3, 5]] += [0.6, 0.3, 0.4, -0.5]
    twin_robot = robot.with_meshes(twin)
    twin_pts = np.concatenate([transform_points(p, m.vertices.astype(np.float64))
                               for p, m in zip(twin_robot.mesh_poses(q_new), twin_robot.meshes)])
    urdf_pts = np.concatenate([transform_points(p, m.vertices.astype(np.float64))
                               for p, m in zip(robot.mesh_poses(q_new), robot.meshes)])
    from scipy.spatial import cKDTree

    d, _ = cKDTree(urdf_pts).query(twin_pts)
    assert np.percentile(d, 95) < 0.002 and np.median(d) < 0.0005
