"""Fixtures for the training tests: a tiny preset, synthetic Robo4D folders (written through the
real Robo4D writer and read back by the real reader), and tiny training configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kinema4d_core.model.config import TINY_ARM


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread per test (2 shared cores: oversubscription makes the tiny VAE much slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_preset(tmp_path_factory) -> Path:
    from kinema4d_core.model.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("train-tiny") / "preset", seed=0)


def synthetic_episode(seed: int, n: int = TINY_ARM.num_frames, h: int = TINY_ARM.height, w: int = TINY_ARM.width):
    """A box 'robot' sweeping right and pushing a red 'cube' once it reaches it; world pointmap a
    tilted plane with the cube raised. Returns (rgb, pointmap01, robot_rgb, robot_pointmap01)."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:h, 0:w]
    cube0 = 40 + int(rng.integers(0, 8))
    rgb = np.zeros((n, h, w, 3), np.uint8)
    pm = np.zeros((n, h, w, 3), np.float32)
    rrgb = np.zeros_like(rgb)
    rpm = np.zeros_like(pm)
    for t in range(n):
        x0 = 4 + t
        robot = (v >= 14) & (v < 34) & (u >= x0) & (u < x0 + 10)
        cube_x = max(cube0, x0 + 10)
        cube = (v >= 20) & (v < 30) & (u >= cube_x) & (u < cube_x + 8)
        rgb[t] = [90, 110, 140]
        rgb[t][cube] = [220, 40, 30]
        rgb[t][robot] = [230, 230, 230]
        pm[t, ..., 0] = u / (w - 1)
        pm[t, ..., 1] = v / (h - 1)
        pm[t, ..., 2] = 0.5 + 0.3 * cube + 0.4 * robot
        rrgb[t][robot] = [230, 230, 230]
        rpm[t][robot] = np.stack([u[robot] / (w - 1), v[robot] / (h - 1), np.full(robot.sum(), 0.9)], -1)
    return rgb, pm, rrgb, rpm


@pytest.fixture(scope="session")
def robo4d_root(tmp_path_factory) -> Path:
    from kinema4d_core.episodes import write_robo4d_episode

    root = tmp_path_factory.mktemp("robo4d") / "synthetic"
    for i in range(3):
        write_robo4d_episode(root, str(i), *synthetic_episode(i))
    return root


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One latent cache for every training test (same base, variant and size: same fingerprint)."""
    return tmp_path_factory.mktemp("latent-cache")


def tiny_config(tmp_path: Path, tiny_preset: Path, robo4d_root: Path, cache: Path, *overrides: str,
                mode: str = "scratch"):
    """A tiny CPU config on the synthetic Robo4D folder (2 training + 1 validation sample)."""
    from kinema4d_core.training.config import config_from_dict

    data = {
        "data": {"robo4d": [str(robo4d_root)], "cache_dir": str(cache), "shard_size": 2,
                 "validation_episodes": 1, "soft_mask_fraction": 0.1},
        "model": {"mode": mode, "base": str(tiny_preset / "base"), "variant": "rgb-pm", "arm": "tiny",
                  "lora_rank": 4, "lora_alpha": 4.0},
        "optim": {"lr": 1e-3, "warmup_steps": 2, "grad_clip": 1.0},
        "train": {"steps": 4, "batch_size": 2, "seed": 0, "output_dir": str(tmp_path / "run"), "log_every": 0,
                  "checkpoint_every": 0, "validate_every": 0, "validation_steps": 2},
    }
    return config_from_dict(data, root=tmp_path, overrides=overrides)
