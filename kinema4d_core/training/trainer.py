"""The training loop: flow matching on cached latents, on ``accelerate``.

Objective (reference recipe): for a cached target latent x0 = [RGB | XYZ] (16, F, h, 2w), noise
eps ~ N(0, I) and s = shift * u / (1 + (shift - 1) * u), u ~ U(0, 1):
    x_s = (1 - s) x0 + s eps,   target = eps - x0,   loss = MSE(f([x_s | condition], 1000 s), target)
over both halves and every latent frame. The robot mask gets the training-time soft mask (a random
``data.soft_mask_fraction`` of occupied positions set to 0.5).

Runs unchanged on one CPU, one GPU or many (``accelerate launch`` with a DDP, FSDP or DeepSpeed
config): batches and noise are drawn from generators seeded by (seed, step, micro-step, process), so
a resumed run continues exactly where the interrupted one stopped. Output folder:
  checkpoints/step_NNNNNNN/   accelerate ``save_state`` (model, optimizer, EMA, LR schedule) +
                              trainer_state.json; written under a temporary name and renamed
  logs/                       TensorBoard event files (train/loss, train/lr, train/grad_norm, val/*)
  validation/                 step_NNNNNNN_<sample>.mp4: [target RGB | generated RGB | target XYZ | generated XYZ]
  config.json                 the resolved configuration
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from kinema4d_core.errors import ConfigError

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"


class EMA:
    """Exponential moving average of the trainable parameters (fp32 shadows on the parameters' device)."""

    def __init__(self, named_params: list[tuple[str, torch.nn.Parameter]], decay: float):
        self.decay = float(decay)
        self.shadow = {n: p.detach().float().clone() for n, p in named_params}

    @torch.no_grad()
    def update(self, named_params: list[tuple[str, torch.nn.Parameter]]) -> None:
        for n, p in named_params:
            self.shadow[n].mul_(self.decay).add_(p.detach().float(), alpha=1 - self.decay)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.shadow = {k: v.float() for k, v in state["shadow"].items()}


class WarmupSchedule:
    """LR multiplier min(1, (step + 1) / warmup); checkpointable (``state_dict``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup: int):
        self.optimizer, self.warmup, self.step_count = optimizer, int(warmup), 0
        self.base = [g["lr"] for g in optimizer.param_groups]
        self._apply()

    def factor(self) -> float:
        return 1.0 if self.warmup <= 0 else min(1.0, (self.step_count + 1) / self.warmup)

    def _apply(self) -> None:
        for g, lr in zip(self.optimizer.param_groups, self.base):
            g["lr"] = lr * self.factor()

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        return {"step_count": self.step_count, "warmup": self.warmup, "base": self.base}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count, self.warmup, self.base = int(state["step_count"]), int(state["warmup"]), list(state["base"])
        self._apply()


def step_seed(*parts: int) -> int:
    """A 63-bit seed from integers (numpy SeedSequence): same parts, same seed, on every machine."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def timesteps_from_uniform(u: torch.Tensor, shift: float) -> torch.Tensor:
    """s = shift * u / (1 + (shift - 1) * u) in [0, 1] (shift 1: uniform)."""
    return shift * u / (1 + (shift - 1) * u)


def soften(mask: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """(B, 4, F, h, W) latent robot mask with ``conditioning.soft_mask`` applied per sample (same
    positions in all 4 channels)."""
    from kinema4d_core.conditioning import soft_mask

    if fraction <= 0:
        return mask
    out = []
    for b in range(mask.shape[0]):
        m = soft_mask(mask[b, 0].numpy(), fraction, seed=step_seed(seed, b) % (2 ** 32))
        out.append(torch.from_numpy(m)[None].repeat(mask.shape[1], 1, 1, 1))
    return torch.stack(out)


def flow_matching_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator,
                       shift: float, device: torch.device) -> torch.Tensor:
    """The reference objective on one batch (tensors on the CPU; noise drawn there from ``generator``)."""
    x0 = batch["latents"]
    noise = torch.randn(x0.shape, generator=generator)
    u = torch.rand(x0.shape[0], generator=generator)
    s = timesteps_from_uniform(u, shift)
    sv = s.view(-1, 1, 1, 1, 1)
    x_s = (1 - sv) * x0 + sv * noise
    target = (noise - x0).to(device)
    inp = torch.cat([x_s, batch["condition"]], dim=1).to(device)
    pred = model(inp, (s * 1000.0).to(device), encoder_hidden_states_image=batch["image_embeds"].to(device),
                 robot_latents=batch["robot_latents"].to(device), robot_mask=batch["robot_mask"].to(device),
                 return_dict=False)[0]
    return torch.nn.functional.mse_loss(pred.float(), target.float())


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    from kinema4d_core.training.cache import KEYS

    return {k: torch.stack([it[k] for it in items]) for k in KEYS}


# ------------------------------------------------------------------------------- checkpoints
def complete_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of complete checkpoints (renamed into place, with trainer_state.json), oldest first."""
    root = Path(output_dir) / CHECKPOINTS
    found = []
    for p in root.glob("step_*"):
        if (p / STATE_FILE).is_file():
            try:
                found.append((int(json.loads((p / STATE_FILE).read_text())["step"]), p))
            except (ValueError, KeyError, json.JSONDecodeError):
                continue
    return sorted(found)


def save_checkpoint(accelerator: Any, output_dir: Path, step: int, keep: int, extra: dict[str, Any]) -> Path:
    """accelerate ``save_state`` into a temporary folder, then rename it to checkpoints/step_NNNNNNN."""
    root = Path(output_dir) / CHECKPOINTS
    final = root / f"step_{step:07d}"
    tmp = root / f".tmp-step_{step:07d}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps({"step": step, **extra}, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for _, old in complete_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in root.glob(".tmp-step_*"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _names_digest(names) -> str:
    """Short digest of the trainable parameter names (a resumed run must train the same set)."""
    import hashlib

    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------ result
@dataclass
class TrainResult:
    step: int
    losses: dict[int, float] = field(default_factory=dict)   # step -> mean loss of that optimizer step
    export_dir: Path | None = None
    resumed_from: int | None = None
    checkpoint: Path | None = None
    validation_videos: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    is_main_process: bool = True      # False on the other ranks of a multi-process run


def geometry_of(bundle: Any):
    from kinema4d_core.training.data import ModelGeometry

    a = bundle.arm
    return ModelGeometry(num_frames=a.num_frames, size=(a.height, a.width), variant=bundle.variant)


def prepare_data(cfg: Any, bundle: Any, accelerator: Any, log: Callable[[str], None]) -> tuple[Any, list[Path]]:
    """Sample list, latent cache (built by the main process), the training dataset and the raw
    validation sample files."""
    from kinema4d_core.training.cache import CachedDataset, LatentEncoder, build_cache, fingerprint
    from kinema4d_core.training.data import build_sample, list_samples

    geometry = geometry_of(bundle)
    n_val = cfg.data.validation_episodes
    if accelerator.is_main_process:
        specs = list_samples(cfg, geometry)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        specs = list_samples(cfg, geometry, make_episodes=False)
    if n_val >= len(specs):
        raise ConfigError(f"{n_val} validation episodes leave none of the {len(specs)} for training",
                          field="data.validation_episodes", fix="add episodes or lower data.validation_episodes")
    val_names = [s.name for s in specs[len(specs) - n_val:]] if n_val else []
    if cfg.vae.steps > 0:
        trained_base = cfg.train.output_dir / "base"
        if accelerator.is_main_process:
            from kinema4d_core.training.data import iter_samples
            from kinema4d_core.training.vae import train_vae

            train_specs = specs[:len(specs) - n_val]        # the validation samples are the last n_val
            train_vae(cfg, bundle.base, iter_samples(train_specs, geometry), trained_base, log=log)
        accelerator.wait_for_everyone()
        bundle.base = trained_base
    fp = fingerprint(str(bundle.base), bundle.variant, geometry)
    cache_dir = cfg.data.cache_dir
    if accelerator.is_main_process:
        report = build_cache(specs, lambda s: build_sample(s, geometry),
                             lambda: LatentEncoder(bundle.base, bundle.variant), cache_dir, cfg.data.shard_size, fp,
                             validation=val_names)
        log(f"[cache] {len(report.shards)} shards in {cache_dir} ({len(report.written)} written, "
            f"{len(report.skipped)} reused); {len(specs) - n_val} training + {n_val} validation samples")
    accelerator.wait_for_everyone()
    from kinema4d_core.training.cache import shard_name

    shards = [cache_dir / shard_name(k) for k in range((len(specs) + cfg.data.shard_size - 1) // cfg.data.shard_size)]
    return CachedDataset(shards, exclude=val_names), [cache_dir / "validation" / f"{n}.npz" for n in val_names]


def _writer(output_dir: Path):
    from tensorboardX import SummaryWriter

    return SummaryWriter(logdir=str(output_dir / "logs"))


@torch.no_grad()
def validation_rollouts(model: torch.nn.Module, bundle: Any, files: list[Path], step: int, cfg: Any,
                        encoder_holder: dict, writer: Any) -> list[Path]:
    """Sample each validation episode with the pipeline (guidance mode single) and write a video."""
    from kinema4d_core.conditioning import pointmap_to_rgb
    from kinema4d_core.io import write_mp4
    from kinema4d_core.model.checkpoint import load_scheduler
    from kinema4d_core.model.pipeline import Kinema4DPipeline
    from kinema4d_core.training.cache import LatentEncoder, load_raw_sample

    if "enc" not in encoder_holder:
        encoder_holder["enc"] = LatentEncoder(bundle.base, bundle.variant)
    enc = encoder_holder["enc"].pipe
    pipe = Kinema4DPipeline(transformer=model, vae=enc.vae, scheduler=load_scheduler(bundle.base),
                            image_encoder=enc.image_encoder, image_processor=enc.image_processor)
    was_training = model.training
    model.eval()
    videos = []
    try:
        for f in files:
            s = load_raw_sample(f)
            out = pipe(s.first_frame, s.robot_pointmap01, s.robot_mask, s.robot_rgb,
                       num_inference_steps=cfg.train.validation_steps, guidance_mode="single", seed=cfg.train.seed)
            gen_rgb = (np.clip(out.rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
            frames = np.concatenate([s.rgb, gen_rgb, pointmap_to_rgb(s.pointmap01), pointmap_to_rgb(out.pointmap01)],
                                    axis=2)
            path = cfg.train.output_dir / "validation" / f"step_{step:07d}_{s.name}.mp4"
            write_mp4(path, frames)
            videos.append(path)
            rgb_mse = float(np.mean((out.rgb - s.rgb.astype(np.float32) / 255.0) ** 2))
            pm_mse = float(np.mean((out.pointmap01 - s.pointmap01) ** 2))
            writer.add_scalar(f"val/{s.name}/rgb_mse", rgb_mse, step)
            writer.add_scalar(f"val/{s.name}/pointmap_mse", pm_mse, step)
            writer.add_image(f"val/{s.name}/last_frame", frames[-1], step, dataformats="HWC")
    finally:
        model.train(was_training)
    return videos


def train(cfg: Any, *, resume: bool = False, log: Callable[[str], None] = print,
          stop_after: int | None = None) -> TrainResult:
    """Train as configured; return the final step and per-step losses.

    resume: continue from the newest complete checkpoint in ``train.output_dir`` (ConfigError if none).
    stop_after: stop (with a checkpoint) after this many optimizer steps of THIS call (tests,
    time-boxed jobs); the run can be resumed later.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from kinema4d_core.training.export import export_checkpoint
    from kinema4d_core.training.model_setup import build_model, resolve_base

    t0 = time.monotonic()
    tc = cfg.train
    if tc.torch_threads:
        torch.set_num_threads(tc.torch_threads)
    existing = complete_checkpoints(tc.output_dir)
    if resume and not existing:
        raise ConfigError(f"no complete checkpoint in {tc.output_dir / CHECKPOINTS}", field="--resume",
                          fix="start without --resume, or point train.output_dir at the earlier run")
    if not resume and existing:
        raise ConfigError(f"{tc.output_dir} already holds checkpoints (newest: step {existing[-1][0]})",
                          field="train.output_dir", fix="pass --resume to continue it, or choose another output_dir")
    accelerator = Accelerator(mixed_precision=tc.mixed_precision, project_dir=str(tc.output_dir))
    if not accelerator.is_main_process:
        log = lambda _line: None  # noqa: E731  (one log, from the main process)
    set_seed(tc.seed)
    if accelerator.is_main_process:
        resolve_base(cfg)               # builds a generated base (the tiny preset) once, before the other ranks read it
    accelerator.wait_for_everyone()
    bundle = build_model(cfg)
    dataset, val_files = prepare_data(cfg, bundle, accelerator, log)
    model = bundle.transformer
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([p for _, p in named], lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                  weight_decay=cfg.optim.weight_decay, eps=cfg.optim.eps)
    schedule = WarmupSchedule(optimizer, cfg.optim.warmup_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    named = [(n, p) for n, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad]
    ema = EMA(named, cfg.optim.ema_decay) if cfg.optim.ema_decay > 0 else None
    accelerator.register_for_checkpointing(schedule)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    if accelerator.is_main_process:
        tc.output_dir.mkdir(parents=True, exist_ok=True)
        from kinema4d_core.io import write_text

        write_text(tc.output_dir / "config.json", json.dumps(cfg.to_dict(), indent=2))
    result = TrainResult(step=0, is_main_process=accelerator.is_main_process)
    trainable_id = _names_digest(n for n, _ in named)
    if resume:
        step0, folder = existing[-1]
        saved = json.loads((folder / STATE_FILE).read_text()).get("trainable")
        if saved is not None and saved != trainable_id:
            raise ConfigError(f"{folder} was trained with another set of trainable parameters (mode, LoRA rank, "
                              "model size or code version differ)", field="--resume",
                              fix="resume with the configuration that wrote it, or start a new train.output_dir")
        try:
            accelerator.load_state(str(folder))
        except (ValueError, RuntimeError, KeyError) as exc:
            raise ConfigError(f"{folder} does not fit this configuration ({exc})", field="--resume",
                              fix="resume with the configuration that wrote it, or start a new train.output_dir") from exc
        result.step = result.resumed_from = step0
        log(f"[train] resumed from {folder} (step {step0})")
    writer = _writer(tc.output_dir) if accelerator.is_main_process else None
    params = [p for _, p in named]
    device = accelerator.device
    encoder_holder: dict = {}
    n_trainable = sum(p.numel() for p in params)
    log(f"[train] {bundle.mode}: {n_trainable:,} trainable parameters, {len(dataset)} samples, device {device}, "
        f"{accelerator.num_processes} process(es), mixed precision {tc.mixed_precision}")
    sharded = accelerator.distributed_type.value in ("FSDP", "DEEPSPEED")
    if sharded and tc.validate_every:
        log("[train] validation rollouts are skipped with FSDP/DeepSpeed (the model is sharded); "
            "render them from the export with `kinema4d simulate`")
    if sharded and ema is not None:
        raise ConfigError("EMA is not supported with FSDP/DeepSpeed here", field="optim.ema_decay",
                          fix="set optim.ema_decay=0, or train with DDP")
    steps_done = 0
    last_log = time.monotonic()
    while result.step < tc.steps:
        step = result.step
        total = 0.0
        for micro in range(tc.gradient_accumulation_steps):
            # the global index of this micro-batch among the step's num_processes x accumulation ones:
            # N processes x accumulation A draw the same batches as 1 process x accumulation N*A, and
            # DDP's gradient mean equals the accumulated mean (tests/training/test_train_ddp.py)
            micro_id = accelerator.process_index * tc.gradient_accumulation_steps + micro
            gen = torch.Generator().manual_seed(step_seed(tc.seed, step, micro_id, 0))
            idx = torch.randint(len(dataset), (tc.batch_size,), generator=gen).tolist()
            batch = collate([dataset[i] for i in idx])
            batch["robot_mask"] = soften(batch["robot_mask"], cfg.data.soft_mask_fraction,
                                         step_seed(tc.seed, step, micro_id, 0, 7))
            with accelerator.autocast():
                loss = flow_matching_loss(model, batch, gen, tc.flow_shift, device)
            if not torch.isfinite(loss):
                raise ConfigError(f"loss became {loss.item()} at step {step}", field="optim.lr",
                                  fix="lower optim.lr or raise optim.warmup_steps; use train.mixed_precision=bf16 "
                                      "rather than fp16")
            accelerator.backward(loss / tc.gradient_accumulation_steps)
            total += float(loss.detach()) / tc.gradient_accumulation_steps
        grad_norm = (accelerator.clip_grad_norm_(params, cfg.optim.grad_clip) if cfg.optim.grad_clip > 0
                     else torch.tensor(float("nan")))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        if ema is not None:
            ema.update(named)
        loss_mean = float(accelerator.reduce(torch.tensor(total, device=device), reduction="mean"))
        result.step = step + 1
        steps_done += 1
        result.losses[result.step] = loss_mean
        if writer is not None:
            writer.add_scalar("train/loss", loss_mean, result.step)
            writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], result.step)
            writer.add_scalar("train/grad_norm", float(grad_norm), result.step)
        if tc.log_every and (result.step % tc.log_every == 0 or result.step == tc.steps):
            now = time.monotonic()
            log(f"[train] step {result.step}/{tc.steps} loss {loss_mean:.5f} lr {optimizer.param_groups[0]['lr']:.3g} "
                f"grad_norm {float(grad_norm):.3g} ({now - last_log:.1f} s)")
            last_log = now
        last = result.step == tc.steps or (stop_after is not None and steps_done >= stop_after)
        if (tc.checkpoint_every and result.step % tc.checkpoint_every == 0) or last:
            result.checkpoint = save_checkpoint(accelerator, tc.output_dir, result.step, tc.keep_checkpoints,
                                                {"loss": loss_mean, "mode": bundle.mode,
                                                 "trainable": trainable_id})
        if writer is not None and tc.validate_every and not sharded and (result.step % tc.validate_every == 0
                                                          or result.step == tc.steps) and val_files:
            result.validation_videos += validation_rollouts(accelerator.unwrap_model(model), bundle, val_files,
                                                            result.step, cfg, encoder_holder, writer)
        if last:
            break
    accelerator.wait_for_everyone()
    full_state = accelerator.get_state_dict(model) if result.step >= tc.steps else None   # gathers FSDP shards
    if result.step >= tc.steps and accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        overrides = None
        if ema is not None and tc.export_ema:
            overrides = {n: ema.shadow[n].to(dict(unwrapped.named_parameters())[n].dtype) for n in ema.shadow}
        result.export_dir = cfg.export_dir
        export_checkpoint(unwrapped, bundle, cfg.export_dir, overrides=overrides, state=full_state,
                          info={"step": result.step, "mode": bundle.mode, "ema": overrides is not None,
                                "final_loss": result.losses.get(result.step), "config": cfg.to_dict()})
        log(f"[train] exported {cfg.export_dir}")
    if writer is not None:
        writer.close()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    result.seconds = time.monotonic() - t0
    if math.isnan(result.seconds):
        result.seconds = 0.0
    return result
