"""Training configuration: frozen dataclasses loaded from YAML plus ``--set key=value`` overrides.

    cfg = load_config("config/training/tiny_cpu.yaml", overrides=["optim.lr=1e-4", "train.steps=20"])

Every section and key is checked: an unknown key, a wrong type or an out-of-range value raises
ConfigError naming the key (``optim.lr``), the problem and the fix. Relative paths (in the file
and in ``--set``) are resolved against the working folder, so run from the repository root.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from kinema4d_core.errors import ConfigError

MODES = ("finetune", "scratch")
MIXED_PRECISION = ("no", "bf16", "fp16")
ARM_PRESETS = ("tiny", "mini", "full")
TINY_BASE = "tiny"
"""``model.base: tiny`` builds the seeded tiny preset (``make-tiny-checkpoint``) in ``<output_dir>/tiny_preset``."""


@dataclass(frozen=True)
class SimData:
    """Episodes generated in the MuJoCo sim world (scripted push / pick-and-place; seeds first_seed..)."""

    tasks: tuple[str, ...] = ("push", "pick_place")
    episodes_per_task: int = 0
    first_seed: int = 0
    render_width: int = 144
    render_height: int = 96


@dataclass(frozen=True)
class DataConfig:
    """Where training samples come from and where the latent cache lives.

    sim: sim-world episodes (written to ``episodes_dir`` once, reused); replay: folders written by
    ``kinema4d replay`` (need ground_truth.npz with joint names); robo4d: Robo4D folders.
    validation_episodes: the LAST n samples (in source order) are held out for validation rollouts.
    soft_mask_fraction: share of occupied latent mask positions set to 0.5 per step (reference: 0.1).
    episodes_dir / cache_dir: default ``<train.output_dir>/episodes`` and ``<train.output_dir>/cache``
    (point several runs at one cache to share it; its fingerprint guards against mixing configurations).
    """

    sim: SimData = field(default_factory=SimData)
    replay: tuple[Path, ...] = ()
    robo4d: tuple[Path, ...] = ()
    episodes_dir: Path | None = None
    cache_dir: Path | None = None
    shard_size: int = 8
    validation_episodes: int = 1
    soft_mask_fraction: float = 0.1


@dataclass(frozen=True)
class ModelConfig:
    """What is trained.

    mode: ``finetune`` (LoRA on to_q/to_k/to_v/to_out.0 + robot layers + domain embeddings
    trainable, the rest frozen) or ``scratch`` (every transformer parameter trainable).
    base: Wan2.1 I2V diffusers folder (VAE, CLIP, scheduler and the transformer config/weights),
    or ``tiny`` for the seeded tiny preset. checkpoint: a Kinema4D folder to start from (fine-tune
    from the released weights; its LoRA becomes the trainable adapter), or null (robot layers
    fresh, LoRA fresh). arm: robot-branch size preset when no checkpoint gives one.
    transformer: scratch mode only, overrides of the base transformer config (e.g. num_layers).
    scratch_init: scratch mode: ``base`` starts from the base weights, ``random`` from a fresh init.
    """

    mode: str = "finetune"
    base: str = TINY_BASE
    checkpoint: Path | None = None
    variant: str = "rgb-pm"
    arm: str = "tiny"
    lora_rank: int = 64
    lora_alpha: float = 32.0
    transformer: dict = field(default_factory=dict)
    scratch_init: str = "base"
    tiny_seed: int = 0


@dataclass(frozen=True)
class VaeConfig:
    """Training the VAE on the training set's own frames before the latents are cached.

    steps: optimizer steps (0 = use the base's VAE unchanged, e.g. the released Wan VAE). The result
    is a copy of the base folder with the trained ``vae/`` (``<output_dir>/base``); caching, training,
    validation and export use it. base_dim / dim_mult: size of a FRESH AutoencoderKLWan (z_dim 16,
    the transformer's latent channels); null keeps the base VAE's architecture and starts from its
    weights (adapting it). Clips of ``clip_frames`` (1 + 4k) frames are drawn from the target
    [RGB | pointmap] videos and the robot condition videos; loss = L1 + ``kl_weight`` * KL.
    latents_mean / latents_std of the written VAE are measured on ``stats_clips`` encoded clips.
    crop: (h, w) pixels (multiples of 8) of a random window of each training clip, or null (whole
    frames); latent statistics are always measured on whole frames.
    sample_posterior: decode a posterior sample (true) or its mode (false: what the pipeline
    encodes; with a tiny kl_weight the sample's unit noise would swamp a fresh encoder's output).
    mid_attention: false zeroes and freezes the output projection of the VAE's mid-block attention
    (also of an adapted one, so a VAE trained this way stays so), which makes the attention an
    identity and the VAE fully convolutional: what it learns on ``crop`` windows then holds on
    whole frames. With the attention on, a VAE trained on
    32 x 48 crops reconstructed whole 64 x 192 frames at 12-18 dB (measured 2026-12-02): attention
    over 4 x 6 latents does not carry over to 8 x 24. The written weights load as a standard
    AutoencoderKLWan (the zero projection adds nothing).
    single_frame_steps: the first N of ``steps`` train on single frames (the first-frame path of the
    causal VAE: its spatial layers) before ``clip_frames`` clips. Measured 2026-12-02 on one core:
    a single-frame step costs 0.16 s against 0.45 s for a 5-frame clip, and 200 clip steps after
    4800 single-frame steps reach 18.0 / 21.3 dB on whole 5-frame clips, where 2000 clip steps
    from scratch reach 19.1 / 21.9 dB.
    detail_weight: extra L1 weight on pixels that differ from their 5 x 5 neighbourhood (edges,
    small objects), relative to the clip's mean difference; 0 = plain L1. Small objects (a 6-pixel
    cube) are a sliver of a frame's L1 and are the last thing a plain-L1 VAE learns to draw.
    clip_batch_size: clips per step after the single-frame steps (null: ``batch_size``); long
    clips cost more per step. Each phase (single frames, clips) has its own warm-up and cosine
    decay of the learning rate, so the clip phase starts at ``lr`` too.
    """

    steps: int = 0
    base_dim: int | None = None
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    clip_frames: int = 5
    batch_size: int = 2
    lr: float = 1e-3
    kl_weight: float = 1e-6
    stats_clips: int = 32
    log_every: int = 25
    crop: tuple[int, int] | None = None
    sample_posterior: bool = False
    detail_weight: float = 0.0
    mid_attention: bool = True
    single_frame_steps: int = 0
    clip_batch_size: int | None = None


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up then constant LR (reference: 2e-5, (0.9, 0.95), 1e-4, clip 1, 100 warm-up)."""

    lr: float = 2e-5
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 1e-4
    eps: float = 1e-8
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.0


@dataclass(frozen=True)
class TrainLoop:
    """Steps, batch, precision and the output folder (checkpoints/, logs/, validation/, export/).

    flow_shift: timesteps s = shift * u / (1 + (shift - 1) * u), u ~ U(0, 1) (the sampler's shift).
    checkpoint_every / validate_every / log_every: in optimizer steps (0 = never; the last step
    always checkpoints). keep_checkpoints: newest complete checkpoints kept.
    """

    steps: int = 1000
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    seed: int = 0
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    flow_shift: float = 3.0
    output_dir: Path = Path("runs/train")
    log_every: int = 10
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    validate_every: int = 0
    validation_steps: int = 4
    export_dir: Path | None = None
    export_ema: bool = True
    torch_threads: int = 0


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    vae: VaeConfig = field(default_factory=VaeConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainLoop = field(default_factory=TrainLoop)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))

    @property
    def export_dir(self) -> Path:
        return self.train.export_dir or self.train.output_dir / "export"


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    return v


