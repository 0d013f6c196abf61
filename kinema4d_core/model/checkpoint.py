"""Strict loading of a Wan2.1 I2V base folder plus a Kinema4D checkpoint folder.

Base folder (diffusers layout): transformer/ (config.json + safetensors, single or sharded),
vae/, image_encoder/ (CLIPVisionModel), image_processor/ (CLIPImageProcessor), scheduler/.
text_encoder/ and tokenizer/ are never read.

Kinema4D folder: ``pytorch_lora_weights.safetensors`` (keys
``transformer.blocks.{i}.attn{1,2}.{to_q,to_k,to_v,to_out.0}.lora_{A,B}.weight``, no alpha
metadata; fused at :data:`LORA_SCALE`) and ``added_weights.safetensors`` (unprefixed robot-branch
keys). Optional ``kinema4d_config.json`` overrides the robot-branch sizes (tiny preset).

Strict by default: every base weight, every LoRA pair and every added weight must be consumed
and match the model's shapes; otherwise a CheckpointError lists the offending keys by name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kinema4d_core.errors import CheckpointError
from kinema4d_core.model.config import CHECKPOINT_FOLDER, FULL_ARM, KINEMA4D_CONFIG_NAME, LORA_SCALE, VARIANTS, ArmConfig

LORA_FILE = "pytorch_lora_weights.safetensors"
ADDED_FILE = "added_weights.safetensors"
LORA_PREFIX = "transformer."
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
BASE_COMPONENTS = ("transformer", "vae", "image_encoder", "image_processor", "scheduler")


def _listing(keys, limit: int = 12) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _key_mismatch(missing, unexpected) -> str:
    """'missing keys: ...; unexpected keys: ...' (each part only when non-empty)."""
    parts = [f"{what} keys: {_listing(keys)}" for what, keys in (("missing", missing), ("unexpected", unexpected))
             if keys]
    return "; ".join(parts)


# ------------------------------------------------------------------------------------ folders
def check_base_folder(base: str | Path) -> Path:
    """Check the base folder layout without loading anything heavy; return it as a Path."""
    base = Path(base)
    if not base.is_dir():
        raise CheckpointError(f"folder {base} does not exist", field="base",
                              fix="pass the Wan2.1-I2V-14B-480P-Diffusers folder (or DIR/base from "
                                  "`kinema4d make-tiny-checkpoint DIR`)")
    missing = [c for c in BASE_COMPONENTS if not (base / c).is_dir()]
    if missing:
        raise CheckpointError(f"{base} lacks the component folders {missing}", field="base",
                              fix="download the complete diffusers folder (text_encoder/tokenizer are not needed)")
    if not (base / "transformer" / "config.json").is_file():
        raise CheckpointError(f"{base / 'transformer'} has no config.json", field="base")
    return base


def resolve_checkpoint_folder(checkpoint: str | Path, variant: str) -> Path:
    """Accept the variant folder itself or its parent (holding kinema4d_ckpt / kinema4d_pmcond_ckpt)."""
    if variant not in VARIANTS:
        raise CheckpointError(f"unknown variant {variant!r}", field="variant", fix=f"use one of {VARIANTS}")
    ckpt = Path(checkpoint)
    if not ckpt.is_dir():
        raise CheckpointError(f"folder {ckpt} does not exist", field="checkpoint",
                              fix=f"pass the Kinema4D {CHECKPOINT_FOLDER[variant]} folder")
    if not (ckpt / LORA_FILE).exists() and (ckpt / CHECKPOINT_FOLDER[variant]).is_dir():
        ckpt = ckpt / CHECKPOINT_FOLDER[variant]
    missing = [f for f in (LORA_FILE, ADDED_FILE) if not (ckpt / f).is_file()]
    if missing:
        raise CheckpointError(f"{ckpt} lacks {missing}", field="checkpoint",
                              fix=f"pass the folder {CHECKPOINT_FOLDER[variant]} of Minoday/Kinema4D "
                                  f"(variant {variant})")
    return ckpt


def read_arm_config(checkpoint_dir: Path) -> ArmConfig:
    """Robot-branch sizes: ``kinema4d_config.json`` in the checkpoint folder, else full size."""
    path = Path(checkpoint_dir) / KINEMA4D_CONFIG_NAME
    if not path.exists():
        return FULL_ARM
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"not valid JSON ({exc})", field=str(path),
                              fix="rewrite it (`kinema4d make-tiny-checkpoint`) or delete it for full size") from exc
    arm = data.get("arm", data) if isinstance(data, dict) else data
    if not isinstance(arm, dict):
        raise CheckpointError(f"holds a {type(arm).__name__}, expected an object of robot-branch sizes",
                              field=str(path), fix=f"write {{\"arm\": {ArmConfig().to_dict()}}} or delete it")
    return ArmConfig.from_dict(arm)


def read_json(path: Path, field: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path} does not exist", field=field) from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc})", field=field) from exc


# ------------------------------------------------------------------------------------ tensors
def read_safetensors(path: Path, field: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path} does not exist", field=field) from exc
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc})", field=field) from exc


def transformer_weight_files(transformer_dir: Path) -> list[Path]:
    """The safetensors file(s) of a diffusers model folder (single file, or the shards of its index)."""
    transformer_dir = Path(transformer_dir)
    single = transformer_dir / "diffusion_pytorch_model.safetensors"
    index = transformer_dir / "diffusion_pytorch_model.safetensors.index.json"
    if single.exists():
        return [single]
    if index.exists():
        weight_map = read_json(index, "base/transformer").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index} has no weight_map", field="base/transformer")
        return [transformer_dir / shard for shard in sorted(set(weight_map.values()))]
    raise CheckpointError(f"{transformer_dir} holds no diffusion_pytorch_model*.safetensors", field="base/transformer")


def read_safetensors_shapes(path: Path, field: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape from a safetensors header only (no tensor data is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path} does not exist", field=field) from exc
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc})", field=field) from exc


def read_transformer_weights(transformer_dir: Path) -> dict[str, torch.Tensor]:
    """All tensors of a diffusers model folder (single file or sharded with an index), in memory at once.

    :func:`load_transformer` does not use this (it streams shard by shard); kept for tools and tests.
    """
    state: dict[str, torch.Tensor] = {}
    for file in transformer_weight_files(transformer_dir):
        state.update(read_safetensors(file, "base/transformer"))
    return state


def added_weight_names(model: torch.nn.Module) -> set[str]:
    """Names of the parameters the Kinema4D transformer adds to a Wan transformer."""
    return {n for n, _ in model.named_parameters()
            if n == "learnable_domain_embeddings" or n.startswith(("patch_embedding_arm.", "arm_"))}


def _shape_errors(model_shapes: dict[str, tuple[int, ...]], shapes: dict[str, tuple[int, ...]]) -> list[str]:
    return [f"{k} (file {tuple(v)}, model {tuple(model_shapes[k])})"
            for k, v in sorted(shapes.items()) if k in model_shapes and tuple(v) != tuple(model_shapes[k])]


def _ignored_unexpected(model: torch.nn.Module, key: str) -> bool:
    patterns = getattr(model, "_keys_to_ignore_on_load_unexpected", None) or []
    return any(p in key for p in patterns)


def _target_dtype(model: torch.nn.Module, name: str, dtype: torch.dtype) -> torch.dtype:
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    return torch.float32 if any(k in name.split(".") for k in keep) else dtype


def model_weight_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor a checkpoint must provide (parameters + persistent buffers).

    Works on a meta-device model (shapes only, nothing materialized)."""
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    persistent = set(model.state_dict(keep_vars=True))
    shapes.update({n: tuple(b.shape) for n, b in model.named_buffers() if n in persistent})
    return shapes


