"""Helpers shared by the model tests (tiny inputs, a synthetic robot condition)."""

from __future__ import annotations

import numpy as np
import torch

from kinema4d_core.model.config import TINY_ARM, TINY_TRANSFORMER
from kinema4d_core.model.transformer import Kinema4DTransformer3DModel

F_LAT, H_LAT, W_HALF = 13, 6, 12   # tiny latent grid per half


def tiny_model(variant: str, seed: int = 0) -> Kinema4DTransformer3DModel:
    torch.manual_seed(seed)
    model = Kinema4DTransformer3DModel(**TINY_TRANSFORMER, robot_condition=variant, **TINY_ARM.to_dict())
    with torch.no_grad():   # robot branch is zero-initialized; make it matter
        for name, p in model.named_parameters():
            if name.startswith(("arm_", "learnable_domain")):
                p.normal_(0, 0.3)
    return model.eval()


def inputs(variant: str, batch: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    wc = 2 * W_HALF if variant == "rgb-pm" else W_HALF
    return dict(hidden_states=torch.randn(batch, 36, F_LAT, H_LAT, 2 * W_HALF, generator=g),
                timestep=torch.full((batch,), 500.0),
                encoder_hidden_states_image=torch.randn(batch, TINY_ARM.image_context_length, 8, generator=g),
                robot_latents=torch.randn(batch, 16, F_LAT, H_LAT, wc, generator=g),
                robot_mask=(torch.rand(batch, 4, F_LAT, H_LAT, wc, generator=g) > 0.5).float())



def synthetic_condition(n_frames: int = TINY_ARM.num_frames, height: int = TINY_ARM.height,
                        width: int = TINY_ARM.width):
    """A RobotCondition with a box-shaped 'robot' moving right, 1 m in front of a pinhole camera."""
    from kinema4d_core.conditioning import Normalization
    from kinema4d_core.projection import RobotCondition

    K = np.array([[60.0, 0, width / 2], [0, 60.0, height / 2], [0, 0, 1]])
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    mask = np.zeros((n_frames, height, width), bool)
    pointmap = np.zeros((n_frames, height, width, 3), np.float32)
    for t in range(n_frames):
        c0 = 10 + t // 2
        mask[t, height // 4: 3 * height // 4, c0: c0 + 20] = True
        z = 1.0 + 0.3 * v / height
        pointmap[t] = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], -1)
    pointmap[~mask] = 0
    rgb = np.where(mask[..., None], np.uint8(200), np.uint8(0)).repeat(3, -1).astype(np.uint8)
    return RobotCondition(pointmap=pointmap, depth=np.where(mask, pointmap[..., 2], 0).astype(np.float32), mask=mask,
                          link_id=np.where(mask, 1, -1).astype(np.int16), rgb=rgb,
                          joint_positions=np.zeros((n_frames, 1)), joint_names=("j1",), K=K, T_base_camera=np.eye(4),
                          normalization=Normalization(low=pointmap[mask].min(0), high=pointmap[mask].max(0)))
