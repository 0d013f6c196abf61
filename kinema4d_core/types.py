"""Types shared by the generation backends, the model pipeline and the episode service.

This module imports nothing else from kinema4d_core (only numpy and the standard library), so
``backends``, ``model.pipeline``, ``service`` and the evaluation modules can all depend on it
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

#: ``progress(stage, step, total)``: stage is e.g. "encode", "denoise", "decode", "composite"
ProgressFn = Callable[[str, int, int], None]
#: ``should_cancel()``: polled once per step; True stops generation with ``Cancelled``
CancelFn = Callable[[], bool]

GUIDANCE_MODES = ("faithful", "single")


class Cancelled(Exception):
    """Generation stopped because ``should_cancel()`` returned True (checked once per step)."""


@dataclass(frozen=True)
class GenerationRequest:
    """One generation: the current world image and the robot condition sequence.

    first_frame (H, W, 3) uint8; robot: ``projection.RobotCondition`` (T frames at H x W, camera
    optical frame, metres); first_depth (H, W) float32 metres along the optical axis, or None.
    """

    first_frame: np.ndarray
    robot: Any
    first_depth: np.ndarray | None = None
    seed: int = 42
    steps: int = 50
    guidance: float = 5.0
    guidance_mode: str = "faithful"


class Backend(Protocol):
    """What every generation backend offers (see ``kinema4d_core.registry`` for the list)."""

    name: str

    def generate(self, request: GenerationRequest, progress: ProgressFn | None = None,
                 should_cancel: CancelFn | None = None) -> Any: ...   # -> rollout.Rollout
