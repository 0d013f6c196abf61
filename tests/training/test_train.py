"""Training on the tiny preset (CPU): loss goes down, resume is exact, LoRA targets and trainable
sets are right, and export -> the real checkpoint loader -> service.simulate_episode round-trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kinema4d_core.model.checkpoint import ADDED_FILE, LORA_FILE, LORA_TARGETS, added_weight_names, load_transformer
from kinema4d_core.training.cache import CachedDataset
from kinema4d_core.training.trainer import collate, flow_matching_loss, train

from .conftest import tiny_config


def fixed_loss(model, shards, names_out, seed=123, repeats=6) -> float:
    """Flow-matching loss on the training samples with fixed noise and timesteps (no randomness left)."""
    ds = CachedDataset(shards, exclude=names_out)
    batch = collate([ds[i] for i in range(len(ds))])
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return float(np.mean([flow_matching_loss(model, batch, g, 3.0, torch.device("cpu")).item()
                              for _ in range(repeats)]))


def shards_of(cfg):
    return sorted(cfg.data.cache_dir.glob("shard_*.safetensors"))


def simulate_with(backend):
    """One episode through the one service path, with a synthetic robot condition of the model size."""
    from kinema4d_core.service import EpisodeRequest, simulate_episode
    from tests.model.model_helpers import synthetic_condition

    cond = synthetic_condition()
    frame = np.full((cond.mask.shape[1], cond.mask.shape[2], 3), 100, np.uint8)
    return simulate_episode(EpisodeRequest(first_frame=frame, condition=cond, steps=2, guidance_mode="single"),
                            backend)


@pytest.mark.slow   # ~20 s on 2 cores (30 steps, the first test to fill the shared latent cache)
def test_scratch_overfits_exports_and_simulates(tmp_path, tiny_preset, robo4d_root, shared_cache):
    from kinema4d_core.backends import TinyBackend
    from kinema4d_core.training.model_setup import build_model

    cfg = tiny_config(tmp_path, tiny_preset, robo4d_root, shared_cache, "train.steps=30", "optim.lr=3e-3",
                      "train.validate_every=30", "train.checkpoint_every=10", "optim.ema_decay=0.5")
    before_model = build_model(cfg).transformer                     # the same seeded start as the run
    result = train(cfg, log=lambda s: None)
    assert result.step == 30 and sorted(result.losses) == list(range(1, 31))
    val_name = "robo4d_synthetic_2"
    before = fixed_loss(before_model, shards_of(cfg), [val_name])
    export = cfg.export_dir
    info = json.loads((export / "training_info.json").read_text())
    assert info["step"] == 30 and info["mode"] == "scratch" and info["ema"] is True
    # the export is the released layout (+ base/ in scratch mode) and loads through the strict loader
    ckpt = export / "kinema4d_ckpt"
    assert {p.name for p in ckpt.iterdir()} == {LORA_FILE, ADDED_FILE, "kinema4d_config.json"}
    trained = load_transformer(export / "base", export, dtype=torch.float32).train(False)
    after = fixed_loss(trained, shards_of(cfg), [val_name])
    assert after < 0.8 * before, (before, after)
    # checkpoints (kept: 2 newest), TensorBoard events, a validation video
    steps = sorted(p.name for p in (cfg.train.output_dir / "checkpoints").iterdir())
    assert steps == ["step_0000020", "step_0000030"]
    assert list((cfg.train.output_dir / "logs").glob("events.out.tfevents.*"))
    assert [p.name for p in result.validation_videos] == [f"step_0000030_{val_name}.mp4"]
    assert result.validation_videos[0].stat().st_size > 0
    # the exported folder is a kinema4d-tiny checkpoint folder: simulate through the service
    rollout = simulate_with(TinyBackend(checkpoint_dir=export))
    assert rollout.rgb.shape == (49, 48, 96, 3) and rollout.metadata["backend"] == "kinema4d-tiny"
    assert "trained by `kinema4d train`" in rollout.metadata["weights"]   # not labelled random
    # ... and a kinema4d-mini folder: that backend samples single-pass whatever is asked, and says so
    from kinema4d_core.backends import MiniBackend
    from kinema4d_core.service import EpisodeRequest, simulate_episode
    from tests.model.model_helpers import synthetic_condition

    cond = synthetic_condition()
    frame = np.full((cond.mask.shape[1], cond.mask.shape[2], 3), 100, np.uint8)
    mini = simulate_episode(EpisodeRequest(first_frame=frame, condition=cond, steps=2, guidance_mode="faithful"),
                            MiniBackend(checkpoint_dir=export))
    meta = mini.metadata
    assert meta["backend"] == "kinema4d-mini" and meta["guidance_mode"] == "single" and "guidance_note" in meta
    assert "trained only on the kinema4d sim world" in meta["scope"]
    same = simulate_episode(EpisodeRequest(first_frame=frame, condition=cond, steps=2, guidance_mode="single"),
                            MiniBackend(checkpoint_dir=export))
    assert np.array_equal(same.rgb, mini.rgb) and "guidance_note" not in same.metadata


def test_the_mini_backend_without_a_model_names_the_fix(tmp_path):
    from kinema4d_core.errors import CheckpointError
    from kinema4d_core.registry import make_backend

    with pytest.raises(CheckpointError, match="train_mini.sh"):
        make_backend("kinema4d-mini", checkpoint_dir=tmp_path)


def test_resume_continues_exactly(tmp_path, tiny_preset, robo4d_root, shared_cache):
    full_cfg = tiny_config(tmp_path / "a", tiny_preset, robo4d_root, shared_cache, "train.steps=4")
    full = train(full_cfg, log=lambda s: None)
    cfg = tiny_config(tmp_path / "b", tiny_preset, robo4d_root, shared_cache, "train.steps=4")
    first = train(cfg, log=lambda s: None, stop_after=2)
    assert first.step == 2 and first.export_dir is None
    with pytest.raises(Exception, match="--resume"):
        train(cfg, log=lambda s: None)                                # would overwrite: refused
    second = train(cfg, resume=True, log=lambda s: None)
    assert second.resumed_from == 2 and second.step == 4 and sorted(second.losses) == [3, 4]
    for step in (1, 2):
        assert first.losses[step] == full.losses[step]
    for step in (3, 4):
        assert second.losses[step] == full.losses[step]
    # a checkpoint of another trainable set (here: scratch) is refused on --resume, naming the fix
    other = tiny_config(tmp_path / "b", tiny_preset, robo4d_root, shared_cache, "train.steps=6", mode="finetune")
    with pytest.raises(Exception, match="another set of trainable parameters"):
        train(other, resume=True, log=lambda s: None)
    a = load_file(str(full_cfg.export_dir / "kinema4d_ckpt" / ADDED_FILE))
    b = load_file(str(cfg.export_dir / "kinema4d_ckpt" / ADDED_FILE))
    assert all(torch.equal(a[k], b[k]) for k in a)
    a = load_file(str(full_cfg.export_dir / "base" / "transformer" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(cfg.export_dir / "base" / "transformer" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_finetune_lora_targets_trainable_set_and_round_trip(tmp_path, tiny_preset, robo4d_root, shared_cache):
    from kinema4d_core.backends import Kinema4DBackend
    from kinema4d_core.training.model_setup import build_model, lora_target_names

    cfg = tiny_config(tmp_path, tiny_preset, robo4d_root, shared_cache, "train.steps=3", mode="finetune")
    bundle = build_model(cfg)
    model = bundle.transformer
    n_blocks = len(model.blocks)
    expected = sorted(f"blocks.{i}.{a}.{t}" for i in range(n_blocks) for a in ("attn1", "attn2") for t in LORA_TARGETS)
    assert lora_target_names(model) == expected                       # exactly to_q/to_k/to_v/to_out.0
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {n for n in trainable if ".lora_" in n}
    assert trainable - lora == added_weight_names(model)              # + robot layers and domain embeddings
    assert {"learnable_domain_embeddings", "arm_domain_emb"} <= trainable
    assert len(lora) == 2 * len(expected)
    assert all(p.shape[0] == 4 for n, p in model.named_parameters() if ".lora_A." in n)   # rank from config
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.endswith("base_layer.weight"))

    result = train(cfg, log=lambda s: None)
    assert result.step == 3
    # the peft model as trained vs the export fused by the real loader: same function
    trained = build_model(cfg).transformer
    state = load_file(str(cfg.train.output_dir / "checkpoints" / "step_0000003" / "model.safetensors"))
    trained.load_state_dict(state)
    loaded = load_transformer(tiny_preset / "base", cfg.export_dir, dtype=torch.float32)
    lora_file = load_file(str(cfg.export_dir / "kinema4d_ckpt" / LORA_FILE))
    assert all(k.startswith("transformer.blocks.") for k in lora_file)
    from tests.model.model_helpers import inputs

    x = inputs("rgb-pm")
    with torch.no_grad():
        want = trained.eval()(**x, return_dict=False)[0]
        got = loaded(**x, return_dict=False)[0]
    assert torch.allclose(want, got, atol=1e-5), (want - got).abs().max()
    # unchanged through the backend the CLI, node and evaluation use
    backend = Kinema4DBackend(tiny_preset / "base", cfg.export_dir, device="cpu", dtype="fp32")
    rollout = simulate_with(backend)
    assert rollout.rgb.shape == (49, 48, 96, 3) and np.isfinite(rollout.pointmap_normalized).all()


def test_finetune_from_a_released_layout_checkpoint(tmp_path, tiny_preset, robo4d_root, shared_cache):
    """model.checkpoint: its added weights are loaded and its LoRA becomes the trainable adapter (at 0.5)."""
    from kinema4d_core.training.export import lora_state_for_export
    from kinema4d_core.training.model_setup import build_model

    cfg = tiny_config(tmp_path, tiny_preset, robo4d_root, shared_cache, f"model.checkpoint={tiny_preset}",
                      mode="finetune")
    bundle = build_model(cfg)
    model = bundle.transformer
    assert bundle.lora_rank == 4 and bundle.lora_alpha == 2.0                 # rank from the file, scale 0.5
    added = load_file(str(tiny_preset / "kinema4d_ckpt" / ADDED_FILE))
    params = dict(model.named_parameters())
    assert all(torch.equal(params[k], v) for k, v in added.items())
    lora = load_file(str(tiny_preset / "kinema4d_ckpt" / LORA_FILE))
    exported = lora_state_for_export(model.state_dict(), bundle.lora_rank, bundle.lora_alpha)
    assert set(exported) == set(lora) and all(torch.equal(exported[k], lora[k]) for k in lora)   # exports as loaded
    assert all(p.requires_grad for n, p in params.items() if ".lora_" in n)
