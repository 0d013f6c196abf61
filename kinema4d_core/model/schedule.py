"""Sampling grids (sigmas and timesteps) of the flow UniPC scheduler, computed in our own code.

The released Kinema4D numbers were produced with diffusers 0.34. Its ``UniPCMultistepScheduler``
(``use_flow_sigmas=True``) builds the grid for ``n`` steps from ``N = num_train_timesteps`` and the
shift ``s = flow_shift`` as

    u      = 1 - linspace(1, 1/N, n + 1)              # 0 ... 1 - 1/N, increasing
    sigma  = flip(s * u / (1 + (s - 1) * u))[:-1]     # shifted, decreasing, n values
    t      = trunc(sigma * N)                         # int64 timesteps
    sigmas = [*sigma, 0]                              # final_sigmas_type "zero" (or sigma[-1]: "sigma_min")

Newer diffusers (0.42 here) shift ``linspace(1, 1/N, n + 1)[:-1]`` directly and clamp the first sigma
below 1, so the points move by one linspace interval: 3 steps give timesteps [999, 856, 599]
(release) against [999, 857, 600] (modern). ``release`` reproduces the release; ``modern`` is what
the installed diffusers computes. Both are in noise level units: sigma 1 = pure noise, 0 = clean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kinema4d_core.errors import ConfigError

#: "release": diffusers 0.34's grid (the released numbers); "modern": the installed diffusers' grid
TIMESTEP_GRIDS: tuple[str, ...] = ("release", "modern")
DEFAULT_TIMESTEP_GRID = "release"


@dataclass(frozen=True)
class TimestepGrid:
    """One sampling grid. sigmas: (n + 1,) float32 noise levels, decreasing, last = final sigma
    (0 for final_sigmas_type "zero"); timesteps: (n,) int64 model timesteps in [0, N)."""

    name: str
    sigmas: np.ndarray
    timesteps: np.ndarray

    def summary(self) -> dict[str, Any]:
        """JSON-ready record for rollout metadata: the grid name, its timesteps and sigmas (6 decimals)."""
        return {"name": self.name, "timesteps": [int(t) for t in self.timesteps],
                "sigmas": [round(float(s), 6) for s in self.sigmas]}


def _flow_config(config: Any) -> tuple[int, float, str]:
    """(num_train_timesteps, flow_shift, final_sigmas_type) of a flow UniPC config; ConfigError otherwise."""
    get = config.get if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
    if not get("use_flow_sigmas", False) or get("prediction_type") != "flow_prediction":
        raise ConfigError("the release timestep grid is defined for flow-matching UniPC schedulers only "
                          f"(use_flow_sigmas={get('use_flow_sigmas', False)}, "
                          f"prediction_type={get('prediction_type')!r})", field="timestep_grid",
                          fix="use --timestep-grid modern with this scheduler")
    if get("use_karras_sigmas", False) or get("use_exponential_sigmas", False) or get("use_beta_sigmas", False):
        raise ConfigError("the scheduler config asks for karras/exponential/beta sigmas, which the flow grid "
                          "does not use", field="timestep_grid", fix="use --timestep-grid modern")
    if get("use_dynamic_shifting", False) or get("shift_terminal", None):
        raise ConfigError("the scheduler config uses dynamic shifting or shift_terminal, which the release grid "
                          "(a fixed flow_shift) does not define", field="timestep_grid",
                          fix="use --timestep-grid modern")
    final = get("final_sigmas_type", "zero") or "zero"
    if final not in ("zero", "sigma_min"):
        raise ConfigError(f"unknown final_sigmas_type {final!r}", field="base/scheduler",
                          fix="use 'zero' or 'sigma_min'")
    return int(get("num_train_timesteps", 1000)), float(get("flow_shift", 1.0)), final


def release_grid(num_inference_steps: int, config: Any) -> TimestepGrid:
    """diffusers 0.34's flow UniPC grid for ``num_inference_steps`` from a scheduler ``config``
    (a diffusers FrozenDict / dict with use_flow_sigmas, flow_shift, num_train_timesteps,
    final_sigmas_type). Computed in float64 like numpy did there; sigmas stored as float32."""
    n = int(num_inference_steps)
    if n < 1:
        raise ConfigError(f"num_inference_steps must be >= 1, got {n}", field="steps", fix="use 1 or more steps")
    num_train, shift, final = _flow_config(config)
    alphas = np.linspace(1.0, 1.0 / num_train, n + 1)
    u = 1.0 - alphas
    sigma = np.flip(shift * u / (1.0 + (shift - 1.0) * u))[:-1].copy()
    timesteps = (sigma * num_train).astype(np.int64)            # truncation, as torch int64 cast did
    last = 0.0 if final == "zero" else sigma[-1]
    sigmas = np.concatenate([sigma, [last]]).astype(np.float32)
    return TimestepGrid("release", sigmas, timesteps)


def installed_grid(scheduler: Any) -> TimestepGrid:
    """The grid the scheduler holds now (after ``set_timesteps``), as a ``modern`` TimestepGrid."""
    return TimestepGrid("modern", scheduler.sigmas.detach().cpu().float().numpy().copy(),
                        scheduler.timesteps.detach().cpu().numpy().astype(np.int64).copy())


def set_timestep_grid(scheduler: Any, num_inference_steps: int, grid: str = DEFAULT_TIMESTEP_GRID,
                      device: Any = None) -> TimestepGrid:
    """``scheduler.set_timesteps(n)`` (resets the solver history), then, for ``grid="release"``,
    replace its ``sigmas`` (CPU, float32, final sigma appended) and ``timesteps`` (``device``,
    int64) with the release grid. Returns the grid in use."""
    if grid not in TIMESTEP_GRIDS:
        raise ConfigError(f"unknown timestep grid {grid!r}", field="timestep_grid", fix=f"use one of {TIMESTEP_GRIDS}")
    scheduler.set_timesteps(num_inference_steps, device=device)
    if grid == "modern":
        return installed_grid(scheduler)
    import torch

    out = release_grid(num_inference_steps, scheduler.config)
    scheduler.sigmas = torch.from_numpy(out.sigmas.copy())
    scheduler.timesteps = torch.from_numpy(out.timesteps.copy()).to(device=device)
    scheduler.num_inference_steps = len(out.timesteps)
    return out
