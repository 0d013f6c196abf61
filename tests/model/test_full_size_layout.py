"""The FULL-size Kinema4D transformer (Wan2.1 I2V 14B 480P + robot branch) on the meta device.

Nothing is materialized: the model is built from the released base ``config.json`` through the
real loading path (``build_transformer``), and checked against the released checkpoint layout
written down independently here from /work/shared/docs/kinema4d-reference.md: added-weight keys and
shapes, LoRA target modules and rank-64 A/B shapes, robot-token counts for a 480 x 720 pair, and
the strict loader's key/shape validation (``check_weight_layout`` / ``split_lora_state``) on a
synthetic checkpoint spec of meta tensors.
"""

from __future__ import annotations

import json

import pytest
import torch
from accelerate import init_empty_weights

from kinema4d_core.errors import CheckpointError
from kinema4d_core.model.checkpoint import (LORA_PREFIX, added_weight_names, build_transformer, check_weight_layout,
                                            model_weight_shapes, split_lora_state)
from kinema4d_core.model.config import FULL_ARM

# transformer/config.json of Wan2.1-I2V-14B-480P-Diffusers (values from the reference).
WAN_I2V_14B_480P = {
    "_class_name": "WanTransformer3DModel", "_diffusers_version": "0.33.0.dev0",
    "patch_size": [1, 2, 2], "num_attention_heads": 40, "attention_head_dim": 128, "in_channels": 36,
    "out_channels": 16, "text_dim": 4096, "freq_dim": 256, "ffn_dim": 13824, "num_layers": 40,
    "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "image_dim": 1280,
    "added_kv_proj_dim": 5120, "rope_max_seq_len": 1024,
}
D = 5120
RANK = 64

# added_weights.safetensors of Minoday/Kinema4D, per variant (reference "Checkpoint key layout").
RELEASED_ADDED = {
    "learnable_domain_embeddings": (2, D),
    "patch_embedding_arm.weight": (128, 20, 1, 15, 15),
    "patch_embedding_arm.bias": (128,),
    "arm_ln.weight": (128,),
    "arm_ln.bias": (128,),
    "arm_pos_emb": (1, 128, 13, 4, 6),
    "arm_domain_emb": (2, 128),
    "arm_patch_proj.weight": (D, 128),
    "arm_patch_proj.bias": (D,),
    "arm_cond_proj.weight": (16, 16),
    "arm_cond_proj.bias": (16,),
}


def released_added(variant: str) -> dict[str, tuple[int, ...]]:
    return {k: v for k, v in RELEASED_ADDED.items() if variant == "rgb-pm" or k != "arm_domain_emb"}


def released_lora_keys() -> list[str]:
    return [f"{LORA_PREFIX}blocks.{i}.{attn}.{t}.lora_{p}.weight" for i in range(40) for attn in ("attn1", "attn2")
            for t in ("to_q", "to_k", "to_v", "to_out.0") for p in ("A", "B")]


def meta_lora_state() -> dict[str, torch.Tensor]:
    return {k: torch.empty((RANK, D) if ".lora_A." in k else (D, RANK), device="meta") for k in released_lora_keys()}


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("wan14b")
    (base / "transformer").mkdir()
    (base / "transformer" / "config.json").write_text(json.dumps(WAN_I2V_14B_480P))
    return base


@pytest.fixture(scope="module")
def wan_base_shapes():
    """Key -> shape of the plain Wan I2V 14B transformer (the base folder's safetensors layout)."""
    from diffusers import WanTransformer3DModel

    cfg = {k: v for k, v in WAN_I2V_14B_480P.items() if not k.startswith("_")}
    with init_empty_weights():
        wan = WanTransformer3DModel(**cfg)
    return model_weight_shapes(wan)


@pytest.fixture(scope="module")
def models(base_dir):
    return {v: build_transformer(base_dir, v, FULL_ARM) for v in ("rgb-pm", "pm")}


@pytest.mark.parametrize("variant", ["rgb-pm", "pm"])
def test_added_weights_have_the_released_names_and_shapes(models, variant):
    model = models[variant]
    assert all(p.is_meta for p in model.parameters())
    params = dict(model.named_parameters())
    assert added_weight_names(model) == set(released_added(variant))
    for name, shape in released_added(variant).items():
        assert tuple(params[name].shape) == shape, name
    if variant == "pm":
        assert model.arm_domain_emb is None and "arm_domain_emb" not in params
    assert model.config.in_channels == 36 and model.patch_embedding.in_channels == 36   # no extra input channels


@pytest.mark.parametrize("variant", ["rgb-pm", "pm"])
def test_lora_targets_are_5120_square_and_take_rank_64(models, variant):
    model = models[variant]
    modules = dict(model.named_modules())
    targets = [k[len(LORA_PREFIX):-len(".lora_A.weight")] for k in released_lora_keys() if ".lora_A." in k]
    assert len(targets) == 40 * 2 * 4 == 320
    for name in targets:
        linear = modules[name]
        assert isinstance(linear, torch.nn.Linear), name
        assert (linear.in_features, linear.out_features) == (D, D), name
    pairs = split_lora_state(meta_lora_state(), model)
    assert len(pairs) == 320
    a, b = pairs["blocks.39.attn2.to_out.0"]
    assert tuple(a.shape) == (RANK, D) and tuple(b.shape) == (D, RANK)


