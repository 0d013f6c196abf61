"""Kinema4D size presets and the constants of the released model.

Sizes here are per modality: an RGB frame of ``height x width`` and its pointmap twin of the same
size are concatenated along width before the VAE, so the latent is ``height/8 x 2*width/8``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

VARIANTS = ("rgb-pm", "pm")
"""``rgb-pm``: robot RGB + pointmap condition (``kinema4d_ckpt``); ``pm``: pointmap only
(``kinema4d_pmcond_ckpt``)."""

CHECKPOINT_FOLDER = {"rgb-pm": "kinema4d_ckpt", "pm": "kinema4d_pmcond_ckpt"}

POINTMAP_LATENT_SHIFT = -0.17
"""Extra scalar normalization of pointmap latents: ``z' = (z - SHIFT) / SCALE`` (Kinema4D)."""
POINTMAP_LATENT_SCALE = 1.36

LORA_SCALE = 0.5
"""Released fuse scale (LoRA alpha 32 / rank 64); the LoRA file carries no alpha metadata."""

VAE_SPATIAL = 8
VAE_TEMPORAL = 4
MASK_CHANNELS = 4
"""Wan first-frame mask channels (one per frame of a temporal group of 4)."""

KINEMA4D_CONFIG_NAME = "kinema4d_config.json"
"""Optional file in a Kinema4D checkpoint folder overriding :class:`ArmConfig` (the tiny preset
writes it; the released folders do not have one and get the full-size defaults)."""


@dataclass(frozen=True)
class ArmConfig:
    """Robot-branch sizes that are not in the Wan base config.

    arm_token_dim: channels of the robot token conv (128 released).
    arm_patch_size: (t, h, w) kernel = stride of the robot token conv on the latent grid.
    arm_grid: (latent frames, rows, columns per half) of the robot positional embedding; fixes the
        sample size: frames = 4 * (grid_t - 1) + 1, height = 8 * grid_h * patch_h,
        width per modality = 8 * grid_w * patch_w.
    image_context_length: CLIP image tokens in the cross-attention context (257 for ViT-H/14 at 224).
    """

    arm_token_dim: int = 128
    arm_patch_size: tuple[int, int, int] = (1, 15, 15)
    arm_grid: tuple[int, int, int] = (13, 4, 6)
    image_context_length: int = 257

    @property
    def num_frames(self) -> int:
        return VAE_TEMPORAL * (self.arm_grid[0] - 1) + 1

    @property
    def height(self) -> int:
        return VAE_SPATIAL * self.arm_grid[1] * self.arm_patch_size[1]

    @property
    def width(self) -> int:
        """Width of ONE modality (RGB or pointmap), pixels."""
        return VAE_SPATIAL * self.arm_grid[2] * self.arm_patch_size[2]

    def robot_tokens(self, variant: str) -> int:
        t, h, w = self.arm_grid
        return t * h * w * (2 if variant == "rgb-pm" else 1)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ArmConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            from kinema4d_core.errors import CheckpointError

            raise CheckpointError(f"unknown keys {sorted(unknown)}", field=KINEMA4D_CONFIG_NAME,
                                  fix=f"use only {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


FULL_ARM = ArmConfig()

# Tiny preset: 48 x 96 per modality -> latent 6 x 12 per half (transformer tokens 3 x 6 per half),
# robot patch 3 x 3 -> robot grid 2 x 4 per half; CLIP 32 px / patch 8 -> 1 + 16 image tokens.
TINY_ARM = ArmConfig(arm_token_dim=16, arm_patch_size=(1, 3, 3), arm_grid=(13, 2, 4), image_context_length=17)
# Mini model (kinema4d-mini): 64 x 96 per modality, the released 2:3 aspect at 1/7.5 scale -> latent
# 8 x 12 per half, robot patch 2 x 2 -> the released robot grid 4 x 6 per half; tiny CLIP (17 tokens).
MINI_ARM = ArmConfig(arm_token_dim=32, arm_patch_size=(1, 2, 2), arm_grid=(13, 4, 6), image_context_length=17)

TINY_TRANSFORMER: dict[str, Any] = dict(
    patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36, out_channels=16,
    text_dim=32, freq_dim=32, ffn_dim=32, num_layers=2, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=8, added_kv_proj_dim=24, rope_max_seq_len=32,
)
TINY_VAE: dict[str, Any] = dict(
    base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True],
)
TINY_CLIP: dict[str, Any] = dict(
    hidden_size=8, intermediate_size=16, projection_dim=8, num_hidden_layers=2, num_attention_heads=2,
    image_size=32, patch_size=8, num_channels=3,
)
TINY_SCHEDULER: dict[str, Any] = dict(
    prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=3.0,
)

