"""CameraModel: OpenCV-exact projection, pixel rays, resizing, look_at and the calibration YAML."""

from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from kinema4d_core.camera import (CameraModel, calibration_to_dict, load_calibration, look_at,
                                  save_calibration)
from kinema4d_core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

K = np.array([[310.0, 0.0, 81.3], [0.0, 305.0, 58.9], [0.0, 0.0, 1.0]])
DISTORTIONS = {
    "plumb_bob": [-0.21, 0.09, 0.0012, -0.0008, -0.015],
    "rational_polynomial": [0.35, -0.12, 0.0009, 0.0011, 0.02, 0.62, -0.05, 0.01],
}


def make_camera(model: str = "plumb_bob", D=None, **kw) -> CameraModel:
    D = DISTORTIONS[model] if D is None else D
    return CameraModel(width=160, height=120, K=K, D=D, distortion_model=model,
                       T_base_camera=look_at([1.2, 0.4, 0.8], [0.0, 0.0, 0.4]), **kw)


@pytest.mark.parametrize("model", sorted(DISTORTIONS))
def test_project_matches_opencv(model):
    cam = make_camera(model)
    rng = np.random.default_rng(1)
    pts = rng.uniform([-0.6, -0.5, 0.5], [0.6, 0.5, 3.0], size=(500, 3))
    ref, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), K, np.array(DISTORTIONS[model]))
    assert np.abs(cam.project(pts) - ref[:, 0]).max() < 1e-9


def test_project_marks_points_behind_the_camera_nan():
    uv = make_camera().project(np.array([[0.1, 0.0, -1.0], [0.1, 0.0, 1.0]]))
    assert np.all(np.isnan(uv[0])) and np.all(np.isfinite(uv[1]))


@pytest.mark.parametrize("model", sorted(DISTORTIONS))
def test_pixel_rays_reproject_to_integer_pixel_centres(model):
    cam = make_camera(model)
    rays = cam.pixel_rays()
    assert rays.shape == (120, 160, 2) and rays.dtype == np.float64
    pts = np.concatenate([rays.reshape(-1, 2), np.ones((120 * 160, 1))], axis=1)
    v, u = np.mgrid[0:120, 0:160]
    uv = cam.project(pts).reshape(120, 160, 2)
    assert np.abs(uv[..., 0] - u).max() < 1e-4
    assert np.abs(uv[..., 1] - v).max() < 1e-4
    # distortion really changes the rays (the test would be vacuous otherwise)
    pinhole = make_camera(model, D=[0.0] * len(DISTORTIONS[model])).pixel_rays()
    assert np.abs(pinhole - rays).max() * K[0, 0] > 1.0       # more than a pixel at the corners


def test_pixel_rays_without_distortion_are_the_inverse_intrinsics():
    rays = make_camera(D=[0, 0, 0, 0, 0]).pixel_rays()
    assert rays[0, 0, 0] == pytest.approx(-K[0, 2] / K[0, 0])
    assert rays[7, 11, 1] == pytest.approx((7 - K[1, 2]) / K[1, 1])


def test_resized_keeps_the_scene_aligned_with_pixel_centres():
    cam = make_camera()
    small = cam.resized(60, 80)
    assert (small.height, small.width) == (60, 80)
    pts = np.random.default_rng(2).uniform([-0.3, -0.3, 1.0], [0.3, 0.3, 2.0], size=(50, 3))
    # a pixel of width 1 at the old resolution is 0.5 wide: centre u maps to (u + 0.5) * 0.5 - 0.5
    assert np.allclose(small.project(pts), (cam.project(pts) + 0.5) * 0.5 - 0.5, atol=1e-9)
    assert np.array_equal(small.D, cam.D)


def test_look_at_points_the_optical_axis_at_the_target_with_up_up():
    eye, target = np.array([1.5, -0.7, 1.1]), np.array([0.1, 0.2, 0.3])
    T = look_at(eye, target)
    R = T[:3, :3]
    assert np.allclose(R.T @ R, np.eye(3)) and np.linalg.det(R) == pytest.approx(1.0)
    cam = CameraModel(160, 120, K, [0] * 5, "plumb_bob", T)
    pc = (cam.T_camera_base @ np.array([*target, 1.0]))[:3]
    assert np.allclose(cam.project(pc[None])[0], K[:2, 2])
    above = (cam.T_camera_base @ np.array([*(target + [0, 0, 0.1]), 1.0]))[:3]
    assert cam.project(above[None])[0, 1] < K[1, 2]        # world up is image up (smaller v)
    with pytest.raises(ConfigError):
        look_at([0, 0, 1], [0, 0, 0])                      # looking straight down the up vector


def test_t_camera_base_is_the_inverse_pose():
    cam = make_camera()
    assert np.allclose(cam.T_camera_base @ cam.T_base_camera, np.eye(4))


