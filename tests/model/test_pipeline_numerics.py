"""Pipeline numerics against the reference, with a transparent stub VAE (so every tensor can be checked).

First-frame condition and its mask (1 on RGB, 0.5 on XYZ of latent frame 0), robot-latent layout per
variant ([RGB | pm-normalized XYZ] for rgb-pm, XYZ only for pm), the decode path (XYZ half
denormalized, [-1, 1] -> [0, 1]), the CLIP embedding (penultimate hidden state of the RGB first frame
only), dtype handling, loader placement, and that text encoder / tokenizer are never read.
"""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kinema4d_core.backends import make_backend, robot_pointmap01
from kinema4d_core.conditioning import latent_mask, uniform_pointmap_image
from kinema4d_core.model.checkpoint import load_components, load_transformer, move_buffers
from kinema4d_core.model.config import POINTMAP_LATENT_SCALE, POINTMAP_LATENT_SHIFT, TINY_ARM
from kinema4d_core.model.pipeline import Kinema4DPipeline

from .model_helpers import inputs, tiny_model

MEAN = torch.tensor([0.1 * c for c in range(16)]).view(1, 16, 1, 1, 1)
STD = torch.tensor([1.0 + 0.05 * c for c in range(16)]).view(1, 16, 1, 1, 1)


def stub_latent(video: torch.Tensor) -> torch.Tensor:
    """What StubVAE.encode returns: frames 0, 4, 8, ..., 8x8 mean pool, channel c = colour (c % 3) + c."""
    z = F.avg_pool3d(video[:, :, ::4].float(), (1, 8, 8))
    return torch.cat([z[:, [c % 3]] + c for c in range(16)], dim=1)


class StubVAE(torch.nn.Module):
    dtype = torch.float32
    device = torch.device("cpu")

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(z_dim=16, latents_mean=MEAN.flatten().tolist(), latents_std=STD.flatten().tolist())
        self.encoded: list[torch.Tensor] = []
        self.decoded: torch.Tensor | None = None

    def encode(self, video):
        self.encoded.append(video.clone())
        z = stub_latent(video)
        return SimpleNamespace(latent_dist=SimpleNamespace(mode=lambda: z))

    def decode(self, z, return_dict=False):
        self.decoded = z.clone()
        t = 1 + 4 * (z.shape[2] - 1)
        return (torch.linspace(-1, 1, 3).view(1, 3, 1, 1, 1).expand(1, 3, t, 8 * z.shape[3], 8 * z.shape[4]),)


@pytest.fixture(scope="module")
def tiny_components(tiny_dir):
    return load_components(tiny_dir / "base", tiny_dir, variant="rgb-pm", dtype=torch.float32)


def stub_pipe(components, variant: str) -> Kinema4DPipeline:
    return Kinema4DPipeline(transformer=tiny_model(variant), vae=StubVAE(), scheduler=components.scheduler,
                            image_encoder=components.image_encoder, image_processor=components.image_processor)


def normalized(video: torch.Tensor) -> torch.Tensor:
    return (stub_latent(video) - MEAN) / STD


def test_first_frame_condition_and_mask(tiny_components, first_frame):
    pipe = stub_pipe(tiny_components, "rgb-pm")
    cond = pipe.prepare_condition(first_frame, 49)
    h, w = TINY_ARM.height // 8, TINY_ARM.width // 8
    assert cond.shape == (1, 20, 13, h, 2 * w)
    mask = cond[:, :4]
    assert torch.all(mask[:, :, 0, :, :w] == 1.0)             # RGB half of latent frame 0
    assert torch.all(mask[:, :, 0, :, w:] == 0.5)             # XYZ half of latent frame 0
    assert torch.all(mask[:, :, 1:] == 0.0)
    (video,) = pipe.vae.encoded
    assert video.shape == (1, 3, 49, TINY_ARM.height, 2 * TINY_ARM.width)
    rgb = torch.from_numpy(first_frame).float().permute(2, 0, 1) / 255 * 2 - 1
    uniform = torch.from_numpy(uniform_pointmap_image(TINY_ARM.height, TINY_ARM.width)).permute(2, 0, 1)
    torch.testing.assert_close(video[0, :, 0], torch.cat([rgb, uniform], dim=-1))   # [RGB | uniform] along width
    assert torch.all(video[:, :, 1:] == 0)                                            # then 48 zero frames
    torch.testing.assert_close(cond[:, 4:], normalized(video))   # VAE mode, latents_mean/std, no pm scaling


