"""Backends and guidance: faithful formula, cancel, static-scene baseline, rollout I/O."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kinema4d_core.backends import Cancelled, GenerationRequest, StaticSceneBackend, make_backend
from kinema4d_core.errors import ConfigError, InputError
from kinema4d_core.rollout import load_rollout, read_ply, save_rollout


@pytest.fixture(scope="module")
def tiny_pipe(tiny_dir):
    backend = make_backend("kinema4d-tiny", checkpoint_dir=tiny_dir, variant="rgb-pm")
    return backend, backend.load()


def test_faithful_guidance_is_f1_plus_g_minus_1_times_f1_minus_f2(tiny_pipe):
    _, pipe = tiny_pipe
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 16, 13, 6, 24, generator=g)
    condition = torch.randn(1, 20, 13, 6, 24, generator=g)
    image = torch.randn(1, 17, 8, generator=g)
    robot = torch.randn(1, 16, 13, 6, 24, generator=g)
    mask = (torch.rand(1, 4, 13, 6, 24, generator=g) > 0.5).float()
    t = torch.tensor(700.0)
    with torch.no_grad():
        batched = pipe.predict(latents, condition, t, image, robot, mask, 5.0, "faithful", batch_passes=True)
        serial = pipe.predict(latents, condition, t, image, robot, mask, 5.0, "faithful", batch_passes=False)
        single = pipe.predict(latents, condition, t, image, robot, mask, 5.0, "single", batch_passes=True)
        x = torch.cat([latents, condition], 1)
        args = dict(encoder_hidden_states_image=image, robot_latents=robot, robot_mask=mask, return_dict=False)
        f1 = pipe.transformer(x, t.expand(1), robot_cond_scale=1.0, **args)[0]
        f2 = pipe.transformer(x, t.expand(1), robot_cond_scale=2.0, **args)[0]
    torch.testing.assert_close(batched, f1 + 4.0 * (f1 - f2), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(serial, batched, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(single, f1, rtol=1e-5, atol=1e-6)
    assert (f1 - f2).abs().max() > 1e-4          # the 2x pass really differs


def test_cancel_stops_between_denoising_steps(tiny_pipe, condition, first_frame):
    backend, _ = tiny_pipe
    seen = []
    with pytest.raises(Cancelled):
        backend.generate(GenerationRequest(first_frame, condition, steps=5),
                         progress=lambda stage, step, total: seen.append((stage, step, total)),
                         should_cancel=lambda: ("denoise", 2, 5) in seen)
    assert seen[-1] == ("denoise", 2, 5)


def test_tiny_generation_writes_a_complete_rollout(tiny_pipe, condition, first_frame, tmp_path):
    """(Bit-identical repeat runs are checked end to end in test_cli_simulate.)"""
    backend, _ = tiny_pipe
    a = backend.generate(GenerationRequest(first_frame, condition, steps=2, seed=7))
    assert a.rgb.shape == (49, 48, 96, 3) and a.pointmap.dtype == np.float32
    assert a.metric_fit_residual.shape == (49,)
    assert a.metadata["backend"] == "kinema4d-tiny" and a.metadata["baseline"] is False
    assert "random, untrained" in a.metadata["weights"]
    save_rollout(a, tmp_path / "r")
    back = load_rollout(tmp_path / "r")
    assert np.array_equal(back.pointmap, a.pointmap) and back.metadata == a.metadata
    for name in ("rgb.mp4", "pointmap.mp4", "side_by_side.mp4", "points/frame_048.ply"):
        assert (tmp_path / "r" / name).is_file()


def test_wrong_size_is_refused_before_loading(tiny_dir, first_frame):
    from .model_helpers import synthetic_condition

    backend = make_backend("kinema4d-tiny", checkpoint_dir=tiny_dir, variant="pm")
    with pytest.raises(InputError, match="robot: has 9 frames, the model generates 49"):
        backend.generate(GenerationRequest(first_frame, synthetic_condition(n_frames=9)))
    assert backend._pipe is None


def test_static_scene_is_a_labelled_baseline_with_z_buffered_robot(condition, first_frame, tmp_path):
    depth = np.full(first_frame.shape[:2], 1.1, np.float32)      # a wall at 1.1 m
    rollout = StaticSceneBackend().generate(GenerationRequest(first_frame, condition, first_depth=depth))
    assert rollout.metadata["backend"] == "static-scene" and rollout.metadata["baseline"] is True
    assert "object motion" in rollout.metadata["not_modelled"]
    # no metric fit is performed: the residual says "not fitted", never a perfect 0
    assert np.isnan(rollout.metric_fit_residual).all() and "not fitted" in rollout.metadata["metric"]
    m = condition.mask
    assert np.array_equal(rollout.rgb[~m], np.broadcast_to(first_frame, m.shape + (3,))[~m])  # scene never moves
    assert np.array_equal(rollout.rgb[m], condition.rgb[m])
    z = rollout.pointmap[..., 2]
    robot_z = condition.pointmap[..., 2]
    assert np.allclose(z[m & (robot_z < 1.1)], robot_z[m & (robot_z < 1.1)])   # robot nearer: robot wins
    assert np.allclose(z[m & (robot_z > 1.1)], 1.1)                            # wall nearer: wall wins
    assert np.allclose(z[~m], 1.1)
    save_rollout(rollout, tmp_path / "s", points=True)
    xyz, rgb = read_ply(tmp_path / "s" / "points" / "frame_000.ply")
    assert xyz.shape == (first_frame.shape[0] * first_frame.shape[1], 3) and rgb.dtype == np.uint8


def test_make_backend_rejects_unknown_names_and_missing_paths():
    with pytest.raises(ConfigError, match="unknown backend"):
        make_backend("kinema5d")
    with pytest.raises(ConfigError, match="needs \\['base', 'checkpoint'\\]"):
        make_backend("kinema4d")