def test_lora_loader_rejects_a_misshaped_or_unprefixed_key(models):
    model = models["rgb-pm"]
    bad = meta_lora_state()
    bad["transformer.blocks.7.attn2.to_k.lora_A.weight"] = torch.empty(RANK, 4096, device="meta")
    with pytest.raises(CheckpointError, match=r"mis-shaped keys: transformer\.blocks\.7\.attn2\.to_k"):
        split_lora_state(bad, model)
    unprefixed = {k[len(LORA_PREFIX):]: v for k, v in meta_lora_state().items()}
    with pytest.raises(CheckpointError, match="keys must start with 'transformer.'"):
        split_lora_state(unprefixed, model)


@pytest.mark.parametrize("variant,n_tokens", [("rgb-pm", 624), ("pm", 312)])
def test_robot_token_count_for_a_480x720_pair(models, variant, n_tokens):
    """Through the model's own shape logic: robot latents of a 49 x 480 x 720 pair on meta tensors."""
    model = models[variant]
    assert (FULL_ARM.num_frames, FULL_ARM.height, FULL_ARM.width) == (49, 480, 720)
    f, h, w = 1 + (49 - 1) // 4, 480 // 8, 720 // 8                    # 13 x 60 x 90 per modality
    wc = 2 * w if variant == "rgb-pm" else w                            # rgb-pm: [RGB | XYZ] along width
    tokens = model.robot_tokens(torch.empty(1, 16, f, h, wc, device="meta"),
                                torch.empty(1, 4, f, h, wc, device="meta"))
    assert tuple(tokens.shape) == (1, n_tokens, D)
    assert model.num_robot_tokens() == FULL_ARM.robot_tokens(variant) == n_tokens


@pytest.mark.parametrize("variant", ["rgb-pm", "pm"])
def test_full_forward_shapes_on_meta(variant):
    """All 40 blocks on meta tensors: [257 image | N robot] context, (1, 16, 13, 60, 180) output."""
    from kinema4d_core.model.transformer import Kinema4DTransformer3DModel, kinema4d_config_from_wan

    cfg = kinema4d_config_from_wan(WAN_I2V_14B_480P, variant=variant, arm=FULL_ARM)
    with torch.device("meta"):
        model = Kinema4DTransformer3DModel(**cfg).eval()
        wc = 180 if variant == "rgb-pm" else 90
        with torch.no_grad():
            out = model(hidden_states=torch.empty(1, 36, 13, 60, 180), timestep=torch.empty(1),
                        encoder_hidden_states_image=torch.empty(1, 257, 1280),
                        robot_latents=torch.empty(1, 16, 13, 60, wc), robot_mask=torch.empty(1, 4, 13, 60, wc)).sample
    assert tuple(out.shape) == (1, 16, 13, 60, 180)


@pytest.mark.parametrize("variant", ["rgb-pm", "pm"])
def test_strict_loader_accepts_the_released_layout(models, wan_base_shapes, variant):
    model = models[variant]
    base = dict(wan_base_shapes)
    base["blocks.0.attn2.norm_added_q.weight"] = (D,)     # in _keys_to_ignore_on_load_unexpected, tolerated
    keep = check_weight_layout(model, base, released_added(variant))
    assert keep == set(wan_base_shapes)
    assert len(keep) + len(released_added(variant)) == len(model_weight_shapes(model))


def test_strict_loader_names_variant_and_shape_mismatches(models, wan_base_shapes):
    with pytest.raises(CheckpointError, match="missing keys: arm_domain_emb"):
        check_weight_layout(models["rgb-pm"], wan_base_shapes, released_added("pm"))
    with pytest.raises(CheckpointError, match="unexpected keys: arm_domain_emb"):
        check_weight_layout(models["pm"], wan_base_shapes, released_added("rgb-pm"))
    wrong_grid = dict(released_added("rgb-pm"), arm_pos_emb=(1, 128, 13, 2, 4))
    with pytest.raises(CheckpointError, match=r"mis-shaped keys: arm_pos_emb \(file \(1, 128, 13, 2, 4\), "
                                              r"model \(1, 128, 13, 4, 6\)\)"):
        check_weight_layout(models["rgb-pm"], wan_base_shapes, wrong_grid)
    no_block = {k: v for k, v in wan_base_shapes.items() if not k.startswith("blocks.39.")}
    with pytest.raises(CheckpointError, match=r"base/transformer: missing keys: blocks\.39\."):
        check_weight_layout(models["pm"], no_block, released_added("pm"))
    t2v = dict(wan_base_shapes, **{"patch_embedding.weight": (D, 16, 1, 2, 2)})      # a T2V base (16 in-channels)
    with pytest.raises(CheckpointError, match=r"mis-shaped keys: patch_embedding\.weight"):
        check_weight_layout(models["pm"], t2v, released_added("pm"))
