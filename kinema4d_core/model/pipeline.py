"""Image-to-4D pipeline: first world frame + robot condition video -> RGB + pointmap videos.

No text encoder or tokenizer: the robot tokens take the place of the text context inside the
transformer. Notation: T = 49 frames, H x W per modality (480 x 720 released), F = 13 latent
frames, h = H/8, w = W/8; "2w" is the width-concatenated [RGB | XYZ] latent.

Guidance modes
- ``faithful``: reproduces the released numerics. The released transformer added the robot
  projection to its input tensor in place, so the "unconditional" pass (whose text prompt is
  discarded anyway) saw the projection added twice. Here that is explicit: the two passes are run
  as one batch with ``robot_cond_scale = [1, 2]`` and combined as
  ``pred = f(2x) + g * (f(1x) - f(2x)) = f(1x) + (g - 1) * (f(1x) - f(2x))``.
- ``single``: one pass ``f(1x)`` per step (guidance ignored), half the compute.

Timestep grids (``kinema4d_core.model.schedule``): ``release`` (default) samples on diffusers 0.34's
flow UniPC sigma/timestep grid, which produced the released numbers; ``modern`` keeps the grid the
installed diffusers computes (it differs at most points, e.g. 3 steps: [999, 856, 599] vs
[999, 857, 600]).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from diffusers import DiffusionPipeline

from kinema4d_core.conditioning import latent_mask, uniform_pointmap_image
from kinema4d_core.model.config import MASK_CHANNELS, POINTMAP_LATENT_SCALE, POINTMAP_LATENT_SHIFT
from kinema4d_core.model.schedule import DEFAULT_TIMESTEP_GRID, TIMESTEP_GRIDS, set_timestep_grid
from kinema4d_core.types import GUIDANCE_MODES, Cancelled, ProgressFn


def latent_robot_mask(mask: np.ndarray) -> torch.Tensor:
    """(T, H, W) bool -> (1, 4, F, h, w) float: ``conditioning.latent_mask`` (frame 0 alone, groups of
    4 max-pooled in time, nearest 1/8 in space) repeated to the 4 mask channels."""
    m = torch.from_numpy(latent_mask(mask))                             # (F, h, w)
    return m[None, None].repeat(1, MASK_CHANNELS, 1, 1, 1)


def _to_video(frames01: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) in [0, 1] -> (1, 3, T, H, W) in [-1, 1], float32."""
    return torch.from_numpy(np.ascontiguousarray(frames01, dtype=np.float32)).permute(3, 0, 1, 2)[None] * 2 - 1


@dataclass
class Kinema4DOutput:
    rgb: np.ndarray          # (T, H, W, 3) float32 in [0, 1]
    pointmap01: np.ndarray   # (T, H, W, 3) float32 in [0, 1] (normalized XYZ of the generated world)
    timestep_grid: dict[str, Any] = field(default_factory=dict)   # TimestepGrid.summary() of the grid used


