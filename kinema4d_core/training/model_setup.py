"""Build the transformer to train and mark what is trainable.

finetune: base transformer weights (+ the Kinema4D checkpoint's added weights when given, else
  fresh robot layers: zero-initialized projections, default conv init) frozen; a peft LoRA adapter
  ``default`` on exactly ``to_q / to_k / to_v / to_out.0`` of every attention layer (rank and alpha
  from the config; from the checkpoint's LoRA when one is given) + every added weight (robot
  layers, 4DNeX and robot domain embeddings) trainable.
scratch: the Kinema4D architecture from the base transformer config (+ ``model.transformer``
  overrides), all parameters trainable except the unused text embedder, no LoRA.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kinema4d_core.errors import ConfigError
from kinema4d_core.model.config import FULL_ARM, MINI_ARM, TINY_ARM, ArmConfig

ADAPTER = "default"


@dataclass
class ModelBundle:
    transformer: torch.nn.Module
    base: Path
    arm: ArmConfig
    variant: str
    mode: str
    lora_rank: int
    lora_alpha: float
    wan_config: dict


def resolve_base(cfg: Any) -> Path:
    """The base folder; ``tiny``: the seeded tiny preset built once under ``<output_dir>/tiny_preset``."""
    from kinema4d_core.model.checkpoint import check_base_folder
    from kinema4d_core.training.config import TINY_BASE

    if cfg.model.base == TINY_BASE:
        folder = cfg.train.output_dir / "tiny_preset"
        if not (folder / "base" / "transformer" / "config.json").is_file():
            from kinema4d_core.model.tiny import make_tiny_checkpoint

            make_tiny_checkpoint(folder, seed=cfg.model.tiny_seed)
        return check_base_folder(folder / "base")
    return check_base_folder(cfg.model.base)


def arm_config(cfg: Any) -> ArmConfig:
    """Robot-branch sizes: the checkpoint's (fine-tune from a checkpoint), else the preset."""
    from kinema4d_core.model.checkpoint import read_arm_config, resolve_checkpoint_folder

    if cfg.model.checkpoint is not None:
        return read_arm_config(resolve_checkpoint_folder(cfg.model.checkpoint, cfg.model.variant))
    return {"tiny": TINY_ARM, "mini": MINI_ARM, "full": FULL_ARM}[cfg.model.arm]


def fresh_added_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Initial values of the added (robot-branch) weights, as the model's constructor makes them:
    zero projections and embeddings, LayerNorm 1/0, default Conv3d init. Works on a meta model."""
    from kinema4d_core.model.checkpoint import added_weight_names

    conv = model.patch_embedding_arm
    fresh_conv = torch.nn.Conv3d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride)
    out = {}
    for name in sorted(added_weight_names(model)):
        shape = tuple(model.get_parameter(name).shape)
        if name == "patch_embedding_arm.weight":
            out[name] = fresh_conv.weight.detach().clone()
        elif name == "patch_embedding_arm.bias":
            out[name] = fresh_conv.bias.detach().clone()
        elif name == "arm_ln.weight":
            out[name] = torch.ones(shape)
        else:
            out[name] = torch.zeros(shape)
    return out


def _transformer_cfg(cfg: Any, base: Path, arm: ArmConfig) -> tuple[dict, dict]:
    from kinema4d_core.model.checkpoint import read_json
    from kinema4d_core.model.transformer import kinema4d_config_from_wan

    wan = read_json(base / "transformer" / "config.json", "base/transformer/config.json")
    wan = {k: v for k, v in wan.items() if not k.startswith("_")}
    if cfg.model.transformer:
        unknown = sorted(set(cfg.model.transformer) - set(wan))
        if unknown:
            raise ConfigError(f"unknown transformer keys {unknown}", field="model.transformer",
                              fix=f"use keys of the Wan transformer config: {sorted(wan)}")
        wan.update(cfg.model.transformer)
    return wan, kinema4d_config_from_wan(wan, variant=cfg.model.variant, arm=arm)


def add_lora(model: torch.nn.Module, rank: int, alpha: float) -> None:
    """A fresh peft LoRA adapter on to_q/to_k/to_v/to_out.0 (A: peft default init, B: zeros)."""
    from peft import LoraConfig, inject_adapter_in_model

    from kinema4d_core.model.checkpoint import LORA_TARGETS

    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(LORA_TARGETS),
                                       init_lora_weights=True), model, adapter_name=ADAPTER)


def set_trainable(model: torch.nn.Module, mode: str) -> list[str]:
    """requires_grad per mode (see module doc); returns the trainable parameter names."""
    from kinema4d_core.model.checkpoint import added_weight_names

    if mode == "scratch":
        model.requires_grad_(True)
        # never called (the robot tokens replace the text context): no gradient, and DDP would
        # otherwise stop on parameters that take no part in the loss
        model.condition_embedder.text_embedder.requires_grad_(False)
    else:
        added = added_weight_names(model)
        for name, p in model.named_parameters():
            p.requires_grad_(name in added or ".lora_A." in name or ".lora_B." in name)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def build_model(cfg: Any) -> ModelBundle:
    """The transformer to train (fp32 master weights on the CPU; accelerate moves it)."""
    from kinema4d_core.model.checkpoint import (LORA_FILE, load_weights_from_files, read_safetensors,
                                                resolve_checkpoint_folder, split_lora_state,
                                                transformer_weight_files)
    from kinema4d_core.model.transformer import Kinema4DTransformer3DModel

    base = resolve_base(cfg)
    arm = arm_config(cfg)
    wan, kcfg = _transformer_cfg(cfg, base, arm)
    m = cfg.model
    rank, alpha = m.lora_rank, m.lora_alpha
    if m.mode == "scratch":
        torch.manual_seed(cfg.train.seed)
        model = Kinema4DTransformer3DModel(**kcfg)
        if m.scratch_init == "base":
            load_weights_from_files(model, transformer_weight_files(base / "transformer"), fresh_added_weights(model),
                                    dtype=torch.float32, device="cpu")
    else:
        from accelerate import init_empty_weights

        with init_empty_weights(include_buffers=False):
            model = Kinema4DTransformer3DModel(**kcfg)
        if m.checkpoint is not None:
            ckpt = resolve_checkpoint_folder(m.checkpoint, m.variant)
            added = read_safetensors(ckpt / "added_weights.safetensors", "added_weights.safetensors")
        else:
            torch.manual_seed(cfg.train.seed)
            added = fresh_added_weights(model)
        load_weights_from_files(model, transformer_weight_files(base / "transformer"), added, dtype=torch.float32,
                                device="cpu")
        if m.checkpoint is not None:
            from kinema4d_core.model.checkpoint import inject_lora_unfused

            lora = read_safetensors(ckpt / LORA_FILE, LORA_FILE)
            pairs = split_lora_state(lora, model)
            rank = int(next(iter(pairs.values()))[0].shape[0])
            from kinema4d_core.model.config import LORA_SCALE

            alpha = LORA_SCALE * rank        # the released LoRA is applied at 0.5
            inject_lora_unfused(model, lora, LORA_SCALE)
        else:
            torch.manual_seed(cfg.train.seed)
            add_lora(model, rank, alpha)
    model.train()
    set_trainable(model, m.mode)
    if cfg.train.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    return ModelBundle(model, base, arm, m.variant, m.mode, rank, float(alpha), wan)


def lora_target_names(model: torch.nn.Module) -> list[str]:
    """Module paths that carry a LoRA adapter (for checks and tests)."""
    return sorted(n for n, mod in model.named_modules() if hasattr(mod, "lora_A") and len(getattr(mod, "lora_A")))
