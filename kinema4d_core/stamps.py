"""Stamp ordering that cannot block: future stamps, bag loops, clock jumps and clock skew.

A node that drops every input older than the newest one it accepted blocks forever after one
future-stamped message (a driver host whose clock runs ahead), after a bag loop (stamps start
over) or after a clock jump backwards (NTP step, /clock restarting). ``StampGuard`` decides
per input stamp:

1. stamp <= 0 (unset): accepted, ordering unchanged.
2. stamp more than ``skew_tolerance_s`` ahead of the receiver's clock: dropped ("future"),
   without moving the ordering point, so it blocks nothing.
3. stamp >= the newest accepted one: accepted.
4. stamp older than the newest accepted one: a reset when it is older by more than
   ``reset_jump_s`` (a loop / a jump backwards), or when the newest accepted stamp is itself
   ahead of the clock by more than the tolerance (the clock went back); accepted with
   ``reset=True`` so the caller logs it once and clears what depended on the old timeline.
   Otherwise dropped ("out_of_order").

All times in seconds, on the receiver's clock (``now``; 0 or less = clock not running yet, e.g.
use_sim_time before /clock: the future check is skipped).
"""

from __future__ import annotations

from dataclasses import dataclass

from kinema4d_core.errors import ConfigError

#: Parameter names (the ROS nodes declare them with these names).
P_RESET, P_SKEW = "stamp_reset_jump_s", "clock_skew_tolerance_s"


@dataclass(frozen=True)
class StampDecision:
    """``accept``: use the input. ``reason``: why it was dropped ("future", "out_of_order") or,
    on a reset, what happened. ``reset``: the ordering started over at this stamp."""

    accept: bool
    reason: str = ""
    reset: bool = False


class StampGuard:
    """Per-input stamp ordering with reset and skew tolerance (see module docstring). Not thread-safe:
    call under the caller's lock."""

    def __init__(self, reset_jump_s: float = 5.0, skew_tolerance_s: float = 0.5):
        self.configure(reset_jump_s, skew_tolerance_s)
        self.last = float("-inf")
        self.resets = 0

    def configure(self, reset_jump_s: float, skew_tolerance_s: float) -> None:
        """Change the thresholds; ConfigError naming the parameter when negative."""
        if not reset_jump_s > 0:
            raise ConfigError(f"{P_RESET}={reset_jump_s} must be > 0", field=P_RESET,
                              fix="a backwards jump larger than this many seconds restarts the ordering; e.g. 5.0")
        if not skew_tolerance_s >= 0:
            raise ConfigError(f"{P_SKEW}={skew_tolerance_s} must be >= 0", field=P_SKEW,
                              fix="the most the sender's clock may run ahead of ours, in seconds; e.g. 0.5")
        self.reset_jump_s, self.skew_tolerance_s = float(reset_jump_s), float(skew_tolerance_s)

    def check(self, stamp: float, now: float) -> StampDecision:
        """Decide about one input stamped ``stamp`` arriving at clock time ``now`` (both seconds)."""
        if stamp <= 0.0:
            return StampDecision(True)
        tol = self.skew_tolerance_s
        if now > 0.0 and stamp > now + tol:
            return StampDecision(False, f"stamp {stamp:.3f} is {stamp - now:.3f} s ahead of this clock "
                                        f"(more than {P_SKEW}={tol}): check the sender's clock sync or raise {P_SKEW}")
        if stamp >= self.last:
            self.last = stamp
            return StampDecision(True)
        back = self.last - stamp
        clock_went_back = now > 0.0 and self.last > now + tol
        if back > self.reset_jump_s or clock_went_back:
            why = (f"the clock went back (newest accepted stamp {self.last:.3f} is ahead of now {now:.3f})"
                   if clock_went_back and back <= self.reset_jump_s else
                   f"stamps jumped back {back:.3f} s (more than {P_RESET}={self.reset_jump_s})")
            self.last = stamp
            self.resets += 1
            return StampDecision(True, f"{why}: restarting stamp order at {stamp:.3f} (bag loop or clock reset)",
                                 reset=True)
        return StampDecision(False, f"stamp {stamp:.6f} < newest accepted {self.last:.6f}")

    def stale(self, stamp: float, now: float, max_age_s: float) -> float | None:
        """Age of ``stamp`` (s) when older than ``max_age_s`` plus the skew tolerance, else None
        (0 disables; unset stamps and a stopped clock are never stale)."""
        if max_age_s <= 0 or stamp <= 0.0 or now <= 0.0:
            return None
        age = now - stamp
        return age if age > max_age_s + self.skew_tolerance_s else None
