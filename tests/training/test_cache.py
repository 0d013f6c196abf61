"""Latent cache: encoded once, shards written atomically, a killed run's partial shard is not counted."""

from __future__ import annotations

import pytest
import torch

from kinema4d_core.errors import ConfigError
from kinema4d_core.model.config import TINY_ARM
from kinema4d_core.training.cache import (KEYS, CachedDataset, LatentEncoder, build_cache, fingerprint,
                                          load_raw_sample, shard_name)
from kinema4d_core.training.data import ModelGeometry, SampleSpec, build_sample

GEOMETRY = ModelGeometry(TINY_ARM.num_frames, (TINY_ARM.height, TINY_ARM.width), "rgb-pm")


class CountingEncoder:
    """The real tiny encoder, counting how many samples it encodes."""

    def __init__(self, base):
        self.inner = LatentEncoder(base, "rgb-pm")
        self.names: list[str] = []

    def encode(self, sample):
        self.names.append(sample.name)
        return self.inner.encode(sample)


def specs_for(root):
    return [SampleSpec(f"robo4d_{root.name}_{i}", "robo4d", f"{root}::{i}") for i in range(3)]


def test_cache_resumes_and_skips_complete_shards(tmp_path, tiny_preset, robo4d_root):
    specs = specs_for(robo4d_root)
    base = tiny_preset / "base"
    fp = fingerprint(str(base), "rgb-pm", GEOMETRY)
    encoders: list[CountingEncoder] = []

    def factory():
        encoders.append(CountingEncoder(base))
        return encoders[-1]

    make = lambda s: build_sample(s, GEOMETRY)  # noqa: E731
    cache = tmp_path / "cache"
    report = build_cache(specs, make, factory, cache, 1, fp, validation=[specs[-1].name], progress=False)
    assert report.written == [0, 1, 2] and encoders[0].names == [s.name for s in specs]
    first = CachedDataset(report.shards)[1]
    assert set(KEYS) <= set(first)
    assert first["latents"].shape == (16, 13, 6, 24)              # [RGB | XYZ] latent of 48 x 96 x 2
    assert first["condition"].shape == (20, 13, 6, 24)
    assert first["robot_latents"].shape == (16, 13, 6, 24) and first["robot_mask"].shape == (4, 13, 6, 24)
    assert first["image_embeds"].shape == (TINY_ARM.image_context_length, 8)
    val = load_raw_sample(cache / "validation" / f"{specs[-1].name}.npz")
    assert val.rgb.shape == (49, 48, 96, 3) and val.robot_rgb is not None

    # a complete rerun encodes nothing (the encoder is never even built)
    again = build_cache(specs, make, factory, cache, 1, fp, validation=[specs[-1].name], progress=False)
    assert again.written == [] and again.skipped == [0, 1, 2] and len(encoders) == 1

    # a run killed while writing shard 1: the shard is missing, a temporary file is left behind
    (cache / shard_name(1)).unlink()
    leftover = cache / f".{shard_name(1)}.abc123.tmp.safetensors"
    leftover.write_bytes(b"partial")
    with pytest.raises(ConfigError):          # the partial file is not a shard: nothing counts it
        CachedDataset([cache / shard_name(1)])
    resumed = build_cache(specs, make, factory, cache, 1, fp, validation=[specs[-1].name], progress=False)
    assert resumed.written == [1] and resumed.skipped == [0, 2]
    assert encoders[-1].names == [specs[1].name]                   # only the missing sample re-encoded
    assert not leftover.exists()
    redone = CachedDataset(resumed.shards)[1]
    for k in KEYS:
        assert torch.equal(redone[k], first[k]), k                 # deterministic encoding

    # another configuration pointed at the same folder is refused, naming the fix
    with pytest.raises(ConfigError, match="cache_dir"):
        build_cache(specs, make, factory, cache, 1, dict(fp, variant="pm"), progress=False)
    # the validation sample can be held out of the training set
    assert len(CachedDataset(resumed.shards, exclude=[specs[-1].name])) == 2
