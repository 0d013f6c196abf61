"""Train (or adapt) the Wan VAE on the training set's own frames, before the latents are cached.

The released Kinema4D uses the Wan2.1 VAE as is. A model trained from scratch at a small size (the
mini model) has no such VAE: the tiny preset's is random, so its latents would carry little of the
image. ``train_vae`` fits an ``AutoencoderKLWan`` (the same class and folder layout, so every loader
reads it unchanged) to clips of the two videos the pipeline encodes:
  - the target [RGB | pointmap] video, width-concatenated as ``Kinema4DPipeline.encode_target`` does,
  - the robot condition [robot RGB | robot pointmap] (encoded one modality at a time by
    ``prepare_robot``; the VAE is convolutional, so a side-by-side pair teaches the same thing).
Loss per clip: L1(reconstruction, input) + kl_weight * KL(posterior || N(0, I)), inputs in [-1, 1];
the L1 optionally weighted towards detail (``vae.detail_weight``, see ``detail_weights``).
The written VAE config carries ``latents_mean`` / ``latents_std`` measured on encoded clips, so the
pipeline's latent normalization gives the transformer unit-scale latents, as Wan's statistics do.

Output: ``out_base`` = a copy of the base folder with ``vae/`` replaced, plus ``vae_training.json``
(steps, losses, fingerprint). Written with ``io.StagedOutput`` (all or nothing); a rerun with the
same fingerprint reuses it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

VAE_INFO = "vae_training.json"


def vae_fingerprint(cfg: Any, base: Path, names: list[str]) -> dict[str, Any]:
    """What a trained VAE depends on: its config section, the source base folder, the samples, the seed."""
    return {"vae": cfg.to_dict()["vae"], "base": str(base), "samples": list(names), "seed": int(cfg.train.seed)}


def clip_videos(samples: Iterable[Any]) -> tuple[list[np.ndarray], list[str]]:
    """TrainSamples -> float16 videos (T, H, 2W, 3) in [-1, 1]: per sample the target [RGB | pointmap]
    and the robot [RGB | pointmap] (robot RGB is black when the variant has none)."""
    videos, names = [], []
    for s in samples:
        rgb = s.rgb.astype(np.float32) / 255.0
        robot_rgb = (np.zeros_like(rgb) if s.robot_rgb is None else s.robot_rgb.astype(np.float32) / 255.0)
        for pair in ((rgb, s.pointmap01), (robot_rgb, s.robot_pointmap01)):
            videos.append((np.concatenate(pair, axis=2) * 2.0 - 1.0).astype(np.float16))
        names.append(s.name)
    return videos, names


def draw_clips(videos: list[np.ndarray], batch: int, frames: int, generator: torch.Generator,
               crop: tuple[int, int] | None = None) -> torch.Tensor:
    """(B, 3, frames, H, W) float32: ``batch`` clips at random videos and start frames; with ``crop``
    (h, w) a random h x w window of each (the VAE is convolutional: crops cost less per step and
    give more varied batches)."""
    out = []
    for _ in range(batch):
        v = videos[int(torch.randint(len(videos), (1,), generator=generator))]
        t0 = int(torch.randint(len(v) - frames + 1, (1,), generator=generator))
        clip = v[t0:t0 + frames]
        if crop is not None:
            h, w = min(crop[0], clip.shape[1]), min(crop[1], clip.shape[2])
            y0 = int(torch.randint(clip.shape[1] - h + 1, (1,), generator=generator))
            x0 = int(torch.randint(clip.shape[2] - w + 1, (1,), generator=generator))
            clip = clip[:, y0:y0 + h, x0:x0 + w]
        out.append(torch.from_numpy(clip.astype(np.float32)).permute(3, 0, 1, 2))
    return torch.stack(out)


def make_vae(cfg: Any, base: Path) -> Any:
    """The VAE to train: a fresh one of ``vae.base_dim`` / ``vae.dim_mult`` (z_dim of the base's), or the
    base's own weights (``vae.base_dim: null``)."""
    from diffusers import AutoencoderKLWan

    src = AutoencoderKLWan.load_config(str(base / "vae"))
    if cfg.vae.base_dim is None:
        vae = AutoencoderKLWan.from_pretrained(str(base / "vae"), torch_dtype=torch.float32)
    else:
        torch.manual_seed(cfg.train.seed)
        vae = AutoencoderKLWan(base_dim=cfg.vae.base_dim, z_dim=int(src["z_dim"]),
                               dim_mult=list(cfg.vae.dim_mult), num_res_blocks=1,
                               temperal_downsample=[False, True, True])
    if not cfg.vae.mid_attention:
        disable_mid_attention(vae)
    return vae


def disable_mid_attention(vae: Any) -> None:
    """Zero and freeze the output projection of every mid-block attention of ``vae`` (encoder and
    decoder): each block then returns its input (``x + proj(attn(x))`` with proj = 0), so the VAE
    is fully convolutional and crop training carries over to whole frames."""
    for part in (vae.encoder, vae.decoder):
        for block in part.mid_block.attentions:
            torch.nn.init.zeros_(block.proj.weight)
            torch.nn.init.zeros_(block.proj.bias)
            block.proj.requires_grad_(False)


@torch.no_grad()
def latent_statistics(vae: Any, videos: list[np.ndarray], n_clips: int, frames: int, seed: int) -> tuple[list, list]:
    """Per-channel mean and std of the posterior mode over ``n_clips`` clips (the pipeline's
    ``latents_mean`` / ``latents_std``)."""
    gen = torch.Generator().manual_seed(seed)
    zs = []
    for _ in range(n_clips):
        z = vae.encode(draw_clips(videos, 1, frames, gen)).latent_dist.mode()       # (1, C, F, h, w)
        zs.append(z.permute(1, 0, 2, 3, 4).reshape(z.shape[1], -1))
    z = torch.cat(zs, dim=1)
    std = z.std(dim=1).clamp_min(1e-3)
    return z.mean(dim=1).tolist(), std.tolist()


def decode_unclamped(vae: Any, z: torch.Tensor) -> torch.Tensor:
    """``vae.decode(z)`` before its final clamp to [-1, 1] (B, 3, T, H, W).

    ``AutoencoderKLWan.decode`` clamps its output, and a clamp passes no gradient where it
    saturates: a decoder that overshoots early in training would stop learning there (it does:
    whole images stuck at -1 / 1). The decoder runs once per latent frame; a forward hook
    collects those per-frame outputs, which concatenated along time are the unclamped video."""
    chunks: list[torch.Tensor] = []
    handle = vae.decoder.register_forward_hook(lambda _m, _i, out: chunks.append(out))
    try:
        vae.decode(z)
    finally:
        handle.remove()
    return torch.cat(chunks, dim=2)


def detail_weights(x: torch.Tensor, strength: float) -> torch.Tensor:
    """(B, 1, T, H, W) per-pixel L1 weights 1 + strength * d / mean(d), d = the channel sum of
    |x - its 5 x 5 box mean| (edges and small objects weigh more); all ones for strength 0."""
    if strength == 0:
        return torch.ones_like(x[:, :1])
    b, c, t, h, w = x.shape
    frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    local = torch.nn.functional.avg_pool2d(frames, 5, stride=1, padding=2, count_include_pad=False)
    d = (frames - local).abs().sum(dim=1, keepdim=True).reshape(b, t, 1, h, w).permute(0, 2, 1, 3, 4)
    return 1.0 + strength * d / d.mean(dim=(2, 3, 4), keepdim=True).clamp_min(1e-6)


@torch.no_grad()
def whole_frame_psnr(vae: Any, videos: list[np.ndarray], n_clips: int, frames: int, seed: int) -> dict[str, float]:
    """Mean reconstruction PSNR (dB) of the left (RGB) and right (pointmap) halves of ``n_clips``
    whole-frame clips, the way the pipeline encodes them (posterior mode, clamped decode)."""
    gen = torch.Generator().manual_seed(seed)
    left, right = [], []
    for _ in range(n_clips):
        x = draw_clips(videos, 1, frames, gen)
        rec = vae.decode(vae.encode(x).latent_dist.mode()).sample
        half = x.shape[-1] // 2
        left.append(psnr01(rec[..., :half], x[..., :half]))
        right.append(psnr01(rec[..., half:], x[..., half:]))
    return {"left_db": float(np.mean(left)), "right_db": float(np.mean(right))}


def psnr01(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) of two tensors in [-1, 1], measured on [0, 1]."""
    mse = float(((a - b) / 2).pow(2).mean())
    return float("inf") if mse == 0 else 10.0 * float(np.log10(1.0 / mse))


def vae_lr_factor(step: int, steps: int, single_frame_steps: int) -> float:
    """LR multiplier at ``step``: each phase (the first ``single_frame_steps``, then the rest) warms
    up linearly over min(50, a tenth of it) steps, then decays on a cosine to 0.1."""
    start, length = (0, single_frame_steps) if step < single_frame_steps else (single_frame_steps,
                                                                                steps - single_frame_steps)
    k = step - start
    warmup = max(1, min(50, length // 10))
    return min(1.0, (k + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(1.0, k / max(1, length)))))


def train_vae(cfg: Any, base: Path, samples: Iterable[Any], out_base: Path, *,
              log: Callable[[str], None] = print) -> Path:
    """Train the VAE as configured on ``samples`` (TrainSamples, the training split) and write
    ``out_base`` (see module doc). Returns ``out_base``; reused when its fingerprint matches."""
    from kinema4d_core.io import StagedOutput
    from kinema4d_core.training.export import stage_base_copy
    from kinema4d_core.training.trainer import step_seed

    v = cfg.vae
    videos, names = clip_videos(samples)
    fp = vae_fingerprint(cfg, base, names)
    info_path = out_base / VAE_INFO
    if info_path.is_file():
        try:
            done = json.loads(info_path.read_text()).get("fingerprint")
        except (OSError, ValueError):
            done = None
        if done == fp:
            log(f"[vae] reusing the trained VAE in {out_base}")
            return out_base
        log(f"[vae] {out_base} holds a VAE of another configuration or data: training anew")
    if any(len(x) < v.clip_frames for x in videos):
        from kinema4d_core.errors import ConfigError

        raise ConfigError(f"clips of {v.clip_frames} frames need videos at least that long", field="vae.clip_frames",
                          fix="lower vae.clip_frames (1 + 4k)")
    t0 = time.monotonic()
    vae = make_vae(cfg, base)
    vae.train()
    trainable = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=v.lr, betas=(0.9, 0.99), weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: vae_lr_factor(k, v.steps, v.single_frame_steps))
    n_params = sum(p.numel() for p in vae.parameters())
    log(f"[vae] training a {n_params:,}-parameter AutoencoderKLWan for {v.steps} steps on {len(videos)} videos "
        f"({len(names)} samples), clips of {v.clip_frames} frames"
        + (f" after {v.single_frame_steps} single-frame steps" if v.single_frame_steps else ""))
    losses: dict[int, float] = {}
    last = time.monotonic()
    for step in range(v.steps):
        gen = torch.Generator().manual_seed(step_seed(cfg.train.seed, step, 11))
        single = step < v.single_frame_steps                          # spatial layers first
        x = draw_clips(videos, v.batch_size if single else (v.clip_batch_size or v.batch_size),
                       1 if single else v.clip_frames, gen, v.crop)
        post = vae.encode(x).latent_dist
        torch.manual_seed(step_seed(cfg.train.seed, step, 12) % (2 ** 63))
        rec = decode_unclamped(vae, post.sample() if v.sample_posterior else post.mode())
        recon = (detail_weights(x, v.detail_weight) * (rec - x).abs()).mean()
        loss = recon + v.kl_weight * post.kl().mean()
        if not torch.isfinite(loss):
            from kinema4d_core.errors import ConfigError

            raise ConfigError(f"VAE loss became {float(loss)} at step {step}", field="vae.lr", fix="lower vae.lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        sched.step()
        losses[step + 1] = recon.item()
        if v.log_every and ((step + 1) % v.log_every == 0 or step + 1 == v.steps):
            now = time.monotonic()
            half = x.shape[-1] // 2
            log(f"[vae] step {step + 1}/{v.steps} L1 {losses[step + 1]:.4f} PSNR rgb "
                f"{psnr01(rec[..., :half].detach(), x[..., :half]):.1f} dB, pointmap "
                f"{psnr01(rec[..., half:].detach(), x[..., half:]):.1f} dB ({now - last:.1f} s)")
            last = now
    vae.eval()
    mean, std = latent_statistics(vae, videos, v.stats_clips, v.clip_frames, cfg.train.seed)
    # at least 9 frames: a second 4-frame chunk after the first, as in every 49-frame video (a VAE
    # trained on 5-frame clips only has never decoded one; measured: 24 dB on 5 frames, 18 on 9)
    probe = min(max(9, v.clip_frames), min(len(x) for x in videos))
    quality = whole_frame_psnr(vae, videos, min(8, v.stats_clips), probe, cfg.train.seed + 1)
    log(f"[vae] whole-frame reconstruction ({probe}-frame clips): {quality['left_db']:.1f} dB (RGB halves), "
        f"{quality['right_db']:.1f} dB (pointmap halves)")
    vae.register_to_config(latents_mean=mean, latents_std=std)
    with StagedOutput(out_base) as st:
        stage_base_copy(st, Path(base), "", skip="vae")
        staging_vae = st.path("vae/config.json").parent
        vae.save_pretrained(str(staging_vae))
        for f in sorted(staging_vae.iterdir()):
            st.path(f"vae/{f.name}")
        st.path(VAE_INFO).write_text(json.dumps(
            {"fingerprint": fp, "steps": v.steps, "parameters": n_params, "seconds": time.monotonic() - t0,
             "final_l1": losses.get(v.steps), "whole_frame_psnr": dict(quality, frames=probe),
             "losses": {str(k): x for k, x in losses.items() if k % 10 == 0}},
            indent=2))
    log(f"[vae] wrote {out_base} in {time.monotonic() - t0:.0f} s")
    return out_base
