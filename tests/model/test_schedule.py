"""Sampling grids: the release grid (diffusers 0.34's flow UniPC) computed in our code, the modern
grid (installed diffusers) still selectable, both reaching the transformer, and a tiny base layout
(no null entries in model_index.json) that every diffusers loader accepts."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch
from diffusers import UniPCMultistepScheduler

from kinema4d_core.backends import GenerationRequest, make_backend
from kinema4d_core.errors import ConfigError
from kinema4d_core.model.config import TINY_SCHEDULER
from kinema4d_core.model.schedule import TIMESTEP_GRIDS, release_grid, set_timestep_grid
from kinema4d_core.registry import backend_spec

SHIFT = 3.0          # flow_shift of the released Wan2.1 I2V 480P scheduler (and of the tiny preset)
N = 1000             # num_train_timesteps


def release_by_hand(n: int, shift: float = SHIFT, num_train: int = N) -> tuple[list[float], list[int]]:
    """diffusers 0.34, written out point by point: step i of n (i = 0 first) sits at the unshifted
    noise level u_i = (n - i) / n * (1 - 1/N) (0.34 flipped 1 - linspace(1, 1/N, n + 1) and dropped
    its last point), shifted by s * u / (1 + (s - 1) * u); the timestep is its integer part of sigma * N."""
    sigmas = []
    for i in range(n):
        u = (n - i) * (num_train - 1) / (n * num_train)
        sigmas.append(shift * u / (1 + (shift - 1) * u))
    return sigmas, [int(s * num_train) for s in sigmas]


def modern_by_hand(n: int, shift: float = SHIFT, num_train: int = N) -> list[int]:
    """The installed diffusers (0.42) grid by hand, for contrast: u_i = 1 - i / n * (1 - 1/N)."""
    out = []
    for i in range(n):
        u = 1 - i * (num_train - 1) / (n * num_train)
        s = shift * u / (1 + (shift - 1) * u)
        out.append(int((s - 1e-6 if abs(s - 1) < 1e-6 else s) * num_train))
    return out


def scheduler(**over) -> UniPCMultistepScheduler:
    return UniPCMultistepScheduler(**{**TINY_SCHEDULER, **over})


def test_three_steps_exact():
    assert release_by_hand(3)[1] == [999, 856, 599]
    assert modern_by_hand(3) == [999, 857, 600]
    s = scheduler()
    grid = set_timestep_grid(s, 3, "release")
    assert grid.timesteps.tolist() == [999, 856, 599] == s.timesteps.tolist()
    s.set_timesteps(3)
    assert s.timesteps.tolist() == [999, 857, 600]          # what the installed diffusers does by itself


@pytest.mark.parametrize("n, differing", [(3, 2), (4, 3), (10, 9), (25, 19), (50, 40)])
def test_release_grid_matches_first_principles(n, differing):
    sigmas, timesteps = release_by_hand(n)
    s = scheduler()
    grid = set_timestep_grid(s, n, "release")
    assert grid.name == "release" and grid.timesteps.dtype == np.int64
    assert grid.timesteps.tolist() == timesteps
    np.testing.assert_allclose(grid.sigmas[:-1], sigmas, rtol=0, atol=1e-7)      # float32 storage
    assert grid.sigmas[-1] == 0.0 and len(grid.sigmas) == n + 1                   # final_sigmas_type "zero"
    # the scheduler now holds exactly this grid (sigmas on the CPU, as diffusers keeps them)
    assert s.timesteps.tolist() == timesteps and s.timesteps.dtype == torch.int64
    assert torch.equal(s.sigmas, torch.from_numpy(grid.sigmas)) and s.sigmas.device.type == "cpu"
    assert s.num_inference_steps == n
    # and it differs from the installed diffusers' grid at the measured number of points
    modern = set_timestep_grid(scheduler(), n, "modern")
    assert modern.timesteps.tolist() == modern_by_hand(n)
    assert int((modern.timesteps != grid.timesteps).sum()) == differing


@pytest.mark.parametrize("n", [1, 3, 10, 50])
def test_modern_grid_is_the_installed_diffusers_grid(n):
    ref = scheduler()
    ref.set_timesteps(n)
    s = scheduler()
    grid = set_timestep_grid(s, n, "modern")
    assert grid.name == "modern"
    assert torch.equal(s.timesteps, ref.timesteps) and torch.equal(s.sigmas, ref.sigmas)
    assert grid.timesteps.tolist() == ref.timesteps.tolist()
    np.testing.assert_array_equal(grid.sigmas, ref.sigmas.numpy())


def test_release_grid_reads_shift_and_final_sigma_from_the_config():
    sig5, ts5 = release_by_hand(4, shift=5.0)
    grid = release_grid(4, scheduler(flow_shift=5.0).config)
    assert grid.timesteps.tolist() == ts5
    np.testing.assert_allclose(grid.sigmas[:-1], sig5, atol=1e-7)
    last = release_grid(4, scheduler(final_sigmas_type="sigma_min").config)
    assert last.sigmas[-1] == last.sigmas[-2] > 0                  # 0.34's "sigma_min": the last sigma repeated


def test_bad_grid_requests_are_named():
    with pytest.raises(ConfigError, match="unknown timestep grid 'old'"):
        set_timestep_grid(scheduler(), 3, "old")
    with pytest.raises(ConfigError, match="flow-matching UniPC schedulers only.*--timestep-grid modern"):
        release_grid(3, UniPCMultistepScheduler().config)            # epsilon-prediction default config
    with pytest.raises(ConfigError, match="shift_terminal"):
        release_grid(3, scheduler(shift_terminal=0.1).config)
    with pytest.raises(ConfigError, match="timestep_grid"):
        make_backend("kinema4d-tiny", timestep_grid="old")


def test_registry_offers_the_grid_everywhere():
    for name in ("kinema4d", "kinema4d-tiny"):
        opt = backend_spec(name).option("timestep_grid")
        assert opt.default == "release" and opt.choices == TIMESTEP_GRIDS and opt.cli_flag == "timestep-grid"
    from kinema4d_core.cli import build_parser

    args = build_parser().parse_args(["simulate", "--backend", "kinema4d-tiny", "--timestep-grid", "modern",
                                      "--first-frame", "f.png", "--robot", "r", "--out", "o"])
    assert args.timestep_grid == "modern"
    from kinema4d_core.registry import options_from_params

    assert options_from_params("kinema4d-tiny", {"timestep_grid": "modern"}) == {"timestep_grid": "modern"}


@pytest.fixture(scope="module")
def tiny_runs(tiny_dir):
    """Rollouts of the tiny model (faithful guidance, 3 steps) on each grid, release twice, with the
    timesteps the transformer actually received."""
    from .model_helpers import synthetic_condition
    from kinema4d_core.model.config import TINY_ARM

    before = torch.get_num_threads()
    torch.set_num_threads(1)        # module fixtures run before conftest's per-test one-thread fixture
    condition = synthetic_condition()
    first = np.random.default_rng(1).integers(0, 256, (TINY_ARM.height, TINY_ARM.width, 3), dtype=np.uint8)
    req = GenerationRequest(first, condition, steps=3, seed=5, guidance=5.0, guidance_mode="faithful")
    out = {}
    for key, options in (("default", {}), ("release", {"timestep_grid": "release"}),
                         ("modern", {"timestep_grid": "modern"})):
        backend = make_backend("kinema4d-tiny", checkpoint_dir=tiny_dir, variant="pm", **options)
        pipe = backend.load()
        seen: list[int] = []
        real = pipe.transformer.forward

        def spy(*args, _real=real, _seen=seen, **kwargs):
            _seen.append(int(kwargs.get("timestep", args[1] if len(args) > 1 else None)[0]))
            return _real(*args, **kwargs)

        pipe.transformer.forward = spy
        out[key] = (backend.generate(req), seen)
    torch.set_num_threads(before)
    return out


def test_tiny_model_release_and_modern_grids_differ_and_release_is_deterministic(tiny_runs):
    (default, seen_d), (release, seen_r), (modern, seen_m) = (tiny_runs[k] for k in ("default", "release", "modern"))
    assert seen_d == seen_r == [999, 856, 599]                           # one batched faithful pass per step
    assert seen_m == [999, 857, 600]
    assert default.metadata["timestep_grid"] == "release" and modern.metadata["timestep_grid"] == "modern"
    assert default.metadata["schedule"]["timesteps"] == [999, 856, 599]
    assert modern.metadata["schedule"]["timesteps"] == [999, 857, 600]
    assert default.metadata["schedule"]["sigmas"][-1] == 0.0 and len(default.metadata["schedule"]["sigmas"]) == 4
    json.dumps(default.metadata)                                           # the record is JSON-ready
    # same seed, same grid: identical; other grid: a different rollout
    assert np.array_equal(default.pointmap_normalized, release.pointmap_normalized)
    assert np.array_equal(default.rgb, release.rgb)
    diff = np.abs(default.pointmap_normalized - modern.pointmap_normalized).max()
    assert diff > 1e-3, diff


def test_tiny_model_index_has_no_nulls_and_every_listed_folder_loads(tiny_dir):
    base = tiny_dir / "base"
    index = json.loads((base / "model_index.json").read_text())
    components = {k: v for k, v in index.items() if not k.startswith("_")}
    assert {"text_encoder", "tokenizer", "transformer", "vae", "scheduler", "image_encoder",
            "image_processor"} <= set(components)
    for name, entry in components.items():
        assert isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, str) and x for x in entry), name
        library, cls_name = entry
        cls = getattr(importlib.import_module(library), cls_name)
        assert (base / name).is_dir(), name
        loaded = cls.from_pretrained(str(base / name))
        assert loaded is not None
    from transformers import T5TokenizerFast, UMT5EncoderModel

    tok = T5TokenizerFast.from_pretrained(str(base / "tokenizer"))
    ids = tok(["the robot arm"], return_tensors="pt")
    assert ids.input_ids[0, -1].item() == tok.eos_token_id and tok.unk_token_id not in ids.input_ids[0].tolist()
    enc = UMT5EncoderModel.from_pretrained(str(base / "text_encoder"))
    with torch.no_grad():
        states = enc(**ids).last_hidden_state
    from kinema4d_core.model.config import TINY_TRANSFORMER

    assert states.shape[-1] == TINY_TRANSFORMER["text_dim"]          # fits the transformer's text projection
    # and diffusers' own loader takes the whole folder as the pipeline it names
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(base))
    assert type(pipe).__name__ == index["_class_name"]
    assert type(pipe.text_encoder).__name__ == "UMT5EncoderModel" and pipe.tokenizer is not None
