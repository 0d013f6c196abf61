"""Generation backends behind one protocol (see docs/ARCHITECTURE.md).

- ``kinema4d``: the Kinema4D model (Wan2.1 I2V base folder + Kinema4D checkpoint folder).
- ``kinema4d-tiny``: the same code path on the tiny preset (a ``make-tiny-checkpoint`` folder, or
  random weights from a fixed seed when no folder is given; metadata says which). Untrained: its
  output shows that the machinery works, not what the world will do.
- ``static-scene``: a BASELINE with no environment dynamics (no model, no weights). Every frame is
  the first frame with the robot render composited where the robot is; the pointmap is the
  first-frame depth back-projected (when given) with the robot pointmap z-buffered over it.

Heavy imports (torch, diffusers) happen only when a model backend loads.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from kinema4d_core.errors import ConfigError, InputError, ResourceError
from kinema4d_core.model.schedule import DEFAULT_TIMESTEP_GRID, TIMESTEP_GRIDS
from kinema4d_core.registry import BackendOption, BackendSpec, backend_spec, register_backend
from kinema4d_core.rollout import Rollout
from kinema4d_core.types import Backend, CancelFn, Cancelled, GenerationRequest, ProgressFn  # noqa: F401 (re-exported)

DTYPES = ("bf16", "fp32")
OFFLOADS = ("none", "model", "group")
BACKENDS = ("kinema4d", "kinema4d-tiny", "kinema4d-mini", "static-scene")


# ----------------------------------------------------------------------------------- helpers
def robot_pointmap01(robot) -> np.ndarray:
    """Robot pointmap normalized with the condition's own per-axis low/high: (T,H,W,3) in [0,1],
    0 outside the robot mask (the representation the model was trained on)."""
    from kinema4d_core.conditioning import apply_normalization

    return apply_normalization(robot.pointmap, robot.normalization, np.asarray(robot.mask, dtype=bool))


def check_request(request: GenerationRequest, *, num_frames: int | None = None,
                  size: tuple[int, int] | None = None) -> None:
    """Shapes of the request against each other and (optionally) a model's fixed sample size."""
    frame = np.asarray(request.first_frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise InputError(f"expected (H, W, 3) uint8, got {frame.shape} {frame.dtype}", field="first_frame")
    pm = np.asarray(request.robot.pointmap)
    if pm.ndim != 4 or pm.shape[-1] != 3:
        raise InputError(f"expected (T, H, W, 3), got {pm.shape}", field="robot.pointmap")
    if np.shape(request.robot.mask) != pm.shape[:3]:
        raise InputError(f"shape {np.shape(request.robot.mask)}, expected {pm.shape[:3]}", field="robot.mask")
    if request.robot.rgb is not None and np.shape(request.robot.rgb) != pm.shape:
        raise InputError(f"shape {np.shape(request.robot.rgb)}, expected {pm.shape}", field="robot.rgb")
    if num_frames is not None and pm.shape[0] != num_frames:
        raise InputError(f"has {pm.shape[0]} frames, the model generates {num_frames}", field="robot",
                         fix=f"project the trajectory with n_frames={num_frames}")
    if size is not None and tuple(pm.shape[1:3]) != tuple(size):
        raise InputError(f"robot condition is {pm.shape[2]}x{pm.shape[1]} (WxH), the model needs "
                         f"{size[1]}x{size[0]}", field="robot", fix="project with a camera resized to that size")
    if frame.shape[:2] != pm.shape[1:3]:
        raise InputError(f"first frame is {frame.shape[1]}x{frame.shape[0]} (WxH), robot condition is "
                         f"{pm.shape[2]}x{pm.shape[1]}", field="first_frame",
                         fix="resize the image to the robot condition's camera size")
    if request.first_depth is not None and np.shape(request.first_depth) != frame.shape[:2]:
        raise InputError(f"shape {np.shape(request.first_depth)}, expected {frame.shape[:2]}", field="first_depth")
    if request.steps < 1:
        raise InputError(f"must be >= 1, got {request.steps}", field="steps")
    if request.guidance_mode not in ("faithful", "single"):
        raise InputError(f"unknown mode {request.guidance_mode!r}", field="guidance_mode", fix="faithful or single")


def resolve_device(device: str) -> str:
    """'cpu' or 'cuda[:i]'; ResourceError when CUDA is asked for but absent."""
    if device == "cpu":
        return device
    if not device.startswith("cuda"):
        raise ConfigError(f"unknown device {device!r}", field="device", fix="use cuda or cpu")
    import torch

    if not torch.cuda.is_available():
        raise ResourceError("CUDA was requested but no CUDA device is available", field="device",
                            fix="use --device cpu (tiny preset) or run on a machine with an NVIDIA GPU")
    return device


# ------------------------------------------------------------------------------ model backends
class Kinema4DBackend:
    """Kinema4D generation. Weights load lazily on the first ``generate`` (or ``load()``)."""

    name = "kinema4d"

    def __init__(self, base: str | Path, checkpoint: str | Path, *, variant: str = "rgb-pm", device: str = "cuda",
                 dtype: str = "bf16", offload: str = "none", batch_passes: bool = True, vae_tiling: bool = False,
                 compile: bool = False, timestep_grid: str = DEFAULT_TIMESTEP_GRID, weights_note: str | None = None):
        from kinema4d_core.model.checkpoint import check_base_folder, read_arm_config, resolve_checkpoint_folder

        if dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {dtype!r}", field="dtype", fix=f"use one of {DTYPES}")
        if offload not in OFFLOADS:
            raise ConfigError(f"unknown offload {offload!r}", field="offload", fix=f"use one of {OFFLOADS}")
        if timestep_grid not in TIMESTEP_GRIDS:
            raise ConfigError(f"unknown timestep grid {timestep_grid!r}", field="timestep_grid",
                              fix=f"use one of {TIMESTEP_GRIDS}")
        self.device = resolve_device(device)
        if offload != "none" and self.device == "cpu":
            raise ConfigError("CPU offload needs a CUDA device", field="offload", fix="use --offload none on CPU")
        self.base = check_base_folder(base)
        self.checkpoint = resolve_checkpoint_folder(checkpoint, variant)
        self.arm = read_arm_config(self.checkpoint)
        self.variant, self.dtype, self.offload = variant, dtype, offload
        self.batch_passes, self.vae_tiling, self.compile = batch_passes, vae_tiling, compile
        self.timestep_grid = timestep_grid
        self.weights_note = weights_note
        self._pipe = None

    @property
    def num_frames(self) -> int:
        return self.arm.num_frames

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) per modality the checkpoint generates."""
        return self.arm.height, self.arm.width

    def load(self):
        """Load every component once; return the pipeline."""
        if self._pipe is not None:
            return self._pipe
        import torch

        from kinema4d_core.model.checkpoint import load_components
        from kinema4d_core.model.pipeline import Kinema4DPipeline

        torch_dtype = torch.bfloat16 if self.dtype == "bf16" else torch.float32
        load_device = self.device if self.offload == "none" else "cpu"
        comps = load_components(self.base, self.checkpoint, variant=self.variant, dtype=torch_dtype,
                                device=load_device)
        pipe = Kinema4DPipeline.from_components(comps)
        if self.vae_tiling:
            pipe.vae.enable_tiling()
        if self.offload == "model":
            pipe.enable_model_cpu_offload(device=self.device)
        elif self.offload == "group":
            pipe.transformer.enable_group_offload(onload_device=torch.device(self.device),
                                                  offload_device=torch.device("cpu"), offload_type="block_level",
                                                  num_blocks_per_group=1, use_stream=True)
            pipe.vae.to(self.device)
            pipe.image_encoder.to(self.device)
        if self.compile:
            pipe.transformer.compile_repeated_blocks(fullgraph=True)
        self._pipe = pipe
        return pipe

    def metadata(self, request: GenerationRequest) -> dict:
        return {"backend": self.name, "baseline": False, "variant": self.variant, "base": str(self.base),
                "checkpoint": str(self.checkpoint), "weights": self.weights_note or "checkpoint",
                "seed": int(request.seed), "steps": int(request.steps), "guidance": float(request.guidance),
                "guidance_mode": request.guidance_mode, "dtype": self.dtype, "device": self.device,
                "offload": self.offload, "timestep_grid": self.timestep_grid}

    def generate(self, request: GenerationRequest, progress: ProgressFn | None = None,
                 should_cancel: CancelFn | None = None) -> Rollout:
        import torch

        from kinema4d_core.metric import POOR_FIT_THRESHOLD_M, fit_metric

        check_request(request, num_frames=self.num_frames, size=self.size)
        robot = request.robot
        try:
            pipe = self.load()
            out = pipe(request.first_frame, robot_pointmap01(robot), np.asarray(robot.mask, dtype=bool),
                       None if robot.rgb is None else np.asarray(robot.rgb, dtype=np.uint8),
                       num_inference_steps=request.steps, guidance_scale=request.guidance,
                       guidance_mode=request.guidance_mode, seed=request.seed, batch_passes=self.batch_passes,
                       timestep_grid=self.timestep_grid, progress=progress, should_cancel=should_cancel)
        except torch.OutOfMemoryError as exc:
            hint = {"none": "--offload model (or --offload group for the least GPU memory)",
                    "model": "--offload group", "group": "--guidance-mode single, or a GPU with more memory"}
            raise ResourceError(f"out of GPU memory with offload={self.offload}", field="offload",
                                fix=f"retry with {hint[self.offload]}; VAE tiling also helps") from exc
        fit = fit_metric(out.pointmap01, robot.pointmap, robot.mask)
        meta = self.metadata(request)
        meta["schedule"] = out.timestep_grid          # the grid sampled on: name, timesteps, sigmas
        meta["metric_fit"] = {"scale": fit.scale.tolist(), "offset": fit.offset.tolist(),
                              "poor_frames": np.flatnonzero(fit.poor).tolist(), "threshold_m": POOR_FIT_THRESHOLD_M}
        rgb = np.empty(np.shape(out.rgb), np.uint8)
        for t in range(len(rgb)):  # frame by frame: no float copies of the whole video
            rgb[t] = (np.clip(out.rgb[t], 0, 1) * 255 + 0.5).astype(np.uint8)
        return Rollout(rgb=rgb, pointmap_normalized=np.asarray(out.pointmap01, np.float32), pointmap=fit.pointmap,
                       metric_fit_residual=fit.residual, K=np.asarray(robot.K, dtype=np.float64),
                       T_base_camera=np.asarray(robot.T_base_camera, dtype=np.float64), metadata=meta)


class TinyBackend(Kinema4DBackend):
    """Tiny preset through the real loading path; random weights when no folder is given."""

    name = "kinema4d-tiny"

    def __init__(self, checkpoint_dir: str | Path | None = None, *, variant: str = "rgb-pm", seed: int = 0,
                 device: str = "cpu", dtype: str = "fp32", **options):
        self._tmp = None
        if checkpoint_dir is None:
            from kinema4d_core.model.tiny import make_tiny_checkpoint

            self._tmp = tempfile.TemporaryDirectory(prefix="kinema4d-tiny-")
            checkpoint_dir = make_tiny_checkpoint(self._tmp.name, seed=seed)
            note = f"tiny preset built in memory from seed {seed} (random, untrained)"
        else:
            checkpoint_dir = Path(checkpoint_dir)
            trained = (checkpoint_dir / "training_info.json").is_file()   # written by training.export
            note = (f"checkpoint trained by `kinema4d train` from {checkpoint_dir}" if trained
                    else f"tiny preset from {checkpoint_dir} (random, untrained)")
        checkpoint_dir = Path(checkpoint_dir)
        super().__init__(checkpoint_dir / "base", checkpoint_dir, variant=variant, device=device, dtype=dtype,
                         weights_note=note, **options)


def mini_model_dir() -> Path:
    """Where ``kinema4d-mini`` looks without ``--checkpoint``: ``$KINEMA4D_MINI_DIR`` or
    ``<repo>/models/kinema4d-mini``, the shipped model (``scripts/train_mini.sh PUBLISH=models/kinema4d-mini``
    writes it; its MODEL_CARD.md has the data, training and figures)."""
    import os

    import kinema4d_core

    env = os.environ.get("KINEMA4D_MINI_DIR")
    if env:
        return Path(env).expanduser()
    return Path(kinema4d_core.__file__).resolve().parents[1] / "models" / "kinema4d-mini"


class MiniBackend(Kinema4DBackend):
    """The mini model: the Kinema4D architecture at 64 x 96 per modality, trained from scratch by
    ``scripts/train_mini.sh`` on the MuJoCo sim world ONLY (an export of that script). Sampling is always single-pass (``guidance_mode`` single): the model
    was trained at robot-condition scale 1 only, so the released robot-scale guidance does not apply;
    the metadata says so when a request asked for another mode."""

    name = "kinema4d-mini"
    SCOPE = "trained only on the kinema4d sim world (MuJoCo Panda, push and pick-and-place of one cube)"

    def __init__(self, checkpoint_dir: str | Path | None = None, *, device: str = "cpu", dtype: str = "fp32",
                 **options):
        from kinema4d_core.errors import CheckpointError

        folder = Path(checkpoint_dir) if checkpoint_dir is not None else mini_model_dir()
        if not (folder / "training_info.json").is_file() or not (folder / "base").is_dir():
            raise CheckpointError(f"{folder} holds no exported mini model (base/, kinema4d_ckpt/, training_info.json)",
                                  field="checkpoint", fix="train one with scripts/train_mini.sh and pass "
                                                          "--checkpoint runs/mini/export (or publish it there with "
                                                          "PUBLISH=models/kinema4d-mini)")
        super().__init__(folder / "base", folder, variant="rgb-pm", device=device, dtype=dtype,
                         weights_note=f"mini model from {folder}: {self.SCOPE}", **options)
        self.folder = folder

    def metadata(self, request: GenerationRequest) -> dict:
        return dict(super().metadata(request), scope=self.SCOPE)

    def generate(self, request: GenerationRequest, progress: ProgressFn | None = None,
                 should_cancel: CancelFn | None = None) -> Rollout:
        from dataclasses import replace

        rollout = super().generate(replace(request, guidance_mode="single"), progress, should_cancel)
        if request.guidance_mode != "single":
            rollout.metadata["guidance_note"] = (f"requested guidance_mode {request.guidance_mode!r} was not applied: "
                                                 "the mini model samples single-pass (trained at robot-condition "
                                                 "scale 1 only)")
        return rollout


# ------------------------------------------------------------------------------------ baseline
def backproject_depth(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(H, W) metres -> (H, W, 3) camera-frame points at integer pixel centres (no distortion:
    the depth image must be rectified); NaN where depth is not finite or <= 0."""
    from kinema4d_core.metrics import depth_to_pointmap

    z = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float64)
    return depth_to_pointmap(z, K).astype(np.float32)


