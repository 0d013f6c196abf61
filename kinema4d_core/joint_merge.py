"""Merge joint states that real drivers split over several topics into one robot joint vector.

Real drivers rarely publish exactly the robot config's joint names on one topic: franka_ros2
publishes the arm on ``/joint_states`` as ``fr3_joint1..7`` and the gripper on its own topic,
a UR driver publishes without the gripper at all. ``JointMerger`` takes JointState-like samples
(names, positions, stamp, source topic), renames them to the config's names
(``JointNaming``: an explicit map, then a prefix rewrite), keeps the newest value of every joint
by stamp, and returns the full vector in the robot's order, with fixed values for joints that no
topic publishes (e.g. a gripper). Every error names the joints and the parameter to set.

Units: positions in radians (revolute / continuous) or metres (prismatic); stamps in seconds
(0 = unknown: the sample counts as "now").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from kinema4d_core.errors import ConfigError, InputError

#: Parameter names used in errors (the ROS nodes declare them with these names).
P_TOPICS, P_MAP, P_PREFIX, P_FIXED = "joint_state_topics", "joint_name_map", "joint_name_prefix", "fixed_joint_values"


def parse_pairs(value: str | Sequence[str], param: str, *, numeric: bool = False) -> dict[str, str | float]:
    """``"a:b, c:d"`` or ``["a:b", "c:d"]`` (``=`` works too) -> {a: b, c: d}; numbers with ``numeric``.

    Raises ConfigError naming ``param`` for an entry without a separator or a bad number.
    """
    items = [value] if isinstance(value, str) else list(value)
    out: dict[str, str | float] = {}
    for item in items:
        for entry in str(item).split(","):
            entry = entry.strip()
            if not entry:
                continue
            sep = ":" if ":" in entry else "=" if "=" in entry else None
            if sep is None:
                raise ConfigError(f"'{entry}' is not a 'name:value' pair", field=param,
                                  fix="write entries as name:value, separated by commas or as a list")
            key, val = (s.strip() for s in entry.split(sep, 1))
            if not key or not val:
                raise ConfigError(f"'{entry}' has an empty side", field=param, fix="write entries as name:value")
            if numeric:
                try:
                    out[key] = float(val)
                except ValueError:
                    raise ConfigError(f"'{val}' (for {key}) is not a number", field=param,
                                      fix="give joint positions in radians or metres, e.g. panda_finger_joint1:0.04"
                                      ) from None
                if not np.isfinite(out[key]):
                    raise ConfigError(f"{key}:{val} is not finite", field=param, fix="give a finite value")
            else:
                out[key] = val
    return out


@dataclass(frozen=True)
class JointNaming:
    """Driver joint name -> config joint name.

    name_map: explicit renames (driver name -> config name), tried first.
    strip_prefix / add_prefix: a driver name starting with ``strip_prefix`` loses it and gains
    ``add_prefix`` (``fr3_joint1`` -> ``panda_joint1`` with "fr3_" / "panda_").
    """

    name_map: Mapping[str, str] = field(default_factory=dict)
    strip_prefix: str = ""
    add_prefix: str = ""

    @classmethod
    def from_params(cls, name_map: str | Sequence[str] = "", prefix: str = "") -> "JointNaming":
        """From the node parameters: ``joint_name_map`` ("drv:cfg, ...") and ``joint_name_prefix``
        ("fr3_" strips it, "fr3_:panda_" replaces it)."""
        mapping = {k: str(v) for k, v in parse_pairs(name_map, P_MAP).items()}
        prefix = (prefix or "").strip()
        strip, _, add = prefix.partition(":")
        return cls(mapping, strip.strip(), add.strip())

    def config_name(self, name: str) -> str:
        if name in self.name_map:
            return self.name_map[name]
        if self.strip_prefix and name.startswith(self.strip_prefix):
            return self.add_prefix + name[len(self.strip_prefix):]
        return name


@dataclass(frozen=True)
class JointSample:
    """One JointState-like message: ``names`` and ``positions`` (same length), ``stamp`` (s),
    ``source`` (topic name, for errors)."""

    names: Sequence[str]
    positions: Sequence[float]
    stamp: float = 0.0
    source: str = "joint_states"


@dataclass(frozen=True)
class MergedJoints:
    """The robot's joint vector (config order), the newest stamp merged, and where values came from."""

    q: np.ndarray
    stamp: float
    fixed: tuple[str, ...] = ()          # joints that took their fixed_joint_values value
    ignored: tuple[str, ...] = ()        # driver names that are not joints of the robot


