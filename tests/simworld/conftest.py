"""Shared sim fixtures: one small SimWorld and a few episodes per test session (rendering dominates)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

SMALL = dict(width=180, height=120)
# Seeds whose open-loop push succeeds / fails with the default cube noise (measured, then asserted
# from physics by the tests: if the scene changes, re-pick them with bench/simworld.py --outcomes).
PUSH_SUCCESS_SEED = 2
PUSH_FAILURE_SEED = 0


@pytest.fixture(scope="session")
def small_world():
    from kinema4d_core.simworld import SimConfig, SimWorld

    world = SimWorld(SimConfig(**SMALL))
    yield world
    world.close()


@pytest.fixture(scope="session")
def push_seeds() -> tuple[int, int]:
    """(success seed, failure seed) of the push task."""
    return PUSH_SUCCESS_SEED, PUSH_FAILURE_SEED


@pytest.fixture(scope="session")
def push_episodes(small_world):
    """{seed: Episode} for the success and failure seeds of the push task (49 frames)."""
    return {seed: small_world.run_episode("push", 49, seed) for seed in (PUSH_SUCCESS_SEED, PUSH_FAILURE_SEED)}