class StaticSceneBackend:
    """BASELINE without environment dynamics: the world stays as in the first frame; only the
    robot moves (its render is composited in, z-buffered against the first-frame depth)."""

    name = "static-scene"
    NOT_MODELLED = ("object motion", "contacts and pushing", "occlusion of the scene by the robot's effects",
                    "lighting and shadows of the moving robot", "camera motion")

    def generate(self, request: GenerationRequest, progress: ProgressFn | None = None,
                 should_cancel: CancelFn | None = None) -> Rollout:
        from kinema4d_core.conditioning import apply_normalization

        check_request(request)
        robot = request.robot
        mask = np.asarray(robot.mask, dtype=bool)                      # (T, H, W)
        n = len(mask)
        K = np.asarray(robot.K, dtype=np.float64)
        robot_rgb = (np.full(mask.shape + (3,), 128, np.uint8) if robot.rgb is None
                     else np.asarray(robot.rgb, dtype=np.uint8))
        robot_pm = np.asarray(robot.pointmap, dtype=np.float32)
        scene = (backproject_depth(np.asarray(request.first_depth, np.float64), K) if request.first_depth is not None
                 else np.full(mask.shape[1:] + (3,), np.nan, np.float32))
        rgb = np.empty(mask.shape + (3,), np.uint8)
        pointmap = np.empty(mask.shape + (3,), np.float32)
        for t in range(n):
            if should_cancel is not None and should_cancel():
                raise Cancelled("generation cancelled")
            nearer = mask[t] & ~(scene[..., 2] <= robot_pm[t, ..., 2])  # robot wins where nearer or scene unknown
            rgb[t] = np.where(mask[t][..., None], robot_rgb[t], request.first_frame)
            pointmap[t] = np.where(nearer[..., None], robot_pm[t], scene)
            if progress is not None:
                progress("composite", t + 1, n)
        pm01 = apply_normalization(pointmap, robot.normalization)
        meta = {"backend": self.name, "baseline": True, "seed": int(request.seed), "steps": 0,
                "guidance": None, "guidance_mode": None, "checkpoint": None,
                "description": "static-scene baseline: first frame repeated with the robot render composited in; "
                               "pointmap = first-frame depth back-projected with the robot z-buffered over it",
                "not_modelled": list(self.NOT_MODELLED), "first_depth": request.first_depth is not None,
                "metric": "constructed from metric depth and the robot pointmap; no fit is performed, so "
                          "metric_fit_residual is NaN (not fitted) for every frame"}
        return Rollout(rgb=rgb, pointmap_normalized=pm01, pointmap=pointmap,
                       metric_fit_residual=np.full(n, np.nan, np.float32), K=K,
                       T_base_camera=np.asarray(robot.T_base_camera, np.float64), metadata=meta)