class Kinema4DPipeline(DiffusionPipeline):
    """Kinema4D sampler over diffusers components (transformer = Kinema4DTransformer3DModel)."""

    model_cpu_offload_seq = "image_encoder->transformer->vae"
    _optional_components: list[str] = []

    def __init__(self, transformer, vae, scheduler, image_encoder, image_processor):
        super().__init__()
        self.register_modules(transformer=transformer, vae=vae, scheduler=scheduler, image_encoder=image_encoder,
                              image_processor=image_processor)

    # ------------------------------------------------------------------------------- encoders
    @torch.no_grad()
    def encode_image(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> CLIP penultimate hidden state (1, L_img, image_dim), fp32."""
        device = self._execution_device
        pixels = self.image_processor(images=[image], return_tensors="pt")["pixel_values"]
        enc_device = next(self.image_encoder.parameters()).device
        hidden = self.image_encoder(pixel_values=pixels.to(enc_device, self.image_encoder.dtype),
                                    output_hidden_states=True).hidden_states[-2]
        return hidden.to(device, torch.float32)

    def _latent_stats(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.vae.config.z_dim
        mean = torch.tensor(self.vae.config.latents_mean, dtype=torch.float32, device=device).view(1, z, 1, 1, 1)
        std = torch.tensor(self.vae.config.latents_std, dtype=torch.float32, device=device).view(1, z, 1, 1, 1)
        return mean, std

    @torch.no_grad()
    def vae_encode(self, video: torch.Tensor) -> torch.Tensor:
        """(1, 3, T, H, W) in [-1, 1] -> posterior mode normalized by latents_mean/std (1, 16, F, H/8, W/8)."""
        vae_device = next(self.vae.parameters()).device
        z = self.vae.encode(video.to(vae_device, self.vae.dtype)).latent_dist.mode()
        z = z.to(self._execution_device, torch.float32)
        mean, std = self._latent_stats(z.device)
        return (z - mean) / std

    @staticmethod
    def normalize_pointmap_latent(z: torch.Tensor) -> torch.Tensor:
        return (z - POINTMAP_LATENT_SHIFT) / POINTMAP_LATENT_SCALE

    @staticmethod
    def denormalize_pointmap_latent(z: torch.Tensor) -> torch.Tensor:
        return z * POINTMAP_LATENT_SCALE + POINTMAP_LATENT_SHIFT

    def prepare_condition(self, first_frame: np.ndarray, num_frames: int) -> torch.Tensor:
        """First-frame condition (1, 20, F, h, 2w) = [Wan mask 4 | latent 16].

        Frame 0 is [RGB image | uniform pointmap image] (H, 2W), followed by T-1 zero frames, then
        VAE-encoded; the mask is 1 on the RGB half and 0.5 on the XYZ half of latent frame 0, 0 after.
        """
        height, width = first_frame.shape[:2]
        frame0 = np.concatenate([first_frame.astype(np.float32) / 255.0,
                                 (uniform_pointmap_image(height, width) + 1.0) / 2.0], axis=1)   # (H, 2W, 3)
        video = torch.zeros(1, 3, num_frames, height, 2 * width)
        video[:, :, 0] = _to_video(frame0[None])[:, :, 0]
        latent = self.vae_encode(video)                                                        # (1,16,F,h,2w)
        mask = torch.zeros(1, MASK_CHANNELS, *latent.shape[2:], device=latent.device)
        half = latent.shape[-1] // 2
        mask[:, :, 0, :, :half] = 1.0
        mask[:, :, 0, :, half:] = 0.5
        return torch.cat([mask, latent], dim=1)

    def prepare_robot(self, robot_pointmap01: np.ndarray, robot_mask: np.ndarray,
                      robot_rgb: np.ndarray | None, variant: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Robot latents + latent mask.

        rgb-pm: latents (1, 16, F, h, 2w) = [VAE(robot RGB) | pm-norm(VAE(robot pointmap))], mask
        (1, 4, F, h, 2w) tiled over both halves. pm: (1, 16, F, h, w) and (1, 4, F, h, w).
        variant: default the transformer's ``robot_condition`` (training's latent cache passes it,
        having no transformer loaded).
        """
        device = self._execution_device
        pm_latent = self.normalize_pointmap_latent(self.vae_encode(_to_video(robot_pointmap01)))
        mask = latent_robot_mask(robot_mask).to(device)
        if (variant or self.transformer.config.robot_condition) == "pm":
            return pm_latent, mask
        if robot_rgb is None:
            raise ValueError("variant rgb-pm needs the robot RGB video")
        rgb_latent = self.vae_encode(_to_video(robot_rgb.astype(np.float32) / 255.0))
        return torch.cat([rgb_latent, pm_latent], dim=-1), torch.cat([mask, mask], dim=-1)

    @torch.no_grad()
    def encode_target(self, rgb01: np.ndarray, pointmap01: np.ndarray) -> torch.Tensor:
        """Inverse of :meth:`decode` (training target): RGB and pointmap videos (T, H, W, 3) in [0, 1]
        -> [RGB | XYZ] latent (1, 16, F, h, 2w), encoded at once as one width-concatenated video,
        with the pointmap normalization applied to the XYZ half."""
        z = self.vae_encode(_to_video(np.concatenate([rgb01, pointmap01], axis=2)))
        half = z.shape[-1] // 2
        return torch.cat([z[..., :half], self.normalize_pointmap_latent(z[..., half:])], dim=-1)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(1, 16, F, h, 2w) -> RGB (T, H, W, 3) and pointmap (T, H, W, 3), both in [0, 1].

        The XYZ half's extra normalization is undone, then the whole [RGB | XYZ] latent is decoded
        at once (as it was encoded) and split along width.
        """
        half = latents.shape[-1] // 2
        z = torch.cat([latents[..., :half], self.denormalize_pointmap_latent(latents[..., half:])], dim=-1)
        mean, std = self._latent_stats(z.device)
        z = z * std + mean
        vae_device = next(self.vae.parameters()).device
        video = self.vae.decode(z.to(vae_device, self.vae.dtype), return_dict=False)[0]          # (1,3,T,H,2W)
        video = (video.float().clamp(-1, 1) / 2 + 0.5)[0].permute(1, 2, 3, 0).cpu().numpy()      # (T,H,2W,3)
        width = video.shape[2] // 2
        return np.ascontiguousarray(video[:, :, :width]), np.ascontiguousarray(video[:, :, width:])

    # --------------------------------------------------------------------------------- sampling
    def predict(self, latents: torch.Tensor, condition: torch.Tensor, t: torch.Tensor, image_embeds: torch.Tensor,
                robot_latents: torch.Tensor, robot_mask: torch.Tensor, guidance_scale: float,
                guidance_mode: str, batch_passes: bool) -> torch.Tensor:
        """Flow prediction (1, 16, F, h, 2w) for one step under the chosen guidance mode."""
        dtype = self.transformer.dtype
        model_in = torch.cat([latents, condition], dim=1).to(dtype)                     # (1, 36, F, h, 2w)
        args = dict(encoder_hidden_states_image=image_embeds.to(dtype), robot_latents=robot_latents.to(dtype),
                    robot_mask=robot_mask.to(dtype), return_dict=False)
        if guidance_mode == "single" or guidance_scale == 1.0:
            return self.transformer(model_in, t.expand(1), robot_cond_scale=1.0, **args)[0].float()
        if batch_passes:
            batched = {k: (torch.cat([v, v]) if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
            scale = torch.tensor([1.0, 2.0], device=model_in.device)
            out = self.transformer(torch.cat([model_in, model_in]), t.expand(2), robot_cond_scale=scale,
                                   **batched)[0].float()
            f1, f2 = out[:1], out[1:]
        else:
            f1 = self.transformer(model_in, t.expand(1), robot_cond_scale=1.0, **args)[0].float()
            f2 = self.transformer(model_in, t.expand(1), robot_cond_scale=2.0, **args)[0].float()
        return f2 + guidance_scale * (f1 - f2)

    @torch.no_grad()
    def __call__(self, first_frame: np.ndarray, robot_pointmap01: np.ndarray, robot_mask: np.ndarray,
                 robot_rgb: np.ndarray | None = None, *, num_inference_steps: int = 50, guidance_scale: float = 5.0,
                 guidance_mode: str = "faithful", seed: int = 42, batch_passes: bool = True,
                 timestep_grid: str = DEFAULT_TIMESTEP_GRID, progress: ProgressFn | None = None,
                 should_cancel: Callable[[], bool] | None = None
                 ) -> Kinema4DOutput:
        """Generate T frames. first_frame (H, W, 3) uint8; robot_pointmap01 (T, H, W, 3) in [0, 1]
        (0 outside the robot); robot_mask (T, H, W) bool; robot_rgb (T, H, W, 3) uint8 (rgb-pm).
        timestep_grid: "release" (diffusers 0.34's grid, as released) or "modern" (installed diffusers)."""
        if guidance_mode not in GUIDANCE_MODES:
            raise ValueError(f"guidance_mode must be one of {GUIDANCE_MODES}, got {guidance_mode!r}")
        if timestep_grid not in TIMESTEP_GRIDS:
            raise ValueError(f"timestep_grid must be one of {TIMESTEP_GRIDS}, got {timestep_grid!r}")
        progress = progress or (lambda stage, step, total: None)

        def check_cancel() -> None:
            if should_cancel is not None and should_cancel():
                raise Cancelled("generation cancelled")

        device = self._execution_device
        num_frames = robot_mask.shape[0]
        progress("encode", 0, 1)
        image_embeds = self.encode_image(first_frame)                                   # (1, L_img, image_dim)
        condition = self.prepare_condition(first_frame, num_frames)                     # (1, 20, F, h, 2w)
        robot_latents, robot_mask_lat = self.prepare_robot(robot_pointmap01, robot_mask, robot_rgb)
        progress("encode", 1, 1)
        check_cancel()

        generator = torch.Generator("cpu").manual_seed(int(seed))
        shape = (1, self.vae.config.z_dim, *condition.shape[2:])
        latents = torch.randn(shape, generator=generator, dtype=torch.float32).to(device)   # (1, 16, F, h, 2w)
        grid = set_timestep_grid(self.scheduler, num_inference_steps, timestep_grid, device=device)
        timesteps = self.scheduler.timesteps
        for i, t in enumerate(timesteps):
            check_cancel()
            pred = self.predict(latents, condition, t, image_embeds, robot_latents, robot_mask_lat,
                                guidance_scale, guidance_mode, batch_passes)
            latents = self.scheduler.step(pred, t, latents, return_dict=False)[0]
            progress("denoise", i + 1, len(timesteps))
        check_cancel()
        progress("decode", 0, 1)
        rgb, pointmap01 = self.decode(latents)
        progress("decode", 1, 1)
        self.maybe_free_model_hooks()
        return Kinema4DOutput(rgb=rgb, pointmap01=pointmap01, timestep_grid=grid.summary())

    @classmethod
    def from_components(cls, components) -> "Kinema4DPipeline":
        """Pipeline over :class:`kinema4d_core.model.checkpoint.Components`."""
        return cls(transformer=components.transformer, vae=components.vae, scheduler=components.scheduler,
                   image_encoder=components.image_encoder, image_processor=components.image_processor)
