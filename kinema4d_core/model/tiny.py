"""Tiny preset: the full Kinema4D architecture at toy sizes, written in the real folder layouts.

``make_tiny_checkpoint(DIR)`` writes
  DIR/base/                  diffusers Wan I2V layout: model_index.json, transformer/ (a plain
                             WanTransformer3DModel), vae/, image_encoder/ (CLIPVisionModel),
                             image_processor/ (CLIPImageProcessor), scheduler/ (UniPC, flow),
                             text_encoder/ (a tiny UMT5EncoderModel) and tokenizer/ (a T5TokenizerFast
                             over a 64-piece vocabulary, built offline). Kinema4D never loads these
                             two; they exist so that model_index.json has no null entries, which
                             older diffusers loaders (0.34) reject, and every folder it lists loads.
  DIR/kinema4d_ckpt/         pytorch_lora_weights.safetensors (rank 4, nonzero A and B, no alpha
  DIR/kinema4d_pmcond_ckpt/  metadata), added_weights.safetensors (fp32, unprefixed keys),
                             kinema4d_config.json (robot-branch sizes of the tiny preset).
Sizes: 49 frames of 48 x 96 pixels per modality; random weights from ``seed``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from kinema4d_core.io import StagedOutput
from kinema4d_core.model.config import (CHECKPOINT_FOLDER, KINEMA4D_CONFIG_NAME, TINY_ARM, TINY_CLIP, TINY_SCHEDULER,
                                        TINY_TRANSFORMER, TINY_VAE, VARIANTS)

TINY_LORA_RANK = 4
#: seed of the tiny text encoder's weights (its own RNG stream: the other tiny weights do not depend on it)
TEXT_ENCODER_SEED = 1234
TOKENIZER_PIECES = tuple("abcdefghijklmnopqrstuvwxyz0123456789.,") + ("▁a", "▁the", "▁robot", "▁arm", "▁")


def _write_tokenizer(folder: Path) -> int:
    """A T5TokenizerFast (sentencepiece-style Unigram, metaspace pre-tokenizer) over a small fixed
    vocabulary, built in memory (nothing is downloaded). Returns the vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(p, -2.0 - 0.01 * i) for i, p in
                                                               enumerate(TOKENIZER_PIECES)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    special = dict(eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=0, model_max_length=32)
    T5TokenizerFast(tokenizer_object=tok, **special).save_pretrained(str(folder))
    # Only keys transformers 4.x reads as well (v5 adds e.g. "extra_special_tokens": [], which 4.x
    # expects as a dict); tokenizer.json carries the model itself.
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "T5Tokenizer", "additional_special_tokens": [], **special}, indent=2))
    return len(vocab)


def _write_text_encoder(folder: Path, vocab_size: int) -> None:
    """A tiny UMT5EncoderModel (d_model = the transformer's text_dim), from its own seed."""
    from transformers import UMT5Config, UMT5EncoderModel

    d_model = TINY_TRANSFORMER["text_dim"]
    config = UMT5Config(vocab_size=vocab_size, d_model=d_model, d_kv=d_model // 2, d_ff=2 * d_model, num_layers=1,
                        num_heads=2, relative_attention_num_buckets=8, relative_attention_max_distance=16,
                        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TEXT_ENCODER_SEED)
        UMT5EncoderModel(config).save_pretrained(str(folder))


def _write_base(base: Path) -> None:
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    WanTransformer3DModel(**TINY_TRANSFORMER).save_pretrained(base / "transformer")
    AutoencoderKLWan(**TINY_VAE).save_pretrained(base / "vae")
    CLIPVisionModel(CLIPVisionConfig(**TINY_CLIP)).save_pretrained(base / "image_encoder")
    side = TINY_CLIP["image_size"]
    CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side}).save_pretrained(
        base / "image_processor")
    UniPCMultistepScheduler(**TINY_SCHEDULER).save_pretrained(base / "scheduler")
    _write_text_encoder(base / "text_encoder", _write_tokenizer(base / "tokenizer"))
    import diffusers

    index = {
        "_class_name": "WanImageToVideoPipeline", "_diffusers_version": diffusers.__version__,
        "image_encoder": ["transformers", "CLIPVisionModel"],
        "image_processor": ["transformers", "CLIPImageProcessor"],
        "scheduler": ["diffusers", "UniPCMultistepScheduler"],
        "text_encoder": ["transformers", "UMT5EncoderModel"], "tokenizer": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "WanTransformer3DModel"], "vae": ["diffusers", "AutoencoderKLWan"],
    }
    (base / "model_index.json").write_text(json.dumps(index, indent=2))


def _write_kinema4d(folder: Path, variant: str) -> None:
    from safetensors.torch import save_file

    from kinema4d_core.model.checkpoint import ADDED_FILE, LORA_FILE, LORA_PREFIX, LORA_TARGETS, added_weight_names
    from kinema4d_core.model.transformer import Kinema4DTransformer3DModel

    model = Kinema4DTransformer3DModel(**TINY_TRANSFORMER, robot_condition=variant,
                                       **{k: v for k, v in TINY_ARM.to_dict().items()})
    params = dict(model.named_parameters())
    # Random (not zero) robot branch, so that every added weight changes the output.
    added = {name: (0.2 * torch.randn_like(params[name])).contiguous() for name in sorted(added_weight_names(model))}
    lora = {}
    for i in range(len(model.blocks)):
        for attn in ("attn1", "attn2"):
            for target in LORA_TARGETS:
                linear = model.get_submodule(f"blocks.{i}.{attn}.{target}")
                key = f"{LORA_PREFIX}blocks.{i}.{attn}.{target}"
                lora[f"{key}.lora_A.weight"] = 0.2 * torch.randn(TINY_LORA_RANK, linear.in_features)
                lora[f"{key}.lora_B.weight"] = 0.2 * torch.randn(linear.out_features, TINY_LORA_RANK)
    folder.mkdir(parents=True)
    save_file(added, str(folder / ADDED_FILE))
    save_file(lora, str(folder / LORA_FILE))
    (folder / KINEMA4D_CONFIG_NAME).write_text(json.dumps({"preset": "tiny", "arm": TINY_ARM.to_dict()}, indent=2))


def make_tiny_checkpoint(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the tiny base + both Kinema4D variant folders into ``out_dir`` (all or nothing)."""
    out_dir = Path(out_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with tempfile.TemporaryDirectory(prefix="kinema4d-tiny-") as tmp:
            tmp = Path(tmp)
            _write_base(tmp / "base")
            for variant in VARIANTS:
                _write_kinema4d(tmp / CHECKPOINT_FOLDER[variant], variant)
            with StagedOutput(out_dir) as staged:
                for file in sorted(p for p in tmp.rglob("*") if p.is_file()):
                    shutil.copy2(file, staged.path(str(file.relative_to(tmp))))
    return out_dir