def check_weight_layout(model: torch.nn.Module, base_shapes: dict[str, tuple[int, ...]],
                        added_shapes: dict[str, tuple[int, ...]], *, strict: bool = True) -> set[str]:
    """Validate checkpoint key names and shapes against ``model`` without touching tensor data.

    base_shapes: the Wan base transformer's keys -> shapes; added_shapes: ``added_weights.safetensors``
    keys -> shapes. Base keys must cover every parameter that is not an added weight (keys in the
    model's ``_keys_to_ignore_on_load_unexpected`` are tolerated); added keys must be exactly the
    added parameters (rgb-pm has ``arm_domain_emb``, pm has not); every shape must match.
    strict=False skips the missing/unexpected checks (shapes are always checked). Raises
    CheckpointError naming the offending keys; returns the base keys that will be loaded.
    """
    shapes = model_weight_shapes(model)
    added = added_weight_names(model)
    base_expected = set(shapes) - added
    if strict:
        added_missing = added - set(added_shapes)
        added_unexpected = set(added_shapes) - added
        if added_missing or added_unexpected:
            raise CheckpointError(_key_mismatch(added_missing, added_unexpected), field=ADDED_FILE,
                                  fix="use the added_weights.safetensors of the same variant "
                                      "(rgb-pm has arm_domain_emb, pm has not)")
        base_missing = base_expected - set(base_shapes)
        base_unexpected = [k for k in base_shapes if k not in base_expected and not _ignored_unexpected(model, k)]
        if base_missing or base_unexpected:
            raise CheckpointError(_key_mismatch(base_missing, base_unexpected), field="base/transformer",
                                  fix="use the Wan2.1-I2V-14B-480P-Diffusers transformer")
    for source, given, names in (("base/transformer", base_shapes, base_expected), (ADDED_FILE, added_shapes, added)):
        bad = _shape_errors(shapes, {k: v for k, v in given.items() if k in names})
        if bad:
            raise CheckpointError(f"mis-shaped keys: {_listing(bad)}", field=source,
                                  fix="the file does not belong to this model size/variant")
    return {k for k in base_shapes if k in base_expected}


