"""Shared fixtures for the model tests: one tiny checkpoint per session, a synthetic robot condition."""

from __future__ import annotations

import numpy as np
import pytest

from kinema4d_core.model.config import TINY_ARM
from .model_helpers import synthetic_condition


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run each model test with one intra-op thread. On a small shared CPU (2 cores, xdist -n 2, other
    suites running) OpenMP oversubscription makes the tiny VAE 20x slower (0.3 s -> 7 s per encode)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