# ------------------------------------------------------------------------------------ registry
_MODEL_OPTIONS = (
    BackendOption("variant", str, "rgb-pm", "robot condition: rgb-pm (robot RGB + pointmap) or pm (pointmap only, "
                  "real robots)", choices=("rgb-pm", "pm")),
    BackendOption("dtype", str, "bf16", "transformer dtype", choices=DTYPES),
    BackendOption("offload", str, "none", "CPU offload: model (whole components) or group (transformer block by "
                  "block)", choices=OFFLOADS),
    BackendOption("batch_passes", bool, True, "run the two guidance passes as one batch"),
    BackendOption("vae_tiling", bool, False, "encode/decode the VAE in tiles (less memory)"),
    BackendOption("compile", bool, False, "torch.compile the repeated transformer blocks"),
    BackendOption("timestep_grid", str, DEFAULT_TIMESTEP_GRID, "sampling grid: release (diffusers 0.34's flow "
                  "UniPC grid, as the released numbers) or modern (the installed diffusers' grid)",
                  choices=TIMESTEP_GRIDS),
)


def _with_default(option: BackendOption, default: Any) -> BackendOption:
    return BackendOption(option.name, option.type, default, option.help, option.choices, option.required,
                         option.flag, option.param)


register_backend(BackendSpec(
    name="kinema4d", summary="model: Kinema4D checkpoint", factory=Kinema4DBackend, fixed_geometry=True,
    default_steps=50,
    options=(BackendOption("base", Path, None, "Wan2.1-I2V-14B-480P-Diffusers folder", required=True,
                           param="base_path"),
             BackendOption("checkpoint", Path, None, "Kinema4D folder (kinema4d_ckpt / kinema4d_pmcond_ckpt, "
                           "or their parent)", required=True, param="checkpoint_path"),
             BackendOption("device", str, "cuda", "torch device: cuda, cuda:N or cpu"),
             *_MODEL_OPTIONS)))
