"""Shared fixtures for the model tests: one tiny checkpoint per session, a synthetic robot condition."""

from __future__ import annotations

import numpy as np
import pytest

from kinema4d_core.model.config import TINY_ARM
from .model_helpers import synthetic_condition


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    from kinema4d_core.model.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", seed=0)


@pytest.fixture
def condition():
    return synthetic_condition()


@pytest.fixture
def first_frame():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (TINY_ARM.height, TINY_ARM.width, 3), dtype=np.uint8)
