"""The VAE stage: an AutoencoderKLWan trained on the training set's own frames, written as a base
folder every loader reads unchanged, with measured latent statistics, reused when nothing changed."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from kinema4d_core.training.config import config_from_dict
from tests.training.conftest import synthetic_episode


def _samples(n: int = 2):
    out = []
    for i in range(n):
        rgb, pm, rrgb, rpm = synthetic_episode(i, n=9, h=16, w=32)
        out.append(SimpleNamespace(name=f"s{i}", rgb=rgb, pointmap01=pm, robot_rgb=rrgb, robot_pointmap01=rpm))
    return out


def _cfg(tmp_path, **vae):
    settings = dict(steps=3, base_dim=4, dim_mult=[1, 1, 2, 2], clip_frames=5, batch_size=1, stats_clips=2,
                    log_every=1)
    settings.update(vae)
    return config_from_dict({"data": {"sim": {"episodes_per_task": 1}}, "vae": settings,
                             "train": {"output_dir": str(tmp_path / "run")}})


def test_trained_vae_is_a_base_folder_the_loaders_read(tiny_preset, tmp_path):
    from diffusers import AutoencoderKLWan

    from kinema4d_core.model.checkpoint import check_base_folder
    from kinema4d_core.training.vae import VAE_INFO, train_vae

    out = train_vae(_cfg(tmp_path), tiny_preset / "base", _samples(), tmp_path / "base", log=lambda _: None)
    check_base_folder(out)
    vae = AutoencoderKLWan.from_pretrained(str(out / "vae"))
    assert vae.config.base_dim == 4 and vae.config.z_dim == 16
    assert len(vae.config.latents_mean) == 16 and all(s > 0 for s in vae.config.latents_std)
    assert not np.allclose(vae.config.latents_mean, 0.0)          # measured, not the constructor's zeros
    # everything but the VAE is the source base's, byte for byte
    for sub in ("image_encoder", "scheduler", "transformer"):
        for f in (tiny_preset / "base" / sub).iterdir():
            assert (out / sub / f.name).read_bytes() == f.read_bytes()
    info = json.loads((out / VAE_INFO).read_text())
    assert info["steps"] == 3 and info["fingerprint"]["samples"] == ["s0", "s1"]


def test_rerun_reuses_and_a_changed_config_retrains(tiny_preset, tmp_path):
    from kinema4d_core.training.vae import train_vae

    logs: list[str] = []
    train_vae(_cfg(tmp_path), tiny_preset / "base", _samples(), tmp_path / "base", log=logs.append)
    weights = (tmp_path / "base" / "vae" / "diffusion_pytorch_model.safetensors").read_bytes()
    logs.clear()
    train_vae(_cfg(tmp_path), tiny_preset / "base", _samples(), tmp_path / "base", log=logs.append)
    assert any("reusing" in line for line in logs)
    logs.clear()
    train_vae(_cfg(tmp_path, lr=3e-3), tiny_preset / "base", _samples(), tmp_path / "base", log=logs.append)
    assert any("training anew" in line for line in logs)
    assert (tmp_path / "base" / "vae" / "diffusion_pytorch_model.safetensors").read_bytes() != weights


def test_training_lowers_the_reconstruction_error(tiny_preset, tmp_path):
    """Reconstruction L1 of every clip of the data, before (the seeded fresh VAE) and after training."""
    import torch
    from diffusers import AutoencoderKLWan

    from kinema4d_core.training.vae import clip_videos, make_vae, train_vae

    cfg = _cfg(tmp_path, steps=60, lr=2e-3, log_every=0)
    samples = _samples(1)
    out = train_vae(cfg, tiny_preset / "base", samples, tmp_path / "b", log=lambda _: None)
    videos, _ = clip_videos(samples)
    clips = torch.stack([torch.from_numpy(v[t:t + 5].astype(np.float32)).permute(3, 0, 1, 2)
                         for v in videos for t in range(0, 5)])

    def l1(vae) -> float:
        with torch.no_grad():
            return float((vae(clips).sample - clips).abs().mean())

    before = l1(make_vae(cfg, tiny_preset / "base").eval())
    after = l1(AutoencoderKLWan.from_pretrained(str(out / "vae")).eval())
    assert after < 0.8 * before, (before, after)


def test_crops_are_random_windows_of_the_clips():
    import torch

    from kinema4d_core.training.vae import clip_videos, draw_clips

    videos, _ = clip_videos(_samples(1))
    whole = draw_clips(videos, 3, 5, torch.Generator().manual_seed(0))
    crops = draw_clips(videos, 3, 5, torch.Generator().manual_seed(0), crop=(8, 16))
    assert whole.shape == (3, 3, 5, 16, 64) and crops.shape == (3, 3, 5, 8, 16)
    # every crop is a window of some clip of the data
    for c in crops:
        frames = c.permute(1, 2, 3, 0).numpy().astype(np.float16)
        assert any((v[t:t + 5, y:y + 8, x:x + 16] == frames).all() for v in videos for t in range(len(v) - 4)
                   for y in range(0, 9) for x in range(0, 49))


@pytest.mark.parametrize("key,value", [("clip_frames", 4), ("dim_mult", [1, 2, 2]), ("steps", -1),
                                       ("crop", [12, 16])])
def test_bad_vae_settings_name_the_key(tmp_path, key, value):
    from kinema4d_core.errors import ConfigError

    with pytest.raises(ConfigError, match=f"vae.{key}"):
        _cfg(tmp_path, **{key: value})


def test_the_loss_sees_the_decoder_output_before_the_clamp(tiny_preset, tmp_path):
    """A decoder that overshoots [-1, 1] still gets gradients (AutoencoderKLWan.decode clamps)."""
    import torch

    from kinema4d_core.training.vae import decode_unclamped, make_vae

    cfg = _cfg(tmp_path)
    vae = make_vae(cfg, tiny_preset / "base")
    z = torch.randn(1, 16, 2, 2, 4)
    with torch.no_grad():
        vae.decoder.conv_out.bias.fill_(5.0)          # every output far above 1
    out = decode_unclamped(vae, z)
    clamped = vae.decode(z).sample
    assert out.shape == clamped.shape and float(out.min()) > 1.0 and torch.all(clamped == 1.0)
    out.mean().backward()
    assert vae.decoder.conv_out.weight.grad is not None and float(vae.decoder.conv_out.weight.grad.abs().sum()) > 0


def test_detail_weights_favour_a_small_object_over_a_flat_background():
    import torch

    from kinema4d_core.training.vae import detail_weights

    x = torch.full((1, 3, 1, 32, 48), -0.2)
    x[..., 10:16, 20:26] = 0.8                     # a 6-pixel "cube" on a flat table
    w = detail_weights(x, 3.0)
    assert w.shape == (1, 1, 1, 32, 48)
    assert float(w[..., 0, 0]) == pytest.approx(1.0, abs=1e-4)              # flat table: the plain L1 weight
    assert float(w[..., 10, 20]) > 5.0                             # the cube's corner weighs several times more
    assert float(w.mean()) == pytest.approx(1.0 + 3.0, rel=1e-4)            # strength x relative difference, mean 1
    assert torch.equal(detail_weights(x, 0.0), torch.ones_like(w))


def test_mid_attention_off_makes_the_attention_an_identity_that_stays_off(tiny_preset, tmp_path):
    import torch
    from diffusers import AutoencoderKLWan

    from kinema4d_core.training.vae import train_vae

    out = train_vae(_cfg(tmp_path, mid_attention=False), tiny_preset / "base", _samples(), tmp_path / "base",
                    log=lambda _: None)
    vae = AutoencoderKLWan.from_pretrained(str(out / "vae"))         # a standard VAE folder
    x = torch.randn(1, vae.encoder.mid_block.attentions[0].proj.in_channels, 2, 4, 6)
    for part in (vae.encoder, vae.decoder):
        block = part.mid_block.attentions[0]
        assert torch.count_nonzero(block.proj.weight) == 0 and torch.count_nonzero(block.proj.bias) == 0
    block = vae.encoder.mid_block.attentions[0]
    assert torch.equal(block(x), x)                                   # trained 3 steps, still the identity


def test_single_frame_steps_come_first_then_clips(tiny_preset, tmp_path, monkeypatch):
    import kinema4d_core.training.vae as vae_mod

    drawn: list[int] = []
    real = vae_mod.draw_clips

    def recording(videos, batch, frames, generator, crop=None):
        drawn.append((batch, frames))
        return real(videos, batch, frames, generator, crop)

    monkeypatch.setattr(vae_mod, "draw_clips", recording)
    vae_mod.train_vae(_cfg(tmp_path, steps=4, single_frame_steps=2, batch_size=2, clip_batch_size=1),
                      tiny_preset / "base", _samples(), tmp_path / "base", log=lambda _: None)
    # single frames at batch_size, then clips at clip_batch_size (then statistics and PSNR clips)
    assert drawn[:4] == [(2, 1), (2, 1), (1, 5), (1, 5)]
    with pytest.raises(Exception, match="single_frame_steps"):
        _cfg(tmp_path, steps=4, single_frame_steps=5)
    with pytest.raises(Exception, match="clip_batch_size"):
        _cfg(tmp_path, steps=4, clip_batch_size=0)


def test_each_vae_phase_warms_up_and_decays_on_its_own():
    from kinema4d_core.training.vae import vae_lr_factor

    f = [vae_lr_factor(k, 1000, 600) for k in range(1000)]
    assert f[0] < 0.1 and f[50] > 0.95                              # single frames: warm-up, then full LR
    assert f[599] == pytest.approx(0.1, abs=0.01)                         # decayed by the end of the phase
    assert f[600] < 0.1 and f[640] > 0.95                           # the clip phase warms up anew
    assert f[999] == pytest.approx(0.1, abs=0.01)
    one = [vae_lr_factor(k, 100, 0) for k in range(100)]                  # no single-frame phase: one schedule
    assert one[0] <= 0.1 and one[10] > 0.95 and one[99] == pytest.approx(0.1, abs=0.01)
