"""StampGuard: a future stamp, a bag loop or a clock jump never blocks the input for good."""

from __future__ import annotations

import pytest

from kinema4d_core.errors import ConfigError
from kinema4d_core.stamps import StampGuard


def test_future_stamp_is_dropped_without_blocking_the_normal_ones_after_it():
    g = StampGuard(reset_jump_s=5.0, skew_tolerance_s=0.5)
    assert g.check(100.0, now=100.0).accept
    future = g.check(1e6, now=100.1)
    assert not future.accept and "clock_skew_tolerance_s" in future.reason
    assert all(g.check(100.0 + 0.1 * i, now=100.1 + 0.1 * i).accept for i in range(1, 10))


def test_bounded_skew_is_tolerated_and_more_is_named():
    g = StampGuard(skew_tolerance_s=0.3)
    assert g.check(10.25, now=10.0).accept               # sender 0.25 s ahead: fine
    assert not g.check(10.45, now=10.1).accept           # 0.35 s ahead: dropped
    g.configure(5.0, 1.0)
    assert g.check(10.45, now=10.1).accept


def test_small_backwards_step_is_out_of_order_large_one_resets_once():
    g = StampGuard(reset_jump_s=2.0, skew_tolerance_s=0.5)
    for t in (50.0, 51.0, 52.0):
        assert g.check(t, now=t).accept
    d = g.check(51.5, now=52.1)
    assert not d.accept and not d.reset and "51.5" in d.reason
    loop = g.check(10.0, now=52.2)                       # bag loop: stamps start over
    assert loop.accept and loop.reset and "stamp_reset_jump_s" in loop.reason and g.resets == 1
    assert g.check(10.1, now=52.3).accept and g.resets == 1   # only the jump itself is a reset


def test_clock_going_back_resets_even_for_a_short_bag_loop():
    g = StampGuard(reset_jump_s=5.0, skew_tolerance_s=0.5)
    for t in (0.5, 1.0, 1.5, 2.0):                       # a 2 s bag on sim time
        assert g.check(t, now=t).accept
    d = g.check(0.5, now=0.5)                            # /clock restarted with the loop
    assert d.accept and d.reset and "clock went back" in d.reason


def test_unset_stamps_and_a_stopped_clock():
    g = StampGuard()
    assert g.check(0.0, now=5.0).accept and g.last == float("-inf")
    assert g.check(1e9, now=0.0).accept                  # use_sim_time before /clock: no future check
    assert g.stale(1.0, now=10.0, max_age_s=1.0) == pytest.approx(9.0)
    assert g.stale(9.2, now=10.0, max_age_s=0.5) is None  # 0.8 s < 0.5 + 0.5 tolerance
    assert g.stale(1.0, now=10.0, max_age_s=0.0) is None and g.stale(1.0, now=0.0, max_age_s=1.0) is None


def test_bad_thresholds_name_the_parameter():
    with pytest.raises(ConfigError, match="stamp_reset_jump_s"):
        StampGuard(reset_jump_s=0.0)
    with pytest.raises(ConfigError, match="clock_skew_tolerance_s"):
        StampGuard(skew_tolerance_s=-1.0)
