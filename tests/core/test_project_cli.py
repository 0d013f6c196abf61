"""`kinema4d project` end to end on the Panda, and every bad input leaving no output behind."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from kinema4d_core.camera import CameraModel, look_at, save_calibration
from kinema4d_core.cli import main
from kinema4d_core.projection import load_robot_condition


@pytest.fixture(scope="module")
def panda():
    from kinema4d_core.robot import load_robot

    return load_robot("panda")


@pytest.fixture
def inputs(tmp_path, panda):
    """A 720x480 calibration looking at the Panda and a 12-frame joint-position trajectory."""
    K = np.array([[600.0, 0, 359.5], [0, 600.0, 239.5], [0, 0, 1]])
    cam = CameraModel(720, 480, K, [0.05, -0.08, 0.0, 0.0, 0.0], "plumb_bob",
                      look_at([1.5, 0.5, 0.9], [0.0, 0.0, 0.45]), parent_frame="panda_link0")
    save_calibration(cam, tmp_path / "cal.yaml")
    Q = np.tile(panda.home(), (12, 1))
    Q[:, 1] = np.linspace(-0.8, 0.2, 12)
    np.savez(tmp_path / "traj.npz", joint_names=np.array(panda.joint_names), positions=Q)
    return tmp_path / "cal.yaml", tmp_path / "traj.npz"


def test_project_writes_the_condition_folder(inputs, tmp_path, capsys):
    cal, traj = inputs
    out = tmp_path / "out"
    code = main(["project", "--robot", "panda", "--calibration", str(cal), "--trajectory", str(traj),
                 "--out", str(out), "--frames", "49", "--height", "96", "--width", "128"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["mask_pointmap.mp4", "mask_video.mp4", "robot_pointmap.npz"]
    cond = load_robot_condition(out)
    assert cond.mask.shape == (49, 96, 128)
    assert np.all(cond.mask.reshape(49, -1).sum(axis=1) > 50)
    # K was scaled from 720x480 to 128x96
    assert np.allclose(cond.K[0, 0], 600 * 128 / 720) and np.allclose(cond.K[1, 2], (239.5 + 0.5) * 0.2 - 0.5)
    line = capsys.readouterr().out
    assert "49 frames" in line and "128x96" in line and "robot pixels" in line and " s " in line


def _bad_calibration(tmp_path, cal):
    doc = yaml.safe_load(cal.read_text())
    del doc["camera_matrix"]
    bad = tmp_path / "bad_cal.yaml"
    bad.write_text(yaml.safe_dump(doc))
    return bad


def _looking_away(tmp_path, cal):
    doc = yaml.safe_load(cal.read_text())
    T = look_at([1.5, 0.5, 0.9], [4.0, 2.0, 1.0])
    from scipy.spatial.transform import Rotation

    doc["extrinsics"]["rotation"] = [float(v) for v in Rotation.from_matrix(T[:3, :3]).as_quat()]
    away = tmp_path / "away.yaml"
    away.write_text(yaml.safe_dump(doc))
    return away


@pytest.mark.parametrize("case,expect", [
    ("robot not visible", "not visible"),
    ("bad calibration", "camera_matrix"),
    ("missing trajectory", "trajectory"),
    ("unknown robot", "robot"),
    ("height without width", "--height"),
    ("too few frames", "--frames"),
])
def test_bad_input_fails_cleanly_without_output(inputs, tmp_path, capsys, case, expect):
    cal, traj = inputs
    args = {"--robot": "panda", "--calibration": str(cal), "--trajectory": str(traj), "--frames": "9",
            "--height": "48", "--width": "64"}
    if case == "robot not visible":
        args["--calibration"] = str(_looking_away(tmp_path, cal))
    elif case == "bad calibration":
        args["--calibration"] = str(_bad_calibration(tmp_path, cal))
    elif case == "missing trajectory":
        args["--trajectory"] = str(tmp_path / "nope.npz")
    elif case == "unknown robot":
        args["--robot"] = "no_such_robot"
    elif case == "height without width":
        del args["--width"]
    elif case == "too few frames":
        args["--frames"] = "1"
    out = tmp_path / "out"
    argv = ["project", "--out", str(out)] + [x for kv in args.items() for x in kv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("kinema4d project: error:") and expect in err
    assert not out.exists() or not any(out.iterdir())


def test_extrinsics_in_another_frame_than_the_robot_base_are_refused(inputs, tmp_path, capsys):
    cal, traj = inputs
    doc = yaml.safe_load(cal.read_text())
    doc["extrinsics"]["parent_frame"] = "world"
    other = tmp_path / "world_cal.yaml"
    other.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    argv = ["project", "--robot", "panda", "--calibration", str(other), "--trajectory", str(traj),
            "--out", str(out), "--frames", "5", "--height", "48", "--width", "64"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "extrinsics.parent_frame" in err and "'world'" in err and "'panda_link0'" in err
    assert not out.exists()


def test_failure_keeps_a_previous_good_output_untouched(inputs, tmp_path):
    cal, traj = inputs
    out = tmp_path / "out"
    base = ["project", "--robot", "panda", "--trajectory", str(traj), "--out", str(out), "--frames", "5",
            "--height", "48", "--width", "64"]
    assert main(base + ["--calibration", str(cal)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(base + ["--calibration", str(_looking_away(tmp_path, cal))]) == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
