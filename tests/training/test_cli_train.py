"""`kinema4d train`: help, --print-config with overrides, clear errors (exit 2, nothing written)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kinema4d_core.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "training" / "tiny_cpu.yaml"


def test_help_lists_modes_overrides_and_accelerate():
    out = subprocess.run([sys.executable, "-m", "kinema4d_core.cli", "train", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for words in ("--set", "--resume", "finetune", "scratch", "accelerate launch", "to_q/to_k/to_v/to_out.0",
                  "pytorch_lora_weights.safetensors"):
        assert words in out, words


def test_print_config_and_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(EXAMPLE), "--set", "train.steps=5", "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["train"]["steps"] == 5 and cfg["model"]["mode"] == "scratch"
    assert main(["train", str(EXAMPLE), "--set", "optim.lr=-1"]) == 2
    err = capsys.readouterr().err
    assert "optim.lr" in err and "Fix:" in err
    assert main(["train", str(EXAMPLE), "--resume"]) == 2                 # nothing to resume
    assert "--resume" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
