"""Strict checkpoint loading through the same path as the released weights (tiny files)."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from kinema4d_core.errors import CheckpointError
from kinema4d_core.model.checkpoint import ADDED_FILE, LORA_FILE, load_transformer
from kinema4d_core.model.config import LORA_SCALE

from .model_helpers import inputs


@pytest.fixture
def ckpt_copy(tiny_dir, tmp_path):
    """A writable copy of the tiny rgb-pm checkpoint folder; returns (base, folder)."""
    folder = tmp_path / "kinema4d_ckpt"
    shutil.copytree(tiny_dir / "kinema4d_ckpt", folder)
    return tiny_dir / "base", folder


def forward(model, variant="rgb-pm"):
    with torch.no_grad():
        return model(**inputs(variant)).sample


def test_fused_lora_equals_unfused_peft_adapter_and_changes_the_output(tiny_dir):
    base = tiny_dir / "base"
    fused = load_transformer(base, tiny_dir, variant="rgb-pm", dtype=torch.float32)
    unfused = load_transformer(base, tiny_dir, variant="rgb-pm", dtype=torch.float32, fuse=False)
    without = load_transformer(base, tiny_dir, variant="rgb-pm", dtype=torch.float32, lora_scale=0.0)
    assert any("lora_A" in n for n, _ in unfused.named_parameters())          # peft adapter really injected
    torch.testing.assert_close(forward(fused), forward(unfused), rtol=1e-4, atol=1e-5)
    assert (forward(fused) - forward(without)).abs().max() > 1e-3             # the LoRA matters at scale 0.5


def test_fuse_applies_the_released_scale(tiny_dir):
    model = load_transformer(tiny_dir / "base", tiny_dir, variant="pm", dtype=torch.float32)
    plain = load_transformer(tiny_dir / "base", tiny_dir, variant="pm", dtype=torch.float32, lora_scale=0.0)
    lora = load_file(str(tiny_dir / "kinema4d_pmcond_ckpt" / LORA_FILE))
    a = lora["transformer.blocks.1.attn2.to_k.lora_A.weight"]
    b = lora["transformer.blocks.1.attn2.to_k.lora_B.weight"]
    delta = model.blocks[1].attn2.to_k.weight - plain.blocks[1].attn2.to_k.weight
    torch.testing.assert_close(delta, LORA_SCALE * b @ a, rtol=1e-5, atol=1e-6)


def _rewrite(path, change):
    state = load_file(str(path))
    change(state)
    save_file(state, str(path))


def test_missing_lora_key_is_named(ckpt_copy):
    base, folder = ckpt_copy
    _rewrite(folder / LORA_FILE, lambda s: s.pop("transformer.blocks.1.attn1.to_v.lora_B.weight"))
    with pytest.raises(CheckpointError, match=r"missing keys: transformer\.blocks\.1\.attn1\.to_v\.lora_B\.weight"):
        load_transformer(base, folder, variant="rgb-pm", dtype=torch.float32)


def test_wrong_lora_prefix_is_refused_not_silently_ignored(ckpt_copy):
    base, folder = ckpt_copy
    _rewrite(folder / LORA_FILE, lambda s: s.update({k[len("transformer."):]: s.pop(k) for k in list(s)}))
    with pytest.raises(CheckpointError) as err:
        load_transformer(base, folder, variant="rgb-pm", dtype=torch.float32)
    assert "blocks.0.attn1.to_q.lora_A.weight (keys must start with 'transformer.')" in str(err.value)


def test_unexpected_added_key_is_named(ckpt_copy):
    base, folder = ckpt_copy
    _rewrite(folder / ADDED_FILE, lambda s: s.update(arm_extra_gain=torch.ones(3)))
    with pytest.raises(CheckpointError, match=r"unexpected keys: arm_extra_gain"):
        load_transformer(base, folder, variant="rgb-pm", dtype=torch.float32)


def test_misshaped_added_key_is_named(ckpt_copy):
    base, folder = ckpt_copy
    _rewrite(folder / ADDED_FILE, lambda s: s.update(arm_pos_emb=torch.zeros(1, 16, 13, 3, 4)))
    with pytest.raises(CheckpointError, match=r"mis-shaped keys: arm_pos_emb \(file \(1, 16, 13, 3, 4\)"):
        load_transformer(base, folder, variant="rgb-pm", dtype=torch.float32)


def test_variant_mismatch_reports_the_missing_domain_embedding(tiny_dir):
    with pytest.raises(CheckpointError, match=r"missing keys: arm_domain_emb"):
        load_transformer(tiny_dir / "base", tiny_dir / "kinema4d_pmcond_ckpt", variant="rgb-pm", dtype=torch.float32)


def test_missing_folders_and_files_are_clear(tiny_dir, tmp_path):
    with pytest.raises(CheckpointError, match="base: folder .* does not exist"):
        load_transformer(tmp_path / "nope", tiny_dir, variant="pm")
    empty = tmp_path / "empty_ckpt"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="lacks .*pytorch_lora_weights.safetensors"):
        load_transformer(tiny_dir / "base", empty, variant="pm")


def test_a_kinema4d_config_that_is_not_an_object_is_a_checkpoint_error(tmp_path):
    # a JSON list used to raise AttributeError ('list' object has no attribute 'get')
    from kinema4d_core.model.checkpoint import read_arm_config
    from kinema4d_core.model.config import KINEMA4D_CONFIG_NAME

    (tmp_path / KINEMA4D_CONFIG_NAME).write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="holds a list"):
        read_arm_config(tmp_path)
    (tmp_path / KINEMA4D_CONFIG_NAME).write_text('{"arm": 3}')
    with pytest.raises(CheckpointError, match="holds a int"):
        read_arm_config(tmp_path)
