"""Cross-attention processor that splits the context into image tokens + robot tokens.

Stock ``WanAttnProcessor`` assumes the context is ``[image tokens | 512 text tokens]`` and splits
at ``len - 512``: with Kinema4D's ``[257 image | 624 (or 312) robot]`` context that split is wrong
and silent. This processor splits at a fixed image-token count instead:

    context (B, L_img + N, D) -> image (B, L_img, D) via add_k_proj/add_v_proj + norm_added_k
                               -> robot (B, N, D)     via to_k/to_v + norm_k
    out = to_out( SDPA(q, k_robot, v_robot) + SDPA(q, k_img, v_img) )
"""

from __future__ import annotations

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn


class Kinema4DAttnProcessor:
    """Processor for ``WanAttention`` cross-attention layers (attn2) of the Kinema4D transformer."""

    _attention_backend = None
    _parallel_config = None

    def __init__(self, image_context_length: int):
        if image_context_length < 1:
            raise ValueError(f"image_context_length must be >= 1, got {image_context_length}")
        self.image_context_length = int(image_context_length)

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, rotary_emb=None) -> torch.Tensor:
        if encoder_hidden_states is None or attn.add_k_proj is None:
            raise ValueError("Kinema4DAttnProcessor is for image+robot cross-attention layers only")
        n_img = self.image_context_length
        if encoder_hidden_states.shape[1] <= n_img:
            raise ValueError(f"context has {encoder_hidden_states.shape[1]} tokens; expected {n_img} image "
                             "tokens followed by at least one robot token")
        context_img = encoder_hidden_states[:, :n_img]      # (B, L_img, D)
        context_robot = encoder_hidden_states[:, n_img:]    # (B, N, D)

        query = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))   # (B, S, H, d)
        key = attn.norm_k(attn.to_k(context_robot)).unflatten(2, (attn.heads, -1))     # (B, N, H, d)
        value = attn.to_v(context_robot).unflatten(2, (attn.heads, -1))
        key_img = attn.norm_added_k(attn.add_k_proj(context_img)).unflatten(2, (attn.heads, -1))
        value_img = attn.add_v_proj(context_img).unflatten(2, (attn.heads, -1))

        out_img = dispatch_attention_fn(query, key_img, value_img, attn_mask=None, dropout_p=0.0,
                                        is_causal=False, backend=self._attention_backend)
        out = dispatch_attention_fn(query, key, value, attn_mask=attention_mask, dropout_p=0.0,
                                    is_causal=False, backend=self._attention_backend)
        out = out.flatten(2, 3).type_as(query) + out_img.flatten(2, 3).type_as(query)   # (B, S, H*d)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)
