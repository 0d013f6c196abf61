"""Write the sim camera's ground-truth calibration YAML (default: calibration/sim_camera.yaml).

    python -m kinema4d_core.simworld.export_calibration [--out PATH] [--width W] [--height H]

The file is written atomically (the previous one kept as .bak) by camera.save_calibration.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from kinema4d_core.camera import save_calibration
from kinema4d_core.errors import Kinema4DError
from kinema4d_core.simworld.calibration import sim_camera_model
from kinema4d_core.simworld.scene import SimConfig

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "calibration" / "sim_camera.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH, help="output YAML path")
    parser.add_argument("--width", type=int, default=SimConfig.width, help="image width in pixels")
    parser.add_argument("--height", type=int, default=SimConfig.height, help="image height in pixels")
    args = parser.parse_args(argv)
    try:
        camera = sim_camera_model(replace(SimConfig(), width=args.width, height=args.height))
        save_calibration(camera, args.out)
    except Kinema4DError as exc:
        print(f"export_calibration: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({camera.width}x{camera.height}, fx={camera.K[0, 0]:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
