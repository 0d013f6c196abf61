"""Export a trained transformer in exactly the released Kinema4D layout.

    OUT/kinema4d_ckpt/ (rgb-pm) or OUT/kinema4d_pmcond_ckpt/ (pm)
        pytorch_lora_weights.safetensors   transformer.blocks.{i}.attn{1,2}.{to_q,to_k,to_v,to_out.0}.lora_{A,B}.weight
                                           (no alpha metadata; the loader fuses at LORA_SCALE = 0.5, so B is
                                           stored pre-scaled by (alpha / rank) / 0.5)
        added_weights.safetensors          unprefixed robot-branch keys, fp32
        kinema4d_config.json               robot-branch sizes (only when they differ from the full size)
    OUT/base/                              scratch mode only: the trained Wan transformer (transformer/) and
                                           the source base's vae/, image_encoder/, image_processor/,
                                           scheduler/, model_index.json (the tiny-preset folder layout)
    OUT/training_info.json                 step, mode, config

Everything is staged and moved into place together (``io.StagedOutput``). ``checkpoint.load_components``
(``kinema4d simulate --backend kinema4d --base ... --checkpoint OUT``, the inference node, evaluation)
loads the result unchanged; in scratch mode ``--backend kinema4d-tiny --checkpoint OUT`` as well.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from kinema4d_core.errors import CheckpointError


def lora_state_for_export(state: dict[str, torch.Tensor], rank: int, alpha: float) -> dict[str, torch.Tensor]:
    """peft adapter tensors (``<module>.lora_{A,B}.default.weight``) -> released LoRA keys, B pre-scaled."""
    from kinema4d_core.model.checkpoint import LORA_PREFIX
    from kinema4d_core.model.config import LORA_SCALE

    factor = (alpha / rank) / LORA_SCALE
    out = {}
    for key, value in state.items():
        for part in ("A", "B"):
            tag = f".lora_{part}.default.weight"
            if key.endswith(tag):
                t = value.detach().float().cpu()
                out[f"{LORA_PREFIX}{key[: -len(tag)]}.lora_{part}.weight"] = (t * factor if part == "B" else t).contiguous()
    return out


def zero_lora(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A rank-1 all-zero LoRA for every target (scratch mode: the layout needs the file; it changes nothing)."""
    from kinema4d_core.model.checkpoint import LORA_PREFIX, LORA_TARGETS

    out = {}
    for i, block in enumerate(model.blocks):
        for attn in ("attn1", "attn2"):
            for t in LORA_TARGETS:
                lin = block.get_submodule(f"{attn}.{t}")
                key = f"{LORA_PREFIX}blocks.{i}.{attn}.{t}"
                out[f"{key}.lora_A.weight"] = torch.zeros(1, lin.in_features)
                out[f"{key}.lora_B.weight"] = torch.zeros(lin.out_features, 1)
    return out


def export_checkpoint(model: torch.nn.Module, bundle: Any, out_dir: str | Path, *,
                      overrides: dict[str, torch.Tensor] | None = None, info: dict | None = None,
                      state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``model`` (an unwrapped transformer from ``model_setup.build_model``) into ``out_dir``.

    state: the full state dict when ``model`` is sharded (``accelerator.get_state_dict``); default
    ``model.state_dict()``. overrides: parameter name -> tensor used instead (the EMA weights). Returns the
    variant folder. The written LoRA is checked with the loader's own strict rules before anything
    is moved into place."""
    from safetensors.torch import save_file

    from kinema4d_core.io import StagedOutput
    from kinema4d_core.model.checkpoint import ADDED_FILE, LORA_FILE, added_weight_names, split_lora_state
    from kinema4d_core.model.config import CHECKPOINT_FOLDER, FULL_ARM, KINEMA4D_CONFIG_NAME

    out_dir = Path(out_dir)
    state = dict(state if state is not None else model.state_dict())
    state.update(overrides or {})
    added = {n: state[n].detach().float().cpu().contiguous() for n in sorted(added_weight_names(model))}
    if bundle.mode == "finetune":
        lora = lora_state_for_export(state, bundle.lora_rank, bundle.lora_alpha)
    else:
        lora = zero_lora(model)
    split_lora_state(lora, _plain_view(model))     # the loader's strict check, before writing
    folder = CHECKPOINT_FOLDER[bundle.variant]
    with StagedOutput(out_dir) as st:
        save_file(lora, str(st.path(f"{folder}/{LORA_FILE}")))
        save_file(added, str(st.path(f"{folder}/{ADDED_FILE}")))
        if bundle.arm != FULL_ARM:
            st.path(f"{folder}/{KINEMA4D_CONFIG_NAME}").write_text(
                json.dumps({"preset": "trained", "arm": bundle.arm.to_dict()}, indent=2))
        if bundle.mode == "scratch":
            import diffusers

            base_state = {k: v.detach().float().cpu().contiguous() for k, v in state.items()
                          if k not in added and k in _persistent(model)}
            save_file(base_state, str(st.path("base/transformer/diffusion_pytorch_model.safetensors")))
            wan = dict(bundle.wan_config, _class_name="WanTransformer3DModel",
                       _diffusers_version=diffusers.__version__)
            st.path("base/transformer/config.json").write_text(json.dumps(_json(wan), indent=2))
            stage_base_copy(st, Path(bundle.base), "base/", skip="transformer")
        st.path("training_info.json").write_text(json.dumps(_json(info or {}), indent=2))
    return out_dir / folder


def stage_base_copy(st: Any, src: Path, prefix: str, skip: str) -> None:
    """Stage every file of the base folder ``src`` except its ``skip`` sub-folder under ``prefix``
    (``""`` or e.g. ``"base/"``) of the ``io.StagedOutput`` ``st``."""
    for file in sorted(p for p in Path(src).rglob("*") if p.is_file()):
        rel = file.relative_to(src)
        if rel.parts[0] != skip:
            shutil.copy2(file, st.path(f"{prefix}{rel.as_posix()}"))


def _persistent(model: torch.nn.Module) -> set[str]:
    return set(model.state_dict(keep_vars=True))


def _plain_view(model: torch.nn.Module) -> Any:
    """An object with ``blocks`` and ``named_modules`` whose Linear targets have plain names (peft
    wraps them: ``to_q.base_layer``), for ``split_lora_state``'s shape check."""

    class _View:
        blocks = model.blocks

        @staticmethod
        def named_modules():
            for name, mod in model.named_modules():
                if hasattr(mod, "base_layer"):
                    yield name, mod.base_layer
                elif not name.endswith(".base_layer"):
                    yield name, mod

    return _View()


def _json(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    return v


def check_export(out_dir: str | Path, variant: str) -> Path:
    """The variant folder, resolved by the loader's own rules (CheckpointError when incomplete)."""
    from kinema4d_core.model.checkpoint import resolve_checkpoint_folder

    folder = resolve_checkpoint_folder(out_dir, variant)
    if not (Path(out_dir) / "training_info.json").is_file():
        raise CheckpointError(f"{out_dir} has no training_info.json", field="export")
    return folder
