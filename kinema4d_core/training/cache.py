"""Latent cache: every sample VAE + CLIP encoded once, stored as safetensors shards, resumable.

Layout of ``data.cache_dir``:
  shard_00000.safetensors ...   samples [k * shard_size, (k + 1) * shard_size) of the sample list;
                                tensors ``<i>.latents`` (16, F, h, 2w) target [RGB | XYZ],
                                ``<i>.condition`` (20, F, h, 2w) first-frame condition [mask | latent],
                                ``<i>.robot_latents`` (16, F, h, Wc), ``<i>.robot_mask`` (4, F, h, Wc),
                                ``<i>.image_embeds`` (L_img, image_dim); header metadata: sample names,
                                sample metadata and the cache fingerprint.
  validation/<name>.npz          raw validation samples (for rendered validation rollouts).

Encoding is the pipeline's own (``Kinema4DPipeline.encode_image / prepare_condition / prepare_robot /
encode_target``), so training sees exactly what sampling feeds the transformer. A shard is written
to a temporary name and renamed when complete (``io.atomic_path``): a killed run leaves no shard
that counts, and a rerun skips the shards that exist with the same fingerprint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from kinema4d_core.errors import ConfigError

SHARD_GLOB = "shard_*.safetensors"
KEYS = ("latents", "condition", "robot_latents", "robot_mask", "image_embeds")
CACHE_VERSION = 1


def shard_name(k: int) -> str:
    return f"shard_{k:05d}.safetensors"


class LatentEncoder:
    """VAE + CLIP of a base folder wrapped in a transformer-less ``Kinema4DPipeline``."""

    def __init__(self, base: Path, variant: str, device: str = "cpu"):
        from diffusers import AutoencoderKLWan
        from transformers import CLIPImageProcessor, CLIPVisionModel

        from kinema4d_core.model.checkpoint import check_base_folder
        from kinema4d_core.model.pipeline import Kinema4DPipeline

        base = check_base_folder(base)
        vae = AutoencoderKLWan.from_pretrained(str(base / "vae"), torch_dtype=torch.float32).to(device)
        clip = CLIPVisionModel.from_pretrained(str(base / "image_encoder"), dtype=torch.float32).to(device)
        proc = CLIPImageProcessor.from_pretrained(str(base / "image_processor"))
        for m in (vae, clip):
            m.eval().requires_grad_(False)
        self.pipe = Kinema4DPipeline(transformer=None, vae=vae, scheduler=None, image_encoder=clip,
                                     image_processor=proc)
        self.variant = variant
        self.base = base

    @torch.no_grad()
    def encode(self, sample: Any) -> dict[str, torch.Tensor]:
        """TrainSample -> the five cached tensors (batch dimension dropped, fp32, CPU)."""
        p = self.pipe
        t = sample.robot_mask.shape[0]
        robot_latents, robot_mask = p.prepare_robot(sample.robot_pointmap01, sample.robot_mask, sample.robot_rgb,
                                                    variant=self.variant)
        out = {"latents": p.encode_target(sample.rgb.astype(np.float32) / 255.0, sample.pointmap01),
               "condition": p.prepare_condition(sample.first_frame, t),
               "robot_latents": robot_latents, "robot_mask": robot_mask,
               "image_embeds": p.encode_image(sample.first_frame)}
        return {k: v[0].detach().float().cpu().contiguous() for k, v in out.items()}


def encoder_digest(base: str | Path) -> str:
    """sha256 over the base's VAE and image-encoder weight files (a retrained VAE in the same folder
    changes every latent)."""
    import hashlib

    h = hashlib.sha256()
    for sub in ("vae", "image_encoder"):
        for f in sorted((Path(base) / sub).glob("*.safetensors")):
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def fingerprint(base: str, variant: str, geometry: Any) -> dict[str, Any]:
    """What the cached latents depend on besides the samples themselves."""
    return {"version": CACHE_VERSION, "base": str(base), "encoders": encoder_digest(base), "variant": variant,
            "frames": int(geometry.num_frames), "size": [int(s) for s in geometry.size]}


def _read_meta(path: Path) -> dict[str, Any] | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        return {"names": json.loads(meta["names"]), "meta": json.loads(meta["meta"]),
                "fingerprint": json.loads(meta["fingerprint"])}
    except Exception:   # unreadable / foreign file: treated as missing and rewritten
        return None


def remove_leftovers(cache_dir: Path) -> int:
    """Delete temporary shard files of killed runs; returns how many."""
    n = 0
    for p in Path(cache_dir).glob(".shard_*"):
        p.unlink(missing_ok=True)
        n += 1
    return n


@dataclass
class CacheReport:
    shards: list[Path]
    written: list[int]
    skipped: list[int]


def build_cache(specs: Sequence[Any], make_sample: Callable[[Any], Any], encoder_factory: Callable[[], Any],
                cache_dir: Path, shard_size: int, fp: dict[str, Any], *, validation: Sequence[str] = (),
                progress: bool = True) -> CacheReport:
    """Encode ``specs`` (objects with ``.name``) into shards of ``shard_size``; existing complete shards
    with the same names and fingerprint are skipped. ``make_sample(spec) -> TrainSample``;
    ``encoder_factory()`` is called only when something must be encoded. Samples whose name is in
    ``validation`` are also stored raw under validation/. ConfigError when a shard holds other samples
    or another fingerprint (a different configuration shares the folder)."""
    from safetensors.torch import save_file

    from kinema4d_core.io import atomic_path, save_npz

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers(cache_dir)
    encoder = None
    written, skipped, shards = [], [], []
    n_shards = (len(specs) + shard_size - 1) // shard_size
    for k in range(n_shards):
        chunk = list(specs[k * shard_size:(k + 1) * shard_size])
        path = cache_dir / shard_name(k)
        shards.append(path)
        names = [s.name for s in chunk]
        val_missing = [s for s in chunk if s.name in validation and not (cache_dir / "validation" /
                                                                          f"{s.name}.npz").is_file()]
        if path.is_file():
            meta = _read_meta(path)
            if meta is not None and (meta["names"] != names or meta["fingerprint"] != fp):
                raise ConfigError(f"{path} holds other samples or latents of another configuration "
                                  f"({meta['fingerprint']} vs {fp})", field="data.cache_dir",
                                  fix="use a new data.cache_dir for this configuration, or delete the old cache")
            if meta is not None:
                for spec in val_missing:   # complete shard; only its raw validation copy is missing
                    save_npz(cache_dir / "validation" / f"{spec.name}.npz", _raw_arrays(make_sample(spec)))
                skipped.append(k)
                continue
        tensors: dict[str, torch.Tensor] = {}
        metas = []
        for i, spec in enumerate(chunk):
            sample = make_sample(spec)
            if spec.name in validation:
                save_npz(cache_dir / "validation" / f"{spec.name}.npz", _raw_arrays(sample))
            encoder = encoder or encoder_factory()
            for key, value in encoder.encode(sample).items():
                tensors[f"{i}.{key}"] = value
            metas.append(sample.meta)
            if progress:
                print(f"[cache] shard {k + 1}/{n_shards}: encoded {spec.name}", flush=True)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"names": json.dumps(names), "meta": json.dumps(metas),
                                                   "fingerprint": json.dumps(fp)})
        written.append(k)
    return CacheReport(shards, written, skipped)


def _raw_arrays(sample: Any) -> dict[str, np.ndarray]:
    out = {"first_frame": sample.first_frame, "robot_pointmap01": sample.robot_pointmap01,
           "robot_mask": sample.robot_mask, "rgb": sample.rgb, "pointmap01": sample.pointmap01,
           "meta": np.array(json.dumps(sample.meta))}
    if sample.robot_rgb is not None:
        out["robot_rgb"] = sample.robot_rgb
    return out


def load_raw_sample(path: Path) -> Any:
    """A validation sample stored by :func:`build_cache`."""
    from kinema4d_core.training.data import TrainSample

    with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    return TrainSample(name=Path(path).stem, first_frame=d["first_frame"], robot_pointmap01=d["robot_pointmap01"],
                       robot_mask=d["robot_mask"], robot_rgb=d.get("robot_rgb"), rgb=d["rgb"],
                       pointmap01=d["pointmap01"], meta=json.loads(str(d["meta"])))


class CachedDataset:
    """Random access to cached samples: ``ds[i]`` -> dict of the five tensors (+ ``name``)."""

    def __init__(self, shards: Sequence[Path], exclude: Sequence[str] = ()):
        self.index: list[tuple[Path, int, str]] = []
        for path in shards:
            meta = _read_meta(Path(path))
            if meta is None:
                raise ConfigError(f"{path} is not a readable cache shard", field="data.cache_dir",
                                  fix="delete it; the next run re-encodes it")
            self.index += [(Path(path), i, n) for i, n in enumerate(meta["names"]) if n not in exclude]
        if not self.index:
            raise ConfigError("no training samples left after holding out the validation samples",
                              field="data.validation_episodes", fix="add episodes or lower data.validation_episodes")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from safetensors import safe_open

        path, j, name = self.index[i]
        with safe_open(str(path), framework="pt") as fh:
            item: dict[str, Any] = {k: fh.get_tensor(f"{j}.{k}") for k in KEYS}
        item["name"] = name
        return item