def _assign(model: torch.nn.Module, state: dict[str, torch.Tensor], *, dtype: torch.dtype,
            device: str | torch.device) -> None:
    state = {k: v.to(device=device, dtype=_target_dtype(model, k, dtype)) for k, v in state.items()}
    model.load_state_dict(state, strict=False, assign=True)


def move_buffers(model: torch.nn.Module, device: str | torch.device) -> None:
    """Move every (non-meta) buffer to ``device``. Needed after ``load_state_dict(assign=True)`` into a
    model built with ``init_empty_weights(include_buffers=False)``: the non-persistent RoPE tables
    are not in any checkpoint and would otherwise stay on the CPU while the weights go to CUDA."""
    device = torch.device(device)
    for module in model.modules():
        for name, buf in list(module._buffers.items()):
            if buf is not None and not buf.is_meta and buf.device != device:
                module._buffers[name] = buf.to(device)


def _finish_loading(model: torch.nn.Module, device: str | torch.device) -> None:
    """Fail on parameters left on meta; move the buffers to ``device``."""
    still_meta = [n for n, p in model.named_parameters() if p.is_meta]
    if still_meta:  # only reachable with strict=False
        raise CheckpointError(f"no weights for {_listing(still_meta)}", field="checkpoint",
                              fix="load with strict=True to see which file lacks them")
    move_buffers(model, device)


def load_weights_strict(model: torch.nn.Module, base_state: dict[str, torch.Tensor],
                        added_state: dict[str, torch.Tensor], *, dtype: torch.dtype, device: str | torch.device,
                        strict: bool = True) -> None:
    """Assign in-memory base + added weights to a (possibly meta-initialized) model, checking every key
    with :func:`check_weight_layout` first. Tensors are cast to ``dtype`` (fp32 for keep-in-fp32
    modules); parameters and buffers end on ``device``."""
    keep = check_weight_layout(model, {k: tuple(v.shape) for k, v in base_state.items()},
                               {k: tuple(v.shape) for k, v in added_state.items()}, strict=strict)
    added = added_weight_names(model)
    merged = {k: v for k, v in base_state.items() if k in keep}
    merged.update({k: v for k, v in added_state.items() if k in added})
    _assign(model, merged, dtype=dtype, device=device)
    _finish_loading(model, device)


def load_weights_from_files(model: torch.nn.Module, base_files: list[Path], added_state: dict[str, torch.Tensor],
                            *, dtype: torch.dtype, device: str | torch.device, strict: bool = True) -> None:
    """Like :func:`load_weights_strict`, but the base weights are validated from the safetensors
    headers first and then read one shard at a time (peak host memory: one shard, not the whole
    fp32 14B base)."""
    base_shapes: dict[str, tuple[int, ...]] = {}
    for file in base_files:
        base_shapes.update(read_safetensors_shapes(file, "base/transformer"))
    keep = check_weight_layout(model, base_shapes, {k: tuple(v.shape) for k, v in added_state.items()},
                               strict=strict)
    added = added_weight_names(model)
    _assign(model, {k: v for k, v in added_state.items() if k in added}, dtype=dtype, device=device)
    for file in base_files:
        shard = read_safetensors(file, "base/transformer")
        _assign(model, {k: v for k, v in shard.items() if k in keep}, dtype=dtype, device=device)
        del shard
    _finish_loading(model, device)


