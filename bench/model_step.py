"""Kinema4D model timings: per denoising step, VAE encode/decode, end to end, peak GPU memory.

CUDA present: builds the FULL-size architecture (Wan2.1 I2V 14B + robot branch, 49 x 480 x 720
per modality) with random weights on the meta device, materialized on the GPU in bf16 (no
download), and times each option: faithful (2 batched passes) vs single, SDPA, optional
torch.compile; VAE (random full-size Wan VAE) encode/decode with and without tiling.
No CUDA: runs the tiny preset on CPU and prints its figures.

    .venv/bin/python bench/model_step.py [--steps 3] [--compile] [--skip-vae]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def timed(fn, repeat: int = 1, sync: bool = False) -> float:
    """Seconds per call (best of ``repeat``)."""
    best = float("inf")
    for _ in range(repeat):
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def cpu_tiny(steps: int) -> None:
    import tempfile

    from kinema4d_core.backends import GenerationRequest, make_backend
    from kinema4d_core.conditioning import Normalization
    from kinema4d_core.model.config import TINY_ARM

    torch.set_num_threads(max(1, torch.get_num_threads()))
    n, h, w = TINY_ARM.num_frames, TINY_ARM.height, TINY_ARM.width
    mask = np.zeros((n, h, w), bool)
    mask[:, 12:36, 30:60] = True
    pm = np.zeros((n, h, w, 3), np.float32)
    pm[..., 0] = np.linspace(-0.4, 0.4, w, dtype=np.float32)
    pm[..., 1] = np.linspace(-0.2, 0.2, h, dtype=np.float32)[:, None]
    pm[..., 2] = 1.0
    pm[~mask] = 0.0

    class Cond:  # minimal RobotCondition stand-in (bench only)
        pointmap, rgb = pm, (mask[..., None] * np.uint8(200)).repeat(3, -1)
        K, T_base_camera = np.array([[60.0, 0, w / 2], [0, 60, h / 2], [0, 0, 1]]), np.eye(4)
        normalization = Normalization(low=np.zeros(3, np.float32), high=np.full(3, 1.5, np.float32))
    Cond.mask = mask
    frame = np.zeros((h, w, 3), np.uint8)
    print(f"device: CPU ({torch.get_num_threads()} threads), tiny preset, {n} frames {h}x{w} per modality")
    with tempfile.TemporaryDirectory() as tmp:
        from kinema4d_core.model.tiny import make_tiny_checkpoint

        t_make = timed(lambda: make_tiny_checkpoint(tmp, seed=0))
        print(f"make tiny checkpoint: {t_make:.2f} s")
        for variant in ("rgb-pm", "pm"):
            backend = make_backend("kinema4d-tiny", checkpoint_dir=tmp, variant=variant)
            t_load = timed(backend.load)
            pipe = backend._pipe
            video = torch.zeros(1, 3, n, h, 2 * w)
            with torch.no_grad():
                pipe.vae_encode(video)  # warm-up
                t_enc = timed(lambda: pipe.vae_encode(video), repeat=3)
                lat = pipe.vae_encode(video)
                t_dec = timed(lambda: pipe.decode(lat), repeat=3)
                x = torch.randn(1, 16, *lat.shape[2:])
                cond = torch.randn(1, 20, *lat.shape[2:])
                img = torch.randn(1, TINY_ARM.image_context_length, 8)
                wc = lat.shape[-1] if variant == "rgb-pm" else lat.shape[-1] // 2
                rl, rm = torch.randn(1, 16, *lat.shape[2:4], wc), torch.ones(1, 4, *lat.shape[2:4], wc)
                t = torch.tensor(500.0)
                per_step = {m: timed(lambda m=m: pipe.predict(x, cond, t, img, rl, rm, 5.0, m, True), repeat=5)
                            for m in ("faithful", "single")}
            for mode in ("faithful", "single"):
                req = GenerationRequest(frame, Cond, steps=steps, guidance_mode=mode)
                backend.generate(req)
                t_e2e = timed(lambda: backend.generate(req), repeat=2)
                print(f"[{variant:6s} {mode:8s}] load {t_load:.2f} s | step {1e3 * per_step[mode]:.1f} ms | "
                      f"VAE encode (49 f, {h}x{2 * w}) {t_enc:.2f} s | decode {t_dec:.2f} s | "
                      f"end-to-end {steps} steps {t_e2e:.2f} s")


def gpu_full(steps: int, use_compile: bool, skip_vae: bool) -> None:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLWan

    from kinema4d_core.model.transformer import Kinema4DTransformer3DModel

    dev = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(0)}, full size, 49 frames 480x720 per modality, bf16")
    for variant in ("rgb-pm", "pm"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        with init_empty_weights(include_buffers=False):
            model = Kinema4DTransformer3DModel(robot_condition=variant)
        rope_tables = {n: b.clone() for n, b in model.rope.named_buffers()}   # real CPU tensors
        model = model.to_empty(device=dev).to(torch.bfloat16)             # to_empty also blanks buffers
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.02)
        for n, b in rope_tables.items():
            setattr(model.rope, n, b.to(dev))
        keep = model._keep_in_fp32_modules                                 # as load_transformer leaves them
        for name, module in model.named_modules():
            if any(k in name.split(".") for k in keep):
                module.float()
        model.scale_shift_table.data = model.scale_shift_table.data.float()
        for block in model.blocks:
            block.scale_shift_table.data = block.scale_shift_table.data.float()
        model.eval().requires_grad_(False)
        if use_compile:
            model.compile_repeated_blocks(fullgraph=True)
        wc = 180 if variant == "rgb-pm" else 90
        args = lambda b: dict(hidden_states=torch.randn(b, 36, 13, 60, 180, device=dev, dtype=torch.bfloat16),  # noqa: E731
                              timestep=torch.full((b,), 500.0, device=dev),
                              encoder_hidden_states_image=torch.randn(b, 257, 1280, device=dev, dtype=torch.bfloat16),
                              robot_latents=torch.randn(b, 16, 13, 60, wc, device=dev, dtype=torch.bfloat16),
                              robot_mask=torch.ones(b, 4, 13, 60, wc, device=dev, dtype=torch.bfloat16),
                              robot_cond_scale=torch.tensor([1.0, 2.0][:b], device=dev), return_dict=False)
        with torch.no_grad():
            for batch, mode in ((2, "faithful (batched 2 passes)"), (1, "single")):
                a = args(batch)
                model(**a)
                t_step = timed(lambda m=model, a=a: m(**a), repeat=2, sync=True)
                peak = torch.cuda.max_memory_allocated() / 2**30
                print(f"[{variant:6s} {mode:28s}] step {t_step:.2f} s -> {steps} steps {t_step * steps / 60:.1f} min "
                      f"(50 steps {t_step * 50 / 60:.1f} min) | peak {peak:.1f} GiB")
        del model
    if skip_vae:
        return
    vae = AutoencoderKLWan().to(dev, torch.float32).eval()
    video = torch.zeros(1, 3, 49, 480, 1440, device=dev)
    for tiling in (False, True):
        if tiling:
            vae.enable_tiling()
        torch.cuda.reset_peak_memory_stats()
        try:
            with torch.no_grad():
                t_enc = timed(lambda: vae.encode(video).latent_dist.mode(), sync=True)
                lat = vae.encode(video).latent_dist.mode()
                t_dec = timed(lambda: vae.decode(lat), sync=True)
            print(f"[VAE fp32 tiling={tiling}] encode {t_enc:.1f} s | decode {t_dec:.1f} s | "
                  f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
        except torch.OutOfMemoryError:
            print(f"[VAE fp32 tiling={tiling}] out of memory")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="denoising steps for the end-to-end figure")
    parser.add_argument("--compile", action="store_true", help="torch.compile the repeated blocks (GPU)")
    parser.add_argument("--skip-vae", action="store_true")
    args = parser.parse_args()
    if torch.cuda.is_available():
        gpu_full(args.steps, args.compile, args.skip_vae)
    else:
        cpu_tiny(args.steps)


if __name__ == "__main__":
    main()