@pytest.mark.parametrize("model", sorted(DISTORTIONS))
def test_calibration_yaml_round_trip(tmp_path, model):
    cam = make_camera(model, camera_name="cam_x", parent_frame="panda_link0", child_frame="cam_x_optical")
    path = tmp_path / "cal.yaml"
    save_calibration(cam, path)
    back = load_calibration(path)
    assert (back.width, back.height, back.distortion_model) == (160, 120, model)
    assert (back.camera_name, back.parent_frame, back.child_frame) == ("cam_x", "panda_link0", "cam_x_optical")
    for name in ("K", "D", "R", "P"):
        assert np.array_equal(getattr(back, name), getattr(cam, name)), name
    assert np.abs(back.T_base_camera - cam.T_base_camera).max() < 1e-12
    doc = yaml.safe_load(path.read_text())
    assert doc["camera_matrix"] == {"rows": 3, "cols": 3, "data": [float(v) for v in K.ravel()]}
    assert len(doc["extrinsics"]["rotation"]) == 4


def test_save_calibration_keeps_the_previous_file_as_bak(tmp_path):
    path = tmp_path / "cal.yaml"
    save_calibration(make_camera(), path)
    first = path.read_text()
    moved = make_camera().with_pose(look_at([2.0, 0.0, 1.0], [0, 0, 0.3]))
    save_calibration(moved, path)
    assert (tmp_path / "cal.yaml.bak").read_text() == first
    assert np.allclose(load_calibration(path).T_base_camera, moved.T_base_camera)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal.yaml", "cal.yaml.bak"]


@pytest.mark.parametrize("name", ["example_camera.yaml", "sim_camera.yaml"])
def test_repository_calibration_files_load(name):
    path = REPO / "calibration" / name
    if not path.exists():
        pytest.skip(f"{name} not in this checkout")
    cam = load_calibration(path)
    assert cam.K[0, 0] > 0 and cam.T_base_camera.shape == (4, 4)


def _good_doc() -> dict:
    return calibration_to_dict(make_camera())


def _set(path: str, value):
    def mutate(doc):
        node = doc
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[k]
        if value is _DELETE:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return mutate


_DELETE = object()

BAD_FIELDS = {
    "missing image_width": (_set("image_width", _DELETE), "image_width"),
    "missing camera_matrix": (_set("camera_matrix", _DELETE), "camera_matrix"),
    "missing distortion_model": (_set("distortion_model", _DELETE), "distortion_model"),
    "missing distortion_coefficients": (_set("distortion_coefficients", _DELETE), "distortion_coefficients"),
    "missing extrinsics": (_set("extrinsics", _DELETE), "extrinsics"),
    "missing extrinsics.rotation": (_set("extrinsics.rotation", _DELETE), "extrinsics.rotation"),
    "missing extrinsics.parent_frame": (_set("extrinsics.parent_frame", _DELETE), "extrinsics.parent_frame"),
    "negative width": (_set("image_width", -5), "image_width"),
    "K wrong size": (_set("camera_matrix", {"rows": 2, "cols": 3, "data": [1, 0, 1, 0, 1, 1]}), "camera_matrix"),
    "K rows x cols mismatch": (_set("camera_matrix.data", [300.0, 0, 80, 0, 300, 60]), "camera_matrix"),
    "K negative focal": (_set("camera_matrix.data", [-300.0, 0, 80, 0, 300, 60, 0, 0, 1]), "camera_matrix"),
    "K zero focal": (_set("camera_matrix.data", [300.0, 0, 80, 0, 0, 60, 0, 0, 1]), "camera_matrix"),
    "unknown distortion model": (_set("distortion_model", "equidistant"), "distortion_model"),
    "wrong coefficient count": (_set("distortion_coefficients", {"rows": 1, "cols": 4, "data": [0.1, 0, 0, 0]}),
                                "distortion_coefficients"),
    "rectification not 3x3": (_set("rectification_matrix", {"rows": 2, "cols": 2, "data": [1, 0, 0, 1]}),
                              "rectification_matrix"),
    "projection not 3x4": (_set("projection_matrix", {"rows": 3, "cols": 3, "data": [1, 0, 0, 0, 1, 0, 0, 0, 1]}),
                           "projection_matrix"),
    "quaternion not unit": (_set("extrinsics.rotation", [0.0, 0.0, 0.0, 1.01]), "extrinsics.rotation"),
    "quaternion zero": (_set("extrinsics.rotation", [0.0, 0.0, 0.0, 0.0]), "extrinsics.rotation"),
    "quaternion 3 numbers": (_set("extrinsics.rotation", [0.0, 0.0, 1.0]), "extrinsics.rotation"),
    "translation 2 numbers": (_set("extrinsics.translation", [0.0, 1.0]), "extrinsics.translation"),
    "translation text": (_set("extrinsics.translation", ["a", "b", "c"]), "extrinsics"),
    # a YAML list/mapping here used to crash with "unhashable type" instead of naming the field
    "distortion model a list": (_set("distortion_model", ["plumb_bob"]), "distortion_model"),
    "distortion model a mapping": (_set("distortion_model", {"name": "plumb_bob"}), "distortion_model"),
    # a fractional size used to be truncated silently (720.5 -> 720)
    "fractional width": (_set("image_width", 160.5), "image_width"),
    "boolean height": (_set("image_height", True), "image_height"),
    # negative rows/cols with a matching product used to crash in reshape
    "negative rows and cols": (_set("distortion_coefficients", {"rows": -1, "cols": -5, "data": [0.0] * 5}),
                               "distortion_coefficients"),
}


