"""Training config: YAML + --set overrides, and clear errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from kinema4d_core.errors import ConfigError
from kinema4d_core.training.config import load_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "training" / "tiny_cpu.yaml"


def test_example_config_loads_with_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(EXAMPLE, ["optim.lr=2e-4", "train.steps=7", "data.sim.tasks=[push]", "optim.betas=[0.8, 0.9]",
                                "train.output_dir=out"])
    assert cfg.optim.lr == pytest.approx(2e-4)
    assert cfg.train.steps == 7
    assert cfg.data.sim.tasks == ("push",)
    assert cfg.optim.betas == (0.8, 0.9)
    assert cfg.train.output_dir == tmp_path / "out"            # relative to the working folder
    assert cfg.data.cache_dir == tmp_path / "out" / "cache"     # defaults under the output folder
    assert cfg.model.mode == "scratch" and cfg.model.base == "tiny"
    with pytest.raises(Exception):
        cfg.optim.lr = 1.0                                       # frozen


@pytest.mark.parametrize("override, field, words", [
    ("optim.lrr=1", "optim", "optim.lrr"),
    ("optim.lr=abc", "optim.lr", "expected a number"),
    ("optim.lr=-1", "optim.lr", "positive"),
    ("train.mixed_precision=fp8", "train.mixed_precision", "bf16"),
    ("train.steps=2.5", "train.steps", "whole number"),
    ("data.sim.tasks=[fly]", "data.sim.tasks", "push"),
    ("data.sim.episodes_per_task=0", "data", "no training data"),
    ("model.mode=finetune", "model.transformer", None),      # ok by itself: no error expected
    ("optim.betas=[0.9]", "optim.betas", "2 values"),
    ("nokey", "--set", "key=value"),
    ("optim=3", "optim", "mapping"),
])
def test_bad_values_name_the_key(override, field, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if words is None:
        load_config(EXAMPLE, [override])
        with pytest.raises(ConfigError, match="model.transformer"):
            load_config(EXAMPLE, [override, "model.transformer={num_layers: 1}"])
        return
    with pytest.raises(ConfigError) as err:
        load_config(EXAMPLE, [override])
    assert err.value.field == field
    assert words in str(err.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="sections"):
        load_config(bad)