# -------------------------------------------------------------------------------- validation
def _check(cfg: TrainConfig) -> None:
    from kinema4d_core.model.config import VARIANTS
    from kinema4d_core.simworld.tasks import TASKS

    d, m, o, t, v = cfg.data, cfg.model, cfg.optim, cfg.train, cfg.vae
    rules: list[tuple[str, bool, str]] = [
        ("model.mode", m.mode in MODES, f"one of {list(MODES)}"),
        ("model.variant", m.variant in VARIANTS, f"one of {list(VARIANTS)}"),
        ("model.arm", m.arm in ARM_PRESETS, f"one of {list(ARM_PRESETS)}"),
        ("model.lora_rank", m.lora_rank >= 1, "an integer >= 1 (reference: 64)"),
        ("model.lora_alpha", m.lora_alpha > 0, "a positive number (reference: 32)"),
        ("model.scratch_init", m.scratch_init in ("base", "random"), "base or random"),
        ("model.transformer", m.mode == "scratch" or not m.transformer,
         "empty in finetune mode (the size comes from the base folder); set model.mode=scratch"),
        ("model.scratch_init", not (m.transformer and m.scratch_init == "base"),
         "random when model.transformer changes the size (the base weights no longer fit)"),
        ("model.checkpoint", m.mode == "finetune" or m.checkpoint is None,
         "null in scratch mode (a released checkpoint is fine-tuned: model.mode=finetune)"),
        ("data.sim.tasks", all(x in TASKS for x in d.sim.tasks), f"a list of {list(TASKS)}"),
        ("data.sim.episodes_per_task", d.sim.episodes_per_task >= 0, "an integer >= 0"),
        ("data.sim.render_width", 16 <= d.sim.render_width <= 4096, "pixels in [16, 4096]"),
        ("data.sim.render_height", 16 <= d.sim.render_height <= 4096, "pixels in [16, 4096]"),
        ("data.shard_size", d.shard_size >= 1, "an integer >= 1"),
        ("data.validation_episodes", d.validation_episodes >= 0, "an integer >= 0"),
        ("data.soft_mask_fraction", 0.0 <= d.soft_mask_fraction <= 1.0, "a fraction in [0, 1] (reference: 0.1)"),
        ("vae.steps", v.steps >= 0, "an integer >= 0 (0 = keep the base VAE)"),
        ("vae.base_dim", v.base_dim is None or v.base_dim >= 1, "null (adapt the base VAE) or channels >= 1"),
        ("vae.dim_mult", len(v.dim_mult) == 4 and all(k >= 1 for k in v.dim_mult),
         "four positive multipliers (the Wan VAE has four levels)"),
        ("vae.clip_frames", v.clip_frames >= 1 and (v.clip_frames - 1) % 4 == 0, "1 + 4k frames, e.g. 5 or 9"),
        ("vae.batch_size", v.batch_size >= 1, "an integer >= 1"),
        ("vae.lr", v.lr > 0, "a positive learning rate"),
        ("vae.kl_weight", v.kl_weight >= 0, "a number >= 0"),
        ("vae.detail_weight", v.detail_weight >= 0, "a number >= 0 (0 = plain L1)"),
        ("vae.single_frame_steps", 0 <= v.single_frame_steps <= v.steps, "an integer in [0, vae.steps]"),
        ("vae.clip_batch_size", v.clip_batch_size is None or v.clip_batch_size >= 1, "null or an integer >= 1"),
        ("vae.stats_clips", v.stats_clips >= 2, "an integer >= 2"),
        ("vae.log_every", v.log_every >= 0, "an integer >= 0"),
        ("vae.crop", v.crop is None or all(c >= 8 and c % 8 == 0 for c in v.crop),
         "null or (h, w) multiples of 8 (the VAE's spatial compression)"),
        ("optim.lr", o.lr > 0, "a positive learning rate (reference: 2e-5)"),
        ("optim.betas", len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), "two numbers in [0, 1)"),
        ("optim.weight_decay", o.weight_decay >= 0, "a number >= 0"),
        ("optim.eps", o.eps > 0, "a positive number"),
        ("optim.warmup_steps", o.warmup_steps >= 0, "an integer >= 0"),
        ("optim.grad_clip", o.grad_clip >= 0, "a number >= 0 (0 = no clipping)"),
        ("optim.ema_decay", o.ema_decay == 0 or 0 < o.ema_decay < 1, "0 (off) or in (0, 1), e.g. 0.999"),
        ("train.steps", t.steps >= 1, "an integer >= 1"),
        ("train.batch_size", t.batch_size >= 1, "an integer >= 1"),
        ("train.gradient_accumulation_steps", t.gradient_accumulation_steps >= 1, "an integer >= 1"),
        ("train.mixed_precision", t.mixed_precision in MIXED_PRECISION, f"one of {list(MIXED_PRECISION)}"),
        ("train.flow_shift", t.flow_shift > 0, "a positive number (1 = uniform timesteps)"),
        ("train.log_every", t.log_every >= 0, "an integer >= 0"),
        ("train.checkpoint_every", t.checkpoint_every >= 0, "an integer >= 0"),
        ("train.keep_checkpoints", t.keep_checkpoints >= 1, "an integer >= 1"),
        ("train.validate_every", t.validate_every >= 0, "an integer >= 0"),
        ("train.validation_steps", t.validation_steps >= 1, "an integer >= 1"),
        ("train.torch_threads", t.torch_threads >= 0, "an integer >= 0 (0 = torch's default)"),
    ]
    for key, ok, expected in rules:
        if not ok:
            raise ConfigError(f"invalid value {_get(cfg, key)!r}", field=key, fix=f"use {expected}")
    if d.sim.episodes_per_task == 0 and not d.replay and not d.robo4d:
        raise ConfigError("no training data: no sim episodes, replay folders or Robo4D folders", field="data",
                          fix="set data.sim.episodes_per_task, data.replay or data.robo4d")


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


