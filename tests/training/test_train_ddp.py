"""Multi-process training with the same code: two CPU processes under DDP (gloo, loopback only,
started by scripts/train_cpu_ddp.sh) train exactly what one process with gradient accumulation 2
trains. Real processes, a real process group, real gradient all-reduce."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from kinema4d_core.model.checkpoint import ADDED_FILE
from kinema4d_core.training.trainer import train

from .conftest import tiny_config

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow   # ~30 s on 2 cores: two training processes + one in-process reference run
def test_two_ddp_processes_train_what_one_process_with_accumulation_2_trains(tmp_path, tiny_preset, robo4d_root):
    # model.base=tiny: each run builds the seeded tiny preset in its output folder (in the DDP run,
    # the main process builds it while the other rank waits) and caches its own latents
    common = ("train.steps=3", "train.log_every=1", "train.checkpoint_every=3", "optim.lr=3e-3", "model.base=tiny")
    ddp_cfg = tiny_config(tmp_path / "ddp", tiny_preset, robo4d_root, tmp_path / "ddp_cache", *common)
    config_file = tmp_path / "ddp.json"
    config_file.write_text(json.dumps(ddp_cfg.to_dict(), default=str))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASTER_", "WORLD_", "RANK", "LOCAL_"))}
    env.update(PORT=str(_free_loopback_port()), THREADS="1", PY=sys.executable)
    proc = subprocess.run([str(REPO / "scripts" / "train_cpu_ddp.sh"), "2", str(config_file)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "2 process(es)" in out
    assert out.count("[train] step 3/3") == 1                    # one log, from the main process

    ref_cfg = tiny_config(tmp_path / "one", tiny_preset, robo4d_root, tmp_path / "one_cache", *common,
                          "train.gradient_accumulation_steps=2")
    ref = train(ref_cfg, log=lambda _: None)
    ddp_losses = [float(line.split(" loss ")[1].split()[0]) for line in out.splitlines()
                  if line.startswith("[train] step ")]
    assert ddp_losses == pytest.approx([ref.losses[k] for k in (1, 2, 3)], rel=1e-5)
    for part in (f"kinema4d_ckpt/{ADDED_FILE}", "base/transformer/diffusion_pytorch_model.safetensors"):
        got, want = load_file(str(ddp_cfg.export_dir / part)), load_file(str(ref_cfg.export_dir / part))
        assert got.keys() == want.keys() and want, part
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=f"{part}: {name}")
    # and the weights did move: the averaged gradients were applied
    start = tiny_config(tmp_path / "one", tiny_preset, robo4d_root, tmp_path / "one_cache", *common)
    from kinema4d_core.training.model_setup import build_model

    before = dict(build_model(start).transformer.named_parameters())
    moved = [n for n in want if n in before and not torch.allclose(before[n].detach(), want[n])]
    assert len(moved) > len(want) // 2, (len(moved), len(want))