class JointMerger:
    """Keeps the newest value of each robot joint over all sources (see module docstring).

    robot_joints: the config's actuated joints (output order). extra_known: other names that are
    the robot's but not inputs (mimic joints): accepted and ignored. fixed: config joint -> value
    used while no source publishes it. max_gap_s: a joint whose newest value is more than this
    older than the merged stamp counts as missing (0 disables). strict: unknown names are errors.
    """

    def __init__(self, robot_joints: Sequence[str], *, naming: JointNaming | None = None,
                 fixed: Mapping[str, float] | None = None, extra_known: Iterable[str] = (),
                 max_gap_s: float = 0.0, strict: bool = False):
        self.robot_joints = tuple(robot_joints)
        self.naming = naming or JointNaming()
        self.fixed = {k: float(v) for k, v in (fixed or {}).items()}
        self.extra_known = frozenset(extra_known)
        self.max_gap_s = float(max_gap_s)
        self.strict = bool(strict)
        known = set(self.robot_joints) | self.extra_known
        bad_fixed = sorted(set(self.fixed) - set(self.robot_joints))
        if bad_fixed:
            raise ConfigError(f"fixed values for joints the robot does not have: {bad_fixed}", field=P_FIXED,
                              fix=f"name joints of the robot config: {list(self.robot_joints)}")
        bad_map = sorted(v for v in self.naming.name_map.values() if v not in known)
        if bad_map:
            raise ConfigError(f"maps onto joints the robot does not have: {bad_map}", field=P_MAP,
                              fix=f"map driver names onto the robot config's joints: {list(self.robot_joints)}")
        self._index = {n: i for i, n in enumerate(self.robot_joints)}
        self._values = np.full(len(self.robot_joints), np.nan)
        self._stamps = np.full(len(self.robot_joints), -np.inf)
        self._sources: dict[str, str] = {}

    def reset(self) -> None:
        """Forget every value (e.g. after a clock jump)."""
        self._values[:] = np.nan
        self._stamps[:] = -np.inf

    def add(self, sample: JointSample) -> tuple[str, ...]:
        """Store the sample's joints (newer stamps win per joint); returns the ignored driver names.

        Raises InputError (nothing stored) for a length mismatch, duplicate names, non-finite
        values, or a sample naming none of the robot's joints (the fix names the mapping
        parameters); unknown names too when strict.
        """
        names = [str(n) for n in sample.names]
        pos = np.asarray(sample.positions, dtype=np.float64).reshape(-1)
        where = f"{sample.source}"
        if len(names) != pos.shape[0]:
            raise InputError(f"{len(names)} names but {pos.shape[0]} positions", field=f"{where}.position",
                             fix="publish one position per name")
        mapped = [self.naming.config_name(n) for n in names]
        if len(set(mapped)) != len(mapped):
            dup = sorted({m for m in mapped if mapped.count(m) > 1})
            raise InputError(f"joints {dup} appear more than once (after renaming)", field=f"{where}.name",
                             fix=f"publish each joint once; check {P_MAP} / {P_PREFIX}")
        ignored = tuple(n for n, m in zip(names, mapped) if m not in self._index and m not in self.extra_known)
        used = [(i, self._index[m]) for i, m in enumerate(mapped) if m in self._index]
        if not used or (self.strict and ignored):
            what = " (none of the robot's joints)" if not used else ""
            raise InputError(f"unknown joints {list(ignored) or names}{what}", field=f"{where}.name",
                             fix=f"set {P_PREFIX} (e.g. 'fr3_:panda_') or {P_MAP} (driver:config pairs) so they "
                                 f"map onto {list(self.robot_joints)}")
        bad = [names[i] for i, _ in used if not np.isfinite(pos[i])]
        if bad:
            raise InputError(f"non-finite positions for {bad}", field=f"{where}.position",
                             fix="publish finite joint positions")
        stamp = float(sample.stamp)
        for i, j in used:
            if stamp >= self._stamps[j] or stamp <= 0.0:
                self._values[j] = pos[i]
                self._stamps[j] = stamp if stamp > 0.0 else max(self._stamps[j], 0.0)
                self._sources[self.robot_joints[j]] = sample.source
        return ignored

    def merged(self) -> MergedJoints:
        """The full joint vector; InputError naming the missing joints and the parameters to set."""
        q = self._values.copy()
        stamp = float(np.max(self._stamps)) if np.isfinite(np.max(self._stamps)) else 0.0
        missing = np.isnan(q)
        stale = ~missing & (self.max_gap_s > 0) & (self._stamps > 0) & (stamp - self._stamps > self.max_gap_s)
        fixed_used: list[str] = []
        for j, name in enumerate(self.robot_joints):
            if (missing[j] or stale[j]) and name in self.fixed:
                q[j] = self.fixed[name]
                fixed_used.append(name)
                missing[j] = stale[j] = False
        if missing.any() or stale.any():
            names_missing = [n for n, m in zip(self.robot_joints, missing) if m]
            names_stale = [n for n, s in zip(self.robot_joints, stale) if s]
            parts = []
            if names_missing:
                parts.append(f"no value yet for {names_missing}")
            if names_stale:
                parts.append(f"values older than {self.max_gap_s} s for {names_stale}")
            example = (names_missing or names_stale)[-1]
            raise InputError("; ".join(parts), field="joint_states",
                             fix=f"publish them on one of {P_TOPICS}, map the driver's names with {P_MAP} / "
                                 f"{P_PREFIX}, or give a fixed value with {P_FIXED} (e.g. '{example}:0.0')")
        return MergedJoints(q, stamp, tuple(fixed_used))

    def sources(self) -> dict[str, str]:
        """Config joint -> topic its current value came from."""
        return dict(self._sources)


def merge_samples(robot_joints: Sequence[str], samples: Iterable[JointSample], **kwargs) -> MergedJoints:
    """One-shot merge of ``samples`` (any order) with ``JointMerger(robot_joints, **kwargs)``."""
    merger = JointMerger(robot_joints, **kwargs)
    for s in samples:
        merger.add(s)
    return merger.merged()
