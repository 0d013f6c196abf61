"""The shipped mini model (models/kinema4d-mini): a real trained checkpoint in the released layout,
labelled as trained on the sim world only, that learned the sim world's appearance. It is not the
default backend (its geometry is worse than the baseline's; MODEL_CARD.md has the figures)."""

from __future__ import annotations

import json

import pytest

from kinema4d_core import evaluation as V
from kinema4d_core.backends import mini_model_dir
from kinema4d_core.registry import DEFAULT_BACKEND


def test_the_shipped_mini_model_is_an_export_in_the_released_layout_with_a_card():
    folder = mini_model_dir()
    for name in ("kinema4d_ckpt/pytorch_lora_weights.safetensors", "kinema4d_ckpt/added_weights.safetensors",
                 "base/vae/diffusion_pytorch_model.safetensors", "training_info.json", "MODEL_CARD.md"):
        assert (folder / name).is_file(), name
    info = json.loads((folder / "training_info.json").read_text())
    assert info["mode"] == "scratch" and info["step"] == info["config"]["train"]["steps"] > 0
    assert "Trained only on the kinema4d MuJoCo sim world" in (folder / "MODEL_CARD.md").read_text()
    assert DEFAULT_BACKEND == "static-scene"     # until the mini model beats it on the object


@pytest.mark.slow
def test_on_a_held_out_push_the_mini_model_renders_the_world_better_than_the_baseline(tmp_path):
    """Seed 1001 was never trained on (training used 0..23). The baseline repeats the first frame
    with the robot pasted in; the mini model generates the frames. Measured: 20.9 vs 18.3 dB."""
    cfg = V.BenchmarkConfig(n=1, tasks=("push",), backends=(("static-scene", ()), ("kinema4d-mini", ())),
                            with_lpips=False, policies=("scripted",), bootstrap=0, first_seed=1001)
    cmp = V.run_backend_comparison(tmp_path / "bench", cfg, progress=False)
    assert cmp["size"] == [64, 96] and cmp["sim_episodes"]["ok"] == 1
    rows = {r["backend"]: r for r in cmp["rows"] if r["task"] == "all"}
    base, mini = rows["static-scene"], rows["kinema4d-mini"]
    assert mini["ok"] == 1 and mini["psnr"] > base["psnr"] + 1.0, (mini["psnr"], base["psnr"])
    ev = json.loads((tmp_path / "bench" / "backends" / "kinema4d-mini" / "evaluation.json").read_text())
    (episode,) = ev["episodes"]
    run = next((tmp_path / "bench" / "backends" / "kinema4d-mini").glob("push_scripted_1001*/rollout.npz"))
    import numpy as np

    with np.load(run) as z:
        meta = json.loads(str(z["metadata_json"][0]))
        assert z["rgb"].shape == (49, 64, 96, 3) and np.isfinite(z["pointmap"]).all()
    assert meta["backend"] == "kinema4d-mini" and meta["baseline"] is False and "sim world" in meta["scope"]
    assert episode["video"]["psnr"] == pytest.approx(mini["psnr"])
