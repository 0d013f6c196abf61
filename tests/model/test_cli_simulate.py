"""`kinema4d make-tiny-checkpoint` + `kinema4d simulate` end to end on CPU, and their errors."""

from __future__ import annotations

import hashlib

import imageio.v3 as iio
import numpy as np
import pytest

from kinema4d_core.cli import main
from kinema4d_core.projection import save_robot_condition

from .model_helpers import synthetic_condition


@pytest.fixture
def inputs_dir(tmp_path, condition, first_frame):
    save_robot_condition(condition, tmp_path / "robot")
    iio.imwrite(tmp_path / "first.png", first_frame)
    return tmp_path


def simulate(tmp, ckpt, out, *extra):
    return main(["simulate", "--first-frame", str(tmp / "first.png"), "--robot", str(tmp / "robot"),
                 "--backend", "kinema4d", "--base", str(ckpt / "base"), "--checkpoint", str(ckpt), "--out", str(out), "--device", "cpu",
                 "--dtype", "fp32", "--steps", "2", "--seed", "3", "--variant", "pm", "--no-points", *extra])


def digest(folder):
    with np.load(folder / "rollout.npz") as z:
        return {k: hashlib.sha256(z[k].tobytes()).hexdigest() for k in z.files}


def test_make_tiny_checkpoint_then_simulate_twice_bit_identical(inputs_dir, tmp_path):
    ckpt = tmp_path / "tiny"
    assert main(["make-tiny-checkpoint", str(ckpt)]) == 0
    assert (ckpt / "base" / "model_index.json").is_file()
    assert simulate(inputs_dir, ckpt, tmp_path / "out1") == 0
    assert simulate(inputs_dir, ckpt, tmp_path / "out2") == 0
    assert digest(tmp_path / "out1") == digest(tmp_path / "out2")
    assert (tmp_path / "out1" / "side_by_side.mp4").is_file()


def test_errors_exit_2_and_write_nothing(inputs_dir, tiny_dir, tmp_path, capsys):
    out = tmp_path / "never"
    short = synthetic_condition(n_frames=9)
    save_robot_condition(short, tmp_path / "short_robot")
    cases = {
        "--robot": ["--robot", str(tmp_path / "short_robot")],                   # wrong frame count
        "--device": ["--device", "cuda"],                                        # no CUDA here
        "base": ["--base", str(tmp_path / "missing_base")],
    }
    for expected, extra in cases.items():
        code = simulate(inputs_dir, tiny_dir, out, *extra)
        assert code == 2, expected
        assert not out.exists() or not any(out.iterdir())
    small = np.zeros((24, 48, 3), np.uint8)
    iio.imwrite(inputs_dir / "first.png", small)
    assert simulate(inputs_dir, tiny_dir, out) == 2
    err = capsys.readouterr().err
    assert "has 9 frames, the model generates 49" in err
    assert "CUDA was requested" in err
    assert "first_frame: first frame is 48x24" in err
    assert not out.exists() or not any(out.iterdir())


def test_static_scene_cli_needs_no_weights(inputs_dir, tmp_path):
    code = main(["simulate", "--first-frame", str(inputs_dir / "first.png"), "--robot", str(inputs_dir / "robot"),
                 "--out", str(tmp_path / "base_out"), "--backend", "static-scene"])
    assert code == 0
    with np.load(tmp_path / "base_out" / "rollout.npz") as z:
        assert '"baseline": true' in str(z["metadata_json"][0])


def test_unreadable_first_depth_exits_2_and_writes_nothing(inputs_dir, tmp_path, capsys):
    # np.load used to raise FileNotFoundError / ValueError out of the CLI (a traceback, not status 2)
    (tmp_path / "garbage.npy").write_bytes(b"not a numpy file")
    np.save(tmp_path / "volume.npy", np.ones((2, 3, 4), np.float32))
    out = tmp_path / "never"
    for depth in ("missing.npy", "garbage.npy", "volume.npy"):
        code = main(["simulate", "--first-frame", str(inputs_dir / "first.png"), "--robot", str(inputs_dir / "robot"),
                     "--out", str(out), "--backend", "static-scene", "--first-depth", str(tmp_path / depth)])
        assert code == 2, depth
    err = capsys.readouterr().err
    assert "missing.npy does not exist" in err
    assert "garbage.npy is not a readable .npy array" in err
    assert "expected an (H, W) numeric array, got (2, 3, 4)" in err
    assert not out.exists()


def test_simulate_offers_every_registered_backend_including_tiny(inputs_dir, tiny_dir, tmp_path):
    """The CLI reads the backend registry: kinema4d-tiny runs with its folder given as --checkpoint."""
    out = tmp_path / "tiny_out"
    assert main(["simulate", "--first-frame", str(inputs_dir / "first.png"), "--robot", str(inputs_dir / "robot"),
                 "--out", str(out), "--backend", "kinema4d-tiny", "--checkpoint", str(tiny_dir), "--steps", "1",
                 "--no-points"]) == 0
    with np.load(out / "rollout.npz") as z:
        assert '"backend": "kinema4d-tiny"' in str(z["metadata_json"][0])