register_backend(BackendSpec(
    name="kinema4d-tiny", summary="reference: tiny preset, random untrained weights (machinery check, not a model)",
    factory=TinyBackend, fixed_geometry=True, default_steps=2,
    options=(BackendOption("checkpoint_dir", Path, None, "a `make-tiny-checkpoint` folder (none: random weights "
                           "built in memory)", flag="checkpoint", param="checkpoint_path"),
             BackendOption("seed", int, 0, "seed of the random tiny weights (without a folder)", flag="weights-seed",
                           param="weights_seed"),
             _with_default(_MODEL_OPTIONS[0], "rgb-pm"),
             BackendOption("device", str, "cpu", "torch device: cuda, cuda:N or cpu"),
             _with_default(_MODEL_OPTIONS[1], "fp32"), *_MODEL_OPTIONS[2:])))
register_backend(BackendSpec(
    name="kinema4d-mini", summary="model: Kinema4D mini trained by scripts/train_mini.sh on the sim world only",
    factory=MiniBackend, fixed_geometry=True, default_steps=10,
    options=(BackendOption("checkpoint_dir", Path, None, "an export of scripts/train_mini.sh (none: "
                           "models/kinema4d-mini)", flag="checkpoint", param="checkpoint_path"),
             BackendOption("device", str, "cpu", "torch device: cpu, cuda or cuda:N"),
             _with_default(_MODEL_OPTIONS[1], "fp32"), _MODEL_OPTIONS[6])))
register_backend(BackendSpec(
    name="static-scene", summary="baseline: no environment dynamics (first frame + robot render)",
    factory=StaticSceneBackend, is_baseline=True, default_steps=0))


def backend_option_names(name: str) -> tuple[str, ...]:
    """The keyword options ``make_backend(name, ...)`` accepts (ConfigError for an unknown name)."""
    return backend_spec(name).option_names


def make_backend(name: str, **options) -> Backend:
    """``kinema4d`` (base=, checkpoint=, variant=, device=, dtype=, offload=, ...),
    ``kinema4d-tiny`` (checkpoint_dir=None, variant=, seed=, ...), ``static-scene`` (no options),
    or any other registered backend (``kinema4d_core.registry``). ConfigError for an unknown
    name, an option the backend does not take or a missing required one."""
    return backend_spec(name).load(**options)
