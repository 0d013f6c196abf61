"""Kinema4D transformer: diffusers' ``WanTransformer3DModel`` plus the robot branch.

Added to the Wan I2V transformer (layer names equal the released ``added_weights.safetensors``):

- ``learnable_domain_embeddings`` (2, D): 4DNeX domain rows added to the patch tokens, row 0 to
  the left (RGB) token columns, row 1 to the right (XYZ) columns.
- ``patch_embedding_arm`` Conv3d(4 + 16 -> C_arm, kernel = stride = arm_patch_size) over
  [robot mask 4 | robot latent 16], ``arm_ln`` LayerNorm(C_arm), GELU, ``arm_pos_emb``
  (1, C_arm, *arm_grid) shared by both halves, ``arm_domain_emb`` (2, C_arm) per half (rgb-pm
  only), ``arm_patch_proj`` Linear(C_arm -> D): the robot tokens that replace the text context.
- ``arm_cond_proj`` Linear(16 -> 16) per latent voxel, added to the condition channels 20:36
  where the robot condition is injected.

Shared RoPE: positions are computed for half the width and repeated, so the RGB token at
(f, h, w) and its XYZ twin at (f, h, w + W/2) get the same rotation.

Shapes (full size, rgb-pm): hidden_states (B, 36, 13, 60, 180); robot_latents (B, 16, 13, 60, 180)
(RGB | XYZ along width); robot_mask (B, 4, 13, 60, 180). Variant pm: robot_latents and robot_mask
cover the XYZ half only, (B, 16|4, 13, 60, 90).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from diffusers.models import WanTransformer3DModel
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.utils import apply_lora_scale

from kinema4d_core.model.attention import Kinema4DAttnProcessor
from kinema4d_core.model.config import MASK_CHANNELS, VARIANTS, ArmConfig


class Kinema4DTransformer3DModel(WanTransformer3DModel):
    """Wan I2V transformer conditioned on a robot latent video instead of text."""

    _keep_in_fp32_modules = WanTransformer3DModel._keep_in_fp32_modules + ["arm_ln"]
    _skip_layerwise_casting_patterns = WanTransformer3DModel._skip_layerwise_casting_patterns + [
        "patch_embedding_arm", "arm_"]

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 40,
        attention_head_dim: int = 128,
        in_channels: int = 36,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 13824,
        num_layers: int = 40,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = 1280,
        added_kv_proj_dim: int | None = 5120,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        robot_condition: str = "rgb-pm",
        arm_token_dim: int = 128,
        arm_patch_size: tuple[int, int, int] = (1, 15, 15),
        arm_grid: tuple[int, int, int] = (13, 4, 6),
        image_context_length: int = 257,
    ) -> None:
        super().__init__(
            patch_size=patch_size, num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim, in_channels=in_channels, out_channels=out_channels,
            text_dim=text_dim, freq_dim=freq_dim, ffn_dim=ffn_dim, num_layers=num_layers,
            cross_attn_norm=cross_attn_norm, qk_norm=qk_norm, eps=eps, image_dim=image_dim,
            added_kv_proj_dim=added_kv_proj_dim, rope_max_seq_len=rope_max_seq_len,
            pos_embed_seq_len=pos_embed_seq_len,
        )
        if robot_condition not in VARIANTS:
            raise ValueError(f"robot_condition must be one of {VARIANTS}, got {robot_condition!r}")
        if image_dim is None or added_kv_proj_dim is None:
            raise ValueError("Kinema4D needs the I2V image branch: set image_dim and added_kv_proj_dim")
        if in_channels != 2 * out_channels + MASK_CHANNELS:
            raise ValueError(f"in_channels must be 2*out_channels + {MASK_CHANNELS} "
                             f"(noisy | mask | condition), got {in_channels} vs out {out_channels}")
        inner_dim = num_attention_heads * attention_head_dim
        z_dim = out_channels
        arm_patch_size = tuple(arm_patch_size)
        arm_grid = tuple(arm_grid)

        self.learnable_domain_embeddings = nn.Parameter(torch.zeros(2, inner_dim))
        self.patch_embedding_arm = nn.Conv3d(MASK_CHANNELS + z_dim, arm_token_dim, kernel_size=arm_patch_size,
                                             stride=arm_patch_size)
        self.arm_ln = nn.LayerNorm(arm_token_dim)
        self.arm_pos_emb = nn.Parameter(torch.zeros(1, arm_token_dim, *arm_grid))
        if robot_condition == "rgb-pm":
            self.arm_domain_emb = nn.Parameter(torch.zeros(2, arm_token_dim))
        else:
            self.arm_domain_emb = None
        self.arm_patch_proj = nn.Linear(arm_token_dim, inner_dim)
        self.arm_cond_proj = nn.Linear(z_dim, z_dim)
        # Zero-initialized like the released training start: an untrained robot branch is a no-op.
        for layer in (self.arm_patch_proj, self.arm_cond_proj):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

        self.set_cross_attention_processor()

    def set_cross_attention_processor(self) -> None:
        """Give every cross-attention layer the image+robot split processor (attn1 keeps Wan's)."""
        for block in self.blocks:
            block.attn2.set_processor(Kinema4DAttnProcessor(self.config.image_context_length))

    # ----------------------------------------------------------------------------------- pieces
    @property
    def injection_first_frame(self) -> int:
        """First latent frame that receives the robot condition (rgb-pm: 1, pm: 0)."""
        return 1 if self.config.robot_condition == "rgb-pm" else 0

    def inject_robot_condition(self, hidden_states: torch.Tensor, robot_latents: torch.Tensor,
                               robot_mask: torch.Tensor, robot_cond_scale: torch.Tensor | float = 1.0
                               ) -> torch.Tensor:
        """Return a NEW input tensor with the robot mask and projected robot latent injected.

        hidden_states (B, 36, F, H, W): [noisy 16 | mask 4 | condition 16].
        rgb-pm: frames 1..F-1, full width; pm: all frames, XYZ half (columns W/2..W-1).
        Channels 16:20 are replaced by ``robot_mask``; channels 20:36 get
        ``+= robot_cond_scale * arm_cond_proj(robot_latent)``. ``robot_cond_scale`` (scalar or (B,))
        is 1 for a normal pass; the faithful guidance mode uses 2 to reproduce the released
        unconditional pass, which saw the projection added twice.
        """
        z = self.config.out_channels
        x = hidden_states.clone()
        f0 = self.injection_first_frame
        w0 = 0 if self.config.robot_condition == "rgb-pm" else hidden_states.shape[-1] // 2
        proj = self.arm_cond_proj(robot_latents[:, :, f0:].movedim(1, -1)).movedim(-1, 1)   # (B,16,F-f0,H,Wc)
        scale = torch.as_tensor(robot_cond_scale, dtype=proj.dtype, device=proj.device)
        if scale.ndim == 1:
            scale = scale.view(-1, 1, 1, 1, 1)
        x[:, z:z + MASK_CHANNELS, f0:, :, w0:] = robot_mask[:, :, f0:].to(x.dtype)
        x[:, z + MASK_CHANNELS:, f0:, :, w0:] += (scale * proj).to(x.dtype)
        return x

    def robot_tokens(self, robot_latents: torch.Tensor, robot_mask: torch.Tensor) -> torch.Tensor:
        """[mask 4 | latent 16] (B, 20, F, H, Wc) -> robot tokens (B, N, D).

        N = F' * H' * W' with (F', H', W') = arm grid (rgb-pm: W' = 2 * grid columns, one block of
        columns per half).
        """
        x = torch.cat([robot_mask.to(robot_latents.dtype), robot_latents], dim=1)
        x = self.patch_embedding_arm(x.to(self.patch_embedding_arm.weight.dtype))   # (B, C, F', H', W')
        # LayerNorm in its own parameter dtype (fp32 when loaded with keep-in-fp32, bf16 after a plain
        # ``.to(bfloat16)``): a mixed fp32-input / bf16-weight layer_norm is an error in PyTorch.
        x = F.gelu(self.arm_ln(x.movedim(1, -1).to(self.arm_ln.weight.dtype)).to(x.dtype)).movedim(-1, 1)
        grid = tuple(self.arm_pos_emb.shape[2:])
        halves = 2 if self.arm_domain_emb is not None else 1
        expected = (grid[0], grid[1], grid[2] * halves)
        if tuple(x.shape[2:]) != expected:
            raise ValueError(f"robot token grid {tuple(x.shape[2:])} does not match arm_pos_emb grid "
                             f"{expected}; the robot condition size does not fit this model")
        pos = self.arm_pos_emb.to(x.dtype)
        if halves == 2:
            pos = torch.cat([pos, pos], dim=-1)                                     # shared by both halves
            dom = self.arm_domain_emb.to(x.dtype)                                   # (2, C)
            side = torch.arange(expected[2], device=x.device) >= grid[2]            # False left, True right
            pos = pos + dom[side.long()].T.reshape(1, -1, 1, 1, expected[2])
        x = x + pos
        x = x.flatten(2).transpose(1, 2)                                            # (B, N, C)
        return self.arm_patch_proj(x.to(self.arm_patch_proj.weight.dtype))         # (B, N, D)

    def shared_rotary_emb(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE (cos, sin), each (1, F'*H'*W', 1, d), with the width position taken modulo W'/2."""
        half = hidden_states[..., : hidden_states.shape[-1] // 2]
        cos, sin = self.rope(half)
        p_t, p_h, p_w = self.config.patch_size
        f, h, w = half.shape[2] // p_t, half.shape[3] // p_h, half.shape[4] // p_w

        def twin(freqs: torch.Tensor) -> torch.Tensor:
            freqs = freqs.reshape(1, f, h, w, 1, -1)
            return torch.cat([freqs, freqs], dim=3).reshape(1, f * h * 2 * w, 1, -1)

        return twin(cos), twin(sin)

    def embed_time_and_image(self, timestep: torch.Tensor, image_embeds: torch.Tensor, dtype: torch.dtype
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Timestep (B,) -> temb (B, D), timestep_proj (B, 6, D); CLIP (B, L, image_dim) -> (B, L, D).

        Same modules as Wan's condition embedder; its text embedder is never used (no text).
        """
        emb = self.condition_embedder
        t = emb.timesteps_proj(timestep)
        t_dtype = next(iter(emb.time_embedder.parameters())).dtype
        if t.dtype != t_dtype and t_dtype != torch.int8:
            t = t.to(t_dtype)
        temb = emb.time_embedder(t).to(dtype)
        timestep_proj = emb.time_proj(emb.act_fn(temb)).unflatten(1, (6, -1))
        return temb, timestep_proj, emb.image_embedder(image_embeds)

    # ---------------------------------------------------------------------------------- forward
    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states_image: torch.Tensor,
        robot_latents: torch.Tensor,
        robot_mask: torch.Tensor,
        robot_cond_scale: torch.Tensor | float = 1.0,
        encoder_hidden_states: None = None,
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor | Transformer2DModelOutput:
        """Predict the flow (B, 16, F, H, W) for the noisy latent in ``hidden_states``.

        hidden_states (B, 36, F, H, W); timestep (B,); encoder_hidden_states_image (B, L_img,
        image_dim) CLIP penultimate hidden states; robot_latents / robot_mask: see module doc.
        encoder_hidden_states must be None: the robot tokens take the place of the text context.
        """
        if encoder_hidden_states is not None:
            raise ValueError("Kinema4D uses no text context: pass robot_latents/robot_mask, not "
                             "encoder_hidden_states")
        batch, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        if width % (2 * p_w):
            raise ValueError(f"latent width {width} must split into two halves divisible by {p_w}")
        if encoder_hidden_states_image.shape[1] != self.config.image_context_length:
            raise ValueError(f"expected {self.config.image_context_length} image tokens, got "
                             f"{encoder_hidden_states_image.shape[1]}")
        pf, ph, pw = frames // p_t, height // p_h, width // p_w

        x = self.inject_robot_condition(hidden_states, robot_latents, robot_mask, robot_cond_scale)
        rotary_emb = self.shared_rotary_emb(x)

        x = self.patch_embedding(x)                                                  # (B, D, F', H', W')
        dom = self.learnable_domain_embeddings.to(x.dtype)
        x = torch.cat([x[..., : pw // 2] + dom[0].view(1, -1, 1, 1, 1),
                       x[..., pw // 2:] + dom[1].view(1, -1, 1, 1, 1)], dim=-1)
        x = x.flatten(2).transpose(1, 2).contiguous()                                # (B, S, D)

        temb, timestep_proj, image_tokens = self.embed_time_and_image(timestep, encoder_hidden_states_image,
                                                                      x.dtype)
        robot = self.robot_tokens(robot_latents, robot_mask).to(image_tokens.dtype)
        context = torch.cat([image_tokens, robot], dim=1)                            # (B, L_img + N, D)

        for block in self.blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                x = self._gradient_checkpointing_func(block, x, context, timestep_proj, rotary_emb)
            else:
                x = block(x, context, timestep_proj, rotary_emb)

        shift, scale = (self.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
        x = (self.norm_out(x.float()) * (1 + scale.to(x.device)) + shift.to(x.device)).type_as(x)
        x = self.proj_out(x)                                                         # (B, S, 16*p)
        x = x.reshape(batch, pf, ph, pw, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        out = x.flatten(6, 7).flatten(4, 5).flatten(2, 3)                            # (B, 16, F, H, W)
        if not return_dict:
            return (out,)
        return Transformer2DModelOutput(sample=out)

    def num_robot_tokens(self) -> int:
        t, h, w = self.config.arm_grid
        return t * h * w * (2 if self.config.robot_condition == "rgb-pm" else 1)


def kinema4d_config_from_wan(wan_config: dict[str, Any], *, variant: str, arm: ArmConfig) -> dict[str, Any]:
    """Kinema4D transformer init kwargs from a Wan base ``config.json`` dict + robot-branch sizes.

    Private keys (``_class_name``...) and keys the Wan init does not take are dropped.
    """
    accepted = set(inspect.signature(WanTransformer3DModel.__init__).parameters) - {"self"}
    cfg = {k: v for k, v in wan_config.items() if k in accepted}
    cfg.update(robot_condition=variant, arm_token_dim=arm.arm_token_dim, arm_patch_size=tuple(arm.arm_patch_size),
               arm_grid=tuple(arm.arm_grid), image_context_length=arm.image_context_length)
    return cfg
