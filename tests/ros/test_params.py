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