# --------------------------------------------------------------------------------------- LoRA
def split_lora_state(lora_state: dict[str, torch.Tensor], model: torch.nn.Module
                     ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Check LoRA keys strictly and pair them: module path -> (A (r, in), B (out, r)).

    Every key must be ``transformer.<module>.lora_{A,B}.weight`` for a target Linear of every
    block (attn1/attn2 x to_q/to_k/to_v/to_out.0); nothing missing, nothing extra, shapes fit.
    """
    expected = {f"blocks.{i}.{attn}.{t}" for i in range(len(model.blocks)) for attn in ("attn1", "attn2")
                for t in LORA_TARGETS}
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    unexpected = []
    for key, tensor in lora_state.items():
        if not key.startswith(LORA_PREFIX):
            unexpected.append(f"{key} (keys must start with '{LORA_PREFIX}')")
            continue
        body = key[len(LORA_PREFIX):]
        for part in ("A", "B"):
            suffix = f".lora_{part}.weight"
            if body.endswith(suffix) and body[: -len(suffix)] in expected:
                pairs.setdefault(body[: -len(suffix)], {})[part] = tensor
                break
        else:
            unexpected.append(key)
    missing = [f"{LORA_PREFIX}{m}.lora_{p}.weight" for m in sorted(expected) for p in ("A", "B")
               if p not in pairs.get(m, {})]
    if unexpected or missing:
        raise CheckpointError(_key_mismatch(missing, unexpected), field=LORA_FILE,
                              fix="use the pytorch_lora_weights.safetensors of a Kinema4D folder for this base model")
    modules = dict(model.named_modules())
    bad = []
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, ab in pairs.items():
        a, b = ab["A"], ab["B"]
        weight = modules[name].weight
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1] or a.shape[1] != weight.shape[1] \
                or b.shape[0] != weight.shape[0]:
            bad.append(f"{LORA_PREFIX}{name} (A {tuple(a.shape)}, B {tuple(b.shape)}, weight {tuple(weight.shape)})")
        out[name] = (a, b)
    if bad:
        raise CheckpointError(f"mis-shaped keys: {_listing(bad)}", field=LORA_FILE,
                              fix="the LoRA belongs to another model size")
    return out


@torch.no_grad()
def fuse_lora(model: torch.nn.Module, lora_state: dict[str, torch.Tensor], scale: float = LORA_SCALE) -> int:
    """W <- W + scale * B @ A for every target Linear (computed in fp32). Returns modules fused."""
    pairs = split_lora_state(lora_state, model)
    modules = dict(model.named_modules())
    for name, (a, b) in pairs.items():
        weight = modules[name].weight
        delta = b.to(weight.device, torch.float32) @ a.to(weight.device, torch.float32)
        weight.copy_((weight.float() + scale * delta).to(weight.dtype))
    return len(pairs)


def inject_lora_unfused(model: torch.nn.Module, lora_state: dict[str, torch.Tensor], scale: float = LORA_SCALE
                        ) -> None:
    """Attach the LoRA as a peft adapter (not fused; for checks and training), strictly.

    After ``set_peft_model_state_dict`` every LoRA parameter of the model is compared with the
    file: any that was not loaded raises CheckpointError.
    """
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    pairs = split_lora_state(lora_state, model)
    rank = next(iter(pairs.values()))[0].shape[0]
    config = LoraConfig(r=rank, lora_alpha=scale * rank, target_modules=list(LORA_TARGETS), init_lora_weights=False)
    inject_adapter_in_model(config, model, adapter_name="default")
    state = {f"{name}.lora_{p}.weight": t for name, (a, b) in pairs.items() for p, t in (("A", a), ("B", b))}
    result = set_peft_model_state_dict(model, state, adapter_name="default")
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    loaded = {k: v for k, v in model.state_dict().items() if ".lora_" in k}
    not_loaded = [k for k, v in loaded.items()
                  if k.replace(".default", "") not in state
                  or not torch.equal(v.cpu(), state[k.replace(".default", "")].to(v.dtype).cpu())]
    if unexpected or not_loaded:
        raise CheckpointError(f"peft did not consume: {_listing(unexpected + not_loaded)}", field=LORA_FILE)


# ------------------------------------------------------------------------------------ loading
def build_transformer(base: Path, variant: str, arm: ArmConfig, *, empty: bool = True):
    """Kinema4D transformer from the base config (+ robot sizes), weights on the meta device."""
    from accelerate import init_empty_weights

    from kinema4d_core.model.transformer import Kinema4DTransformer3DModel, kinema4d_config_from_wan

    wan_cfg = read_json(base / "transformer" / "config.json", "base/transformer/config.json")
    cfg = kinema4d_config_from_wan(wan_cfg, variant=variant, arm=arm)
    if not empty:
        return Kinema4DTransformer3DModel(**cfg)
    with init_empty_weights(include_buffers=False):
        return Kinema4DTransformer3DModel(**cfg)


def load_transformer(base: str | Path, checkpoint: str | Path, *, variant: str = "rgb-pm",
                     dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu",
                     strict: bool = True, fuse: bool = True, lora_scale: float = LORA_SCALE):
    """Base transformer + Kinema4D added weights + LoRA (fused by default), in eval mode."""
    base = check_base_folder(base)
    ckpt = resolve_checkpoint_folder(checkpoint, variant)
    arm = read_arm_config(ckpt)
    lora_state = read_safetensors(ckpt / LORA_FILE, LORA_FILE)
    added_state = read_safetensors(ckpt / ADDED_FILE, ADDED_FILE)
    model = build_transformer(base, variant, arm)
    split_lora_state(lora_state, model)                    # fail on LoRA keys before the big read
    load_weights_from_files(model, transformer_weight_files(base / "transformer"), added_state, dtype=dtype,
                            device=device, strict=strict)
    if fuse:
        fuse_lora(model, lora_state, lora_scale)
    else:
        inject_lora_unfused(model, lora_state, lora_scale)
    return model.eval().requires_grad_(False)


@dataclass
class Components:
    """Everything the pipeline needs; see :func:`load_components`."""

    transformer: Any
    vae: Any
    image_encoder: Any
    image_processor: Any
    scheduler: Any
    variant: str
    arm: ArmConfig
    base: Path
    checkpoint: Path


def load_scheduler(base: Path):
    import diffusers

    cfg = read_json(base / "scheduler" / "scheduler_config.json", "base/scheduler")
    cls = getattr(diffusers, cfg.get("_class_name", ""), None)
    if cls is None:
        raise CheckpointError(f"unknown scheduler class {cfg.get('_class_name')!r}", field="base/scheduler")
    return cls.from_pretrained(str(base / "scheduler"))


def load_components(base: str | Path, checkpoint: str | Path, *, variant: str = "rgb-pm",
                    dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu",
                    vae_dtype: torch.dtype = torch.float32, strict: bool = True) -> Components:
    """Load transformer (``dtype``), VAE (``vae_dtype``), CLIP image encoder (fp32), image processor
    and scheduler onto ``device``. Text encoder and tokenizer are never loaded."""
    from diffusers import AutoencoderKLWan
    from transformers import CLIPImageProcessor, CLIPVisionModel

    base = check_base_folder(base)
    ckpt = resolve_checkpoint_folder(checkpoint, variant)
    transformer = load_transformer(base, ckpt, variant=variant, dtype=dtype, device=device, strict=strict)
    try:
        vae = AutoencoderKLWan.from_pretrained(str(base / "vae"), torch_dtype=vae_dtype).to(device)
        image_encoder = CLIPVisionModel.from_pretrained(str(base / "image_encoder"), dtype=torch.float32).to(device)
        image_processor = CLIPImageProcessor.from_pretrained(str(base / "image_processor"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"could not load a base component ({exc})", field="base",
                              fix="check the diffusers folder is complete") from exc
    scheduler = load_scheduler(base)
    for module in (vae, image_encoder):
        module.eval().requires_grad_(False)
    return Components(transformer, vae, image_encoder, image_processor, scheduler, variant,
                      read_arm_config(ckpt), base, ckpt)
