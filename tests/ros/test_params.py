"""ParamSpec validation (no ROS graph needed)."""

from __future__ import annotations

from kinema4d_ros.params import ParamSpec


def test_bounds_are_checked_each_on_its_own():
    only_max = ParamSpec("n", 3, "n", max=10)
    assert only_max.error(11) is not None and only_max.error(10) is None
    only_min = ParamSpec("x", 1.0, "x", min=0.0)
    assert only_min.error(-0.5) is not None and only_min.error(1e9) is None
    both = ParamSpec("y", 1, "y", min=1, max=4)
    assert both.error(0) and both.error(5) and both.error(2) is None
    assert ParamSpec("b", True, "b", min=0, max=1).error(True) is None     # booleans are not numbers here


def test_calibration_parameter_must_be_in_the_robot_base_frame(tmp_path, repo_root):
    """projector/inference load `calibration_file` through optional_calibration(path, robot): a
    calibration made against another frame than the robot's base is refused, naming the field."""
    import dataclasses

    import pytest

    from kinema4d_core.camera import load_calibration, save_calibration
    from kinema4d_core.errors import InputError
    from kinema4d_core.robot import load_robot
    from kinema4d_ros.params import optional_calibration

    robot = load_robot("panda")
    good = repo_root / "calibration" / "sim_camera.yaml"
    assert optional_calibration("", robot) is None
    assert optional_calibration(str(good), robot).parent_frame == "panda_link0"
    other = tmp_path / "world_frame.yaml"
    save_calibration(dataclasses.replace(load_calibration(good), parent_frame="world"), other)
    with pytest.raises(InputError, match="extrinsics.parent_frame") as err:
        optional_calibration(str(other), robot)
    assert "'world'" in str(err.value) and "panda_link0" in str(err.value)
    assert optional_calibration(str(other)).parent_frame == "world"     # no robot: no frame check
