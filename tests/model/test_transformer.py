"""Kinema4D transformer on the tiny preset: shapes, context split, shared RoPE, injection, config I/O."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.transformers.transformer_wan import WanAttnProcessor

from kinema4d_core.model.config import TINY_ARM
from kinema4d_core.model.transformer import Kinema4DTransformer3DModel

from .model_helpers import F_LAT, H_LAT, W_HALF, inputs, tiny_model

@pytest.mark.parametrize("variant,n_tokens", [("rgb-pm", 13 * 2 * 4 * 2), ("pm", 13 * 2 * 4)])
def test_forward_shapes_and_token_count(variant, n_tokens):
    model = tiny_model(variant)
    x = inputs(variant, batch=2)
    with torch.no_grad():
        out = model(**x).sample
        tokens = model.robot_tokens(x["robot_latents"], x["robot_mask"])
    assert out.shape == (2, 16, F_LAT, H_LAT, 2 * W_HALF)
    assert torch.isfinite(out).all()
    assert tokens.shape == (2, n_tokens, model.config.num_attention_heads * model.config.attention_head_dim)
    assert model.num_robot_tokens() == n_tokens == TINY_ARM.robot_tokens(variant)


def test_cross_attention_splits_image_and_robot_tokens_not_at_512():
    model = tiny_model("rgb-pm")
    attn = model.blocks[0].attn2
    g = torch.Generator().manual_seed(3)
    n_img, n_robot, dim = TINY_ARM.image_context_length, 208, 24
    hidden = torch.randn(1, 30, dim, generator=g)
    context = torch.randn(1, n_img + n_robot, dim, generator=g)
    with torch.no_grad():
        ours = attn(hidden, context)

        # Direct computation: robot tokens through to_k/to_v/norm_k, image tokens through add_k/add_v.
        def heads(t):
            return t.unflatten(2, (attn.heads, -1)).transpose(1, 2)

        q = heads(attn.norm_q(attn.to_q(hidden)))
        img, rob = context[:, :n_img], context[:, n_img:]
        o_rob = F.scaled_dot_product_attention(q, heads(attn.norm_k(attn.to_k(rob))), heads(attn.to_v(rob)))
        o_img = F.scaled_dot_product_attention(q, heads(attn.norm_added_k(attn.add_k_proj(img))),
                                               heads(attn.add_v_proj(img)))
        direct = attn.to_out[0]((o_rob + o_img).transpose(1, 2).flatten(2))
        attn.set_processor(WanAttnProcessor())      # stock: image = all but the last 512 tokens
        stock = attn(hidden, context)
    torch.testing.assert_close(ours, direct, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(stock, direct, atol=1e-3)


def test_shared_rope_gives_rgb_and_xyz_twins_the_same_rotation():
    model = tiny_model("rgb-pm")
    x = inputs("rgb-pm")["hidden_states"]
    cos, sin = model.shared_rotary_emb(x)
    f, h, w = F_LAT, H_LAT // 2, 2 * W_HALF // 2      # token grid after the (1, 2, 2) patch
    cos = cos.reshape(f, h, w, -1)
    sin = sin.reshape(f, h, w, -1)
    torch.testing.assert_close(cos[:, :, : w // 2], cos[:, :, w // 2:], rtol=0, atol=0)
    torch.testing.assert_close(sin[:, :, : w // 2], sin[:, :, w // 2:], rtol=0, atol=0)
    assert not torch.equal(cos[:, :, 0], cos[:, :, 1])            # neighbouring columns do differ
    assert not torch.equal(cos[:, :, w // 2 - 1], cos[:, :, w // 2])  # left edge of XYZ != right edge of RGB


def test_rgb_pm_injection_leaves_latent_frame_0_alone():
    model = tiny_model("rgb-pm")
    x = inputs("rgb-pm")
    base = model.inject_robot_condition(x["hidden_states"], x["robot_latents"], x["robot_mask"])
    lat, msk = x["robot_latents"].clone(), x["robot_mask"].clone()
    lat[:, :, 0] += 5.0
    msk[:, :, 0] = 1.0 - msk[:, :, 0]
    moved = model.inject_robot_condition(x["hidden_states"], lat, msk)
    assert torch.equal(moved, base)                       # frame-0 robot condition is never injected
    torch.testing.assert_close(base[:, :, 0], x["hidden_states"][:, :, 0], rtol=0, atol=0)
    assert torch.equal(base[:, 16:20, 1:], x["robot_mask"][:, :, 1:])
    assert not torch.equal(base[:, 20:, 1:], x["hidden_states"][:, 20:, 1:])
    torch.testing.assert_close(base[:, :16], x["hidden_states"][:, :16], rtol=0, atol=0)   # noisy latent untouched


def test_pm_injection_covers_all_frames_of_the_xyz_half_only():
    model = tiny_model("pm")
    x = inputs("pm")
    base = model.inject_robot_condition(x["hidden_states"], x["robot_latents"], x["robot_mask"])
    lat = x["robot_latents"].clone()
    lat[:, :, 0] += 5.0
    moved = model.inject_robot_condition(x["hidden_states"], lat, x["robot_mask"])
    assert not torch.equal(moved[:, 20:, 0, :, W_HALF:], base[:, 20:, 0, :, W_HALF:])   # frame 0 XYZ changes
    torch.testing.assert_close(base[..., :W_HALF], x["hidden_states"][..., :W_HALF], rtol=0, atol=0)  # RGB half
    assert torch.equal(base[:, 16:20, :, :, W_HALF:], x["robot_mask"])


def test_injection_does_not_modify_its_input_and_scale_2_equals_injecting_twice():
    model = tiny_model("rgb-pm")
    x = inputs("rgb-pm")
    original = x["hidden_states"].clone()
    once = model.inject_robot_condition(x["hidden_states"], x["robot_latents"], x["robot_mask"])
    assert torch.equal(x["hidden_states"], original)      # unlike the released in-place add
    twice = model.inject_robot_condition(once, x["robot_latents"], x["robot_mask"])
    scale2 = model.inject_robot_condition(x["hidden_states"], x["robot_latents"], x["robot_mask"], 2.0)
    torch.testing.assert_close(scale2, twice, rtol=1e-6, atol=1e-6)


def test_save_pretrained_from_pretrained_round_trip(tmp_path):
    model = tiny_model("pm", seed=5)
    model.save_pretrained(tmp_path / "t")
    loaded = Kinema4DTransformer3DModel.from_pretrained(tmp_path / "t").eval()
    assert loaded.config.robot_condition == "pm"
    assert tuple(loaded.config.arm_grid) == TINY_ARM.arm_grid
    assert loaded.config.image_context_length == TINY_ARM.image_context_length
    assert loaded.arm_domain_emb is None
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    x = inputs("pm")
    with torch.no_grad():   # same weights; SDPA kernels may differ in the last float bit between instances
        torch.testing.assert_close(loaded(**x).sample, model(**x).sample, rtol=1e-5, atol=1e-5)