# -------------------------------------------------------------------------------- building
def _convert(value: Any, tp: Any, key: str, root: Path) -> Any:
    """``value`` (from YAML) as type ``tp``; ConfigError naming ``key`` otherwise."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key, root)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, root)
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"expected a path, got {value!r}", field=key, fix="write a path string")
        p = Path(value).expanduser()
        return p if p.is_absolute() else root / p
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [value] if value not in (None, "") else []
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]", root) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"expected {len(args)} values, got {list(value)}", field=key,
                              fix=f"write a list of {len(args)}")
        return tuple(_convert(v, a, f"{key}[{i}]", root) for i, (v, a) in enumerate(zip(value, args)))
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping, got {value!r}", field=key, fix="write key: value pairs")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"expected true or false, got {value!r}", field=key, fix="write true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected an integer, got {value!r}", field=key, fix="write a whole number")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected a number, got {value!r}", field=key, fix="write a number (e.g. 2e-5)")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"expected a string, got {value!r}", field=key, fix="write a string")
        return value
    raise ConfigError(f"unsupported type {tp}", field=key)


def _build(cls: type, data: Any, prefix: str, root: Path) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping, got {data!r}", field=prefix or "config", fix="write key: value pairs")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key(s) {[where + k for k in unknown]}", field=prefix or "config",
                          fix=f"use only {[where + n for n in names]}")
    kwargs = {k: _convert(v, hints[k], f"{prefix}.{k}" if prefix else k, root) for k, v in data.items()}
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], value parsed as YAML: 1e-4, true, [1, 2], null)."""
    import yaml

    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value", field="--set", fix="write e.g. --set optim.lr=1e-4")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {text!r} has no key", field="--set", fix="write e.g. --set optim.lr=1e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _looks_numeric(value):   # YAML 1.1 reads "1e-4" as a string
        value = float(value)
    return parts, value


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _fix_numbers(data: Any) -> Any:
    """YAML 1.1 (PyYAML) reads ``2e-5`` (no dot) as a string: turn such strings into floats."""
    if isinstance(data, dict):
        return {k: _fix_numbers(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_fix_numbers(v) for v in data]
    if isinstance(data, str) and _looks_numeric(data) and any(c in data.lower() for c in "e."):
        return float(data)
    return data


def config_from_dict(data: dict[str, Any], *, root: Path | None = None,
                     overrides: Sequence[str] = ()) -> TrainConfig:
    """TrainConfig from a mapping (paths relative to ``root``) with ``key=value`` overrides applied."""
    import copy

    data = copy.deepcopy(_fix_numbers(data or {}))
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"{'.'.join(parts[:-1])} is not a section", field=text.split("=")[0],
                                  fix="override a key inside a section, e.g. optim.lr=1e-4")
            node = nxt
        node[parts[-1]] = value
    root = root or Path.cwd()
    cfg = _build(TrainConfig, data, "", root)
    out = cfg.train.output_dir
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, episodes_dir=cfg.data.episodes_dir or out / "episodes", cache_dir=cfg.data.cache_dir or out / "cache"))
    base = cfg.model.base
    if base != TINY_BASE and not Path(base).expanduser().is_absolute():
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, base=str(root / Path(base).expanduser())))
    _check(cfg)
    return cfg


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a training YAML (see config/training/tiny_cpu.yaml) and apply ``key=value`` overrides."""
    from kinema4d_core.io import read_yaml

    path = Path(path)
    data = read_yaml(path, field="CONFIG", what="training config",
                     fix="pass a YAML file such as config/training/tiny_cpu.yaml")
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path} holds a {type(data).__name__}, expected sections data/model/optim/train",
                          field="CONFIG", fix="see config/training/tiny_cpu.yaml")
    return config_from_dict(data or {}, root=Path.cwd(), overrides=overrides)
