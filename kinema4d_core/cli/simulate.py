"""``kinema4d simulate``: first world image + projected robot condition -> 4D rollout folder.

Checks every argument (folders, frame count, sizes, CUDA) before loading any weights; errors exit
with status 2 and write nothing. Output: see kinema4d_core.rollout (rollout.npz, videos, PLYs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from kinema4d_core.errors import InputError


def register(subparsers) -> None:
    p = subparsers.add_parser("simulate", help="generate a 4D rollout (RGB + metric pointmap) for a robot trajectory",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--first-frame", type=Path, required=True, metavar="IMG", help="current camera image (png/jpg)")
    p.add_argument("--robot", type=Path, required=True, metavar="DIR", help="output folder of `kinema4d project`")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="rollout output folder")
    from kinema4d_core.registry import add_backend_arguments

    add_backend_arguments(p)
    p.add_argument("--steps", type=int, default=0, help="denoising steps (default 0: the backend's default, "
                                                        "50 for kinema4d)")
    p.add_argument("--guidance", type=float, default=5.0, help="guidance scale (default 5.0)")
    p.add_argument("--guidance-mode", choices=("faithful", "single"), default="faithful",
                   help="faithful: released numerics (2 passes, batched); single: one pass, half the compute")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--first-depth", type=Path, metavar="NPY",
                   help="static-scene only: (H, W) float depth in metres for the first frame")
    p.add_argument("--no-points", action="store_true", help="skip the per-frame PLY export")
    p.set_defaults(func=run)


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 from an image file; InputError when missing or unreadable."""
    import imageio.v3 as iio

    if not path.is_file():
        raise InputError(f"{path} does not exist", field="--first-frame")
    try:
        image = np.asarray(iio.imread(path))
    except Exception as exc:  # imageio raises many types for bad files
        raise InputError(f"{path} is not a readable image ({exc})", field="--first-frame") from exc
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InputError(f"expected an RGB image, got shape {image.shape}", field="--first-frame")
    if image.dtype != np.uint8:
        raise InputError(f"expected 8-bit colour, got {image.dtype}", field="--first-frame")
    return np.ascontiguousarray(image[..., :3])


def read_depth(path: Path) -> np.ndarray:
    """(H, W) float32 metres from a .npy file; InputError when missing, unreadable or not 2-D numbers."""
    if not path.is_file():
        raise InputError(f"{path} does not exist", field="--first-depth", fix="pass an (H, W) depth .npy in metres")
    try:
        depth = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:  # not a .npy file, truncated, or an object array
        raise InputError(f"{path} is not a readable .npy array ({exc})", field="--first-depth",
                         fix="save the depth with numpy.save") from exc
    if not isinstance(depth, np.ndarray) or depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
        raise InputError(f"expected an (H, W) numeric array, got {getattr(depth, 'shape', type(depth).__name__)}",
                         field="--first-depth", fix="pass one depth image in metres (not an .npz)")
    return depth.astype(np.float32)


def run(args: argparse.Namespace) -> int:
    from kinema4d_core.cli.replay import backend_options, check_backend_args
    from kinema4d_core.projection import load_robot_condition
    from kinema4d_core.registry import backend_spec
    from kinema4d_core.rollout import save_rollout
    from kinema4d_core.service import EpisodeRequest, prepare_episode

    if args.steps < 0:
        raise InputError(f"must be >= 0 (0: the backend's default), got {args.steps}", field="--steps")
    check_backend_args(args)
    spec = backend_spec(args.backend)
    image = read_image(args.first_frame)
    if not args.robot.is_dir():
        raise InputError(f"{args.robot} does not exist", field="--robot", fix="run `kinema4d project` first")
    robot = load_robot_condition(args.robot)
    depth = None
    if args.first_depth is not None:
        if not spec.is_baseline:
            raise InputError("only the static-scene baseline uses a depth image", field="--first-depth")
        depth = read_depth(args.first_depth)
    request = EpisodeRequest(first_frame=image, condition=robot, first_depth=depth, seed=args.seed,
                             steps=args.steps, guidance=args.guidance, guidance_mode=args.guidance_mode)
    backend = spec.load(**dict(backend_options(args)))
    prepared = prepare_episode(request, backend)          # every check, before any weights load
    rollout = generate_with_progress(backend, prepared)
    save_rollout(rollout, args.out, points=not args.no_points)
    residual = rollout.metric_fit_residual
    print(f"rollout written to {args.out} ({len(rollout.rgb)} frames, backend {rollout.metadata['backend']}, "
          f"median metric fit residual {float(np.nanmedian(residual)) if np.isfinite(residual).any() else float('nan'):.4f} m)")
    return 0


def generate_with_progress(backend, request):
    """Run ``service.simulate_episode`` with a tqdm bar over denoising steps."""
    from tqdm import tqdm

    from kinema4d_core.service import simulate_episode

    bar = None

    def progress(stage: str, step: int, total: int) -> None:
        nonlocal bar
        if stage not in ("denoise", "composite"):
            return
        if bar is None:
            bar = tqdm(total=total, desc=stage, unit="step")
        bar.update(step - bar.n)

    try:
        return simulate_episode(request, backend, progress=progress)
    finally:
        if bar is not None:
            bar.close()