@pytest.mark.parametrize("variant", ["rgb-pm", "pm"])
def test_robot_latent_layout_and_pointmap_normalization(tiny_components, condition, variant):
    pipe = stub_pipe(tiny_components, variant)
    pm01 = robot_pointmap01(condition)
    latents, mask = pipe.prepare_robot(pm01, condition.mask, condition.rgb)
    w = TINY_ARM.width // 8
    pm_video = torch.from_numpy(pm01).permute(3, 0, 1, 2)[None] * 2 - 1
    pm_lat = (normalized(pm_video) - POINTMAP_LATENT_SHIFT) / POINTMAP_LATENT_SCALE          # (z + 0.17) / 1.36
    lat_mask = torch.from_numpy(latent_mask(condition.mask))[None, None].repeat(1, 4, 1, 1, 1)
    if variant == "pm":
        assert latents.shape == (1, 16, 13, TINY_ARM.height // 8, w)
        torch.testing.assert_close(latents, pm_lat)
        assert torch.equal(mask, lat_mask)
        assert len(pipe.vae.encoded) == 1                   # the robot RGB video is never encoded
    else:
        rgb_video = torch.from_numpy(condition.rgb.astype(np.float32) / 255).permute(3, 0, 1, 2)[None] * 2 - 1
        assert latents.shape == (1, 16, 13, TINY_ARM.height // 8, 2 * w)
        torch.testing.assert_close(latents[..., :w], normalized(rgb_video))   # left: robot RGB, VAE-normalized only
        torch.testing.assert_close(latents[..., w:], pm_lat)                  # right: robot pointmap, + pm scaling
        assert torch.equal(mask, torch.cat([lat_mask, lat_mask], dim=-1))     # tiled over both halves


def test_decode_undoes_the_pointmap_scaling_on_the_xyz_half_only(tiny_components):
    pipe = stub_pipe(tiny_components, "rgb-pm")
    lat = torch.randn(1, 16, 13, 6, 24, generator=torch.Generator().manual_seed(0))
    rgb, pm01 = pipe.decode(lat)
    z = pipe.vae.decoded
    torch.testing.assert_close(z[..., :12], lat[..., :12] * STD + MEAN)
    torch.testing.assert_close(z[..., 12:], (lat[..., 12:] * 1.36 - 0.17) * STD + MEAN)
    assert rgb.shape == pm01.shape == (49, 48, 96, 3)
    np.testing.assert_allclose(rgb[0, 0, 0], [0.0, 0.5, 1.0])      # decoder output [-1, 1] -> x / 2 + 0.5
    np.testing.assert_allclose(pm01[0, 0, 0], [0.0, 0.5, 1.0])


def test_clip_embedding_is_the_penultimate_state_of_the_rgb_first_frame(tiny_components, first_frame, condition,
                                                                      monkeypatch):
    pipe = stub_pipe(tiny_components, "pm")
    emb = pipe.encode_image(first_frame)
    pixels = tiny_components.image_processor(images=first_frame, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        states = tiny_components.image_encoder(pixel_values=pixels, output_hidden_states=True).hidden_states
    assert emb.shape == (1, TINY_ARM.image_context_length, 8) and emb.dtype == torch.float32
    torch.testing.assert_close(emb, states[-2])
    assert not torch.allclose(emb, states[-1])
    seen = []
    real = pipe.encode_image
    monkeypatch.setattr(pipe, "encode_image", lambda image: seen.append(image.copy()) or real(image))
    pipe(first_frame, robot_pointmap01(condition), condition.mask, num_inference_steps=1, guidance_mode="single")
    assert len(seen) == 1 and np.array_equal(seen[0], first_frame)     # the RGB frame only, not [RGB | XYZ]


def test_text_encoder_and_tokenizer_are_never_read_and_scheduler_comes_from_base(tiny_dir, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_dir / "base", base)
    for folder in ("text_encoder", "tokenizer"):           # present but unreadable: loading must not touch them
        shutil.rmtree(base / folder)                       # the tiny base writes loadable ones; replace them
        (base / folder).mkdir()
        (base / folder / "config.json").write_text("{ not json")
    sched = json.loads((base / "scheduler" / "scheduler_config.json").read_text())
    sched["flow_shift"] = 5.0
    (base / "scheduler" / "scheduler_config.json").write_text(json.dumps(sched))
    comps = load_components(base, tiny_dir, variant="pm", dtype=torch.float32)
    pipe = Kinema4DPipeline.from_components(comps)
    assert type(pipe.scheduler).__name__ == sched["_class_name"] == "UniPCMultistepScheduler"
    assert pipe.scheduler.config.flow_shift == 5.0
    assert pipe.scheduler.config.prediction_type == "flow_prediction"
    assert not hasattr(pipe, "text_encoder") and not hasattr(pipe, "tokenizer")
    assert comps.vae.dtype == torch.float32 and comps.image_encoder.dtype == torch.float32


def test_bf16_load_keeps_fp32_islands_and_runs(tiny_dir):
    model = load_transformer(tiny_dir / "base", tiny_dir, variant="rgb-pm", dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and model.patch_embedding.weight.dtype == torch.bfloat16
    assert model.arm_ln.weight.dtype == torch.float32
    assert model.condition_embedder.time_embedder.linear_1.weight.dtype == torch.float32
    x = {k: v.to(torch.bfloat16) if k != "timestep" else v for k, v in inputs("rgb-pm").items()}
    with torch.no_grad():
        out = model(**x).sample
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_plain_bf16_cast_of_the_whole_model_still_runs():
    """``model.to(torch.bfloat16)`` (as bench/model_step.py does) puts arm_ln in bf16 as well; the robot
    tokens used to feed it an fp32 input: 'mixed dtype (CPU): expect parameter to have scalar type of Float'."""
    model = tiny_model("rgb-pm").to(torch.bfloat16)
    x = {k: v.to(torch.bfloat16) if k != "timestep" else v for k, v in inputs("rgb-pm").items()}
    with torch.no_grad():
        out = model(**x).sample
    assert torch.isfinite(out.float()).all()


def test_move_buffers_places_the_rope_tables_with_the_weights():
    """Loading assigns weights on the target device; the non-persistent RoPE tables are in no
    checkpoint and used to stay on the CPU (a device mismatch in attn1 on CUDA)."""
    model = tiny_model("pm")
    assert model.rope.freqs_cos.device.type == "cpu"
    move_buffers(model, "meta")
    assert all(b.is_meta for b in model.buffers())
    assert not any(p.is_meta for p in model.parameters())    # parameters are the loader's business


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_loaded_transformer_runs_on_cuda(tiny_dir):
    model = load_transformer(tiny_dir / "base", tiny_dir, variant="rgb-pm", dtype=torch.bfloat16, device="cuda")
    assert {t.device.type for t in list(model.parameters()) + list(model.buffers())} == {"cuda"}
    x = {k: (v.to(torch.bfloat16) if k != "timestep" else v).cuda() for k, v in inputs("rgb-pm").items()}
    with torch.no_grad():
        assert torch.isfinite(model(**x).sample.float()).all()


def test_sharded_base_loads_like_a_single_file(tiny_dir, tmp_path):
    from diffusers import WanTransformer3DModel

    base = tmp_path / "base"
    shutil.copytree(tiny_dir / "base", base)
    shutil.rmtree(base / "transformer")
    WanTransformer3DModel.from_pretrained(tiny_dir / "base" / "transformer").save_pretrained(
        base / "transformer", max_shard_size="20KB")
    assert len(list((base / "transformer").glob("*.safetensors"))) > 1
    single = load_transformer(tiny_dir / "base", tiny_dir, variant="pm", dtype=torch.float32)
    sharded = load_transformer(base, tiny_dir, variant="pm", dtype=torch.float32)
    a, b = single.state_dict(), sharded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_backend_reuse_gives_identical_rollouts(tiny_dir, condition, first_frame):
    """The scheduler is stateful (UniPC history); set_timesteps must reset it between generations."""
    from kinema4d_core.backends import GenerationRequest

    backend = make_backend("kinema4d-tiny", checkpoint_dir=tiny_dir, variant="pm")
    req = GenerationRequest(first_frame, condition, steps=3, seed=5, guidance_mode="single")
    a, b = backend.generate(req), backend.generate(req)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.pointmap_normalized, b.pointmap_normalized)