@pytest.mark.parametrize("case", sorted(BAD_FIELDS))
def test_load_calibration_rejects_bad_field_naming_it(tmp_path, case):
    mutate, field = BAD_FIELDS[case]
    doc = copy.deepcopy(_good_doc())
    mutate(doc)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as err:
        load_calibration(path)
    assert field in err.value.field and str(path) in err.value.field
    assert err.value.fix


def test_load_calibration_accepts_quaternion_within_tolerance_and_normalizes(tmp_path):
    doc = _good_doc()
    doc["extrinsics"]["rotation"] = [0.0, 0.0, 0.0, 1.0 + 5e-7]
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(doc))
    R = load_calibration(path).T_base_camera[:3, :3]
    assert np.allclose(R, np.eye(3), atol=1e-12)


def test_load_calibration_rejects_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError):
        load_calibration(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("image_width: [unclosed\n")
    with pytest.raises(ConfigError):
        load_calibration(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError):
        load_calibration(bad)


def test_camera_model_rejects_non_orthonormal_extrinsics():
    T = np.eye(4)
    T[0, 0] = 1.1
    with pytest.raises(ConfigError) as err:
        CameraModel(160, 120, K, [0] * 5, "plumb_bob", T)
    assert err.value.field == "extrinsics"


def test_pixel_rays_follow_a_replaced_camera():
    import dataclasses

    cam = make_camera(D=[0, 0, 0, 0, 0])
    first = cam.pixel_rays()
    K2 = K.copy()
    K2[0, 0], K2[1, 1] = 2 * K[0, 0], 2 * K[1, 1]     # same principal point, twice the focal length
    wider = dataclasses.replace(cam, K=K2)
    assert np.allclose(wider.pixel_rays()[0, 0], first[0, 0] / 2)


def test_camera_model_rejects_a_non_string_distortion_model():
    with pytest.raises(ConfigError) as err:
        CameraModel(160, 120, K, [0] * 5, ["plumb_bob"], np.eye(4))
    assert err.value.field == "distortion_model"


# ---------------------------------------------------------------- match_stream: one size/intrinsics rule
def test_match_stream_refuses_other_sizes_unless_rescaling_is_asked_for():
    from kinema4d_core.camera import CameraModel, match_stream
    from kinema4d_core.errors import ConfigError
    cam = CameraModel(640, 480, np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]]), np.zeros(5),
                      "plumb_bob", np.eye(4))
    assert match_stream(cam, 640, 480, cam.K) is cam
    with pytest.raises(ConfigError, match="320x240 but the calibration is 640x480"):
        match_stream(cam, 320, 240)
    half = match_stream(cam, 320, 240, rescale=True)
    np.testing.assert_allclose(half.K, [[250.0, 0, 159.5], [0, 250.0, 119.5], [0, 0, 1]])
    with pytest.raises(ConfigError, match="aspect ratio"):
        match_stream(cam, 640, 360, rescale=True)
    with pytest.raises(ConfigError, match="intrinsics .* disagree"):
        match_stream(cam, 640, 480, np.array([[520.0, 0, 319.5], [0, 520.0, 239.5], [0, 0, 1]]))


def test_mount_to_optical_defaults_to_rep103_and_round_trips(tmp_path):
    from kinema4d_core.camera import OPTICAL_IN_MOUNT, calibration_from_dict

    cam = load_calibration(REPO / "calibration/sim_camera.yaml")
    assert cam.T_mount_optical is None
    np.testing.assert_array_equal(cam.mount_to_optical(), OPTICAL_IN_MOUNT)
    # body x (forward) is optical z, body y (left) is optical -x, body z (up) is optical -y
    np.testing.assert_array_equal(OPTICAL_IN_MOUNT[:3, :3] @ [0, 0, 1], [1, 0, 0])
    np.testing.assert_array_equal(OPTICAL_IN_MOUNT[:3, :3] @ [1, 0, 0], [0, -1, 0])
    doc = calibration_to_dict(cam)
    doc["extrinsics"]["T_mount_optical"] = {"translation": [0.0, 0.015, 0.0], "rotation": [-0.5, 0.5, -0.5, 0.5]}
    mounted = calibration_from_dict(doc, "lab.yaml")
    np.testing.assert_allclose(mounted.T_mount_optical[:3, 3], [0.0, 0.015, 0.0])
    np.testing.assert_allclose(mounted.T_mount_optical[:3, :3], OPTICAL_IN_MOUNT[:3, :3], atol=1e-12)
    again = calibration_from_dict(calibration_to_dict(mounted.with_pose(np.eye(4))), "again.yaml")
    np.testing.assert_allclose(again.T_mount_optical, mounted.T_mount_optical, atol=1e-12)
    doc["extrinsics"]["T_mount_optical"] = {"translation": [0.0, 0.0]}
    with pytest.raises(ConfigError, match="T_mount_optical"):
        calibration_from_dict(doc, "bad.yaml")
