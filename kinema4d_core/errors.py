"""Exception types. Every error names what is wrong, where (the field), and how to fix it."""

from __future__ import annotations


class Kinema4DError(Exception):
    """Base class. ``str(err)`` reads: ``<field>: <problem>. Fix: <fix>``."""

    def __init__(self, problem: str, *, field: str | None = None, fix: str | None = None):
        self.problem = problem
        self.field = field
        self.fix = fix
        text = f"{field}: {problem}" if field else problem
        if fix:
            text += f". Fix: {fix}"
        super().__init__(text)


class ConfigError(Kinema4DError):
    """A robot config, calibration file or parameter is invalid."""


class InputError(Kinema4DError, ValueError):
    """Input data (arrays, trajectories, images, messages) is malformed."""


class UnreachablePoseError(InputError):
    """IK could not reach one or more end-effector poses.

    ``report`` lists ``(frame_index, position_error_m, rotation_error_rad)`` per failed frame.
    """

    def __init__(self, problem: str, *, report: list[tuple[int, float, float]], field: str | None = None,
                 fix: str | None = None):
        super().__init__(problem, field=field, fix=fix)
        self.report = report


class CheckpointError(Kinema4DError):
    """A checkpoint folder or file does not match the expected layout/keys/shapes."""


class CalibrationError(Kinema4DError):
    """Calibration could not produce a usable result."""


class ResourceError(Kinema4DError):
    """A device or memory requirement cannot be met (CUDA missing, out of memory)."""
