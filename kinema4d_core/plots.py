"""PNG plots of evaluation results with PIL (no matplotlib), written atomically (moved verbatim
from ``evaluation``, which re-exports these names)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


# ----------------------------------------------------------------------------------------------
# Plots (PIL, no matplotlib)
# ----------------------------------------------------------------------------------------------

PALETTE = [(52, 101, 164), (237, 125, 49), (112, 173, 71), (165, 165, 165), (255, 192, 0)]


def bar_chart_png(path: str | Path, labels: Sequence[str], series: dict[str, Sequence[float | None]],
                  title: str, ylabel: str = "", size: tuple[int, int] = (720, 400)) -> None:
    """Grouped bar chart written atomically as PNG. None / non-finite values are drawn as gaps."""
    from PIL import Image, ImageDraw

    from kinema4d_core.io import atomic_path

    w, h = size
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    left, right, top, bottom = 60, 20, 40, 70
    vals = [float(v) for s in series.values() for v in s if v is not None and np.isfinite(v)]
    vmax = max(vals + [1e-9]) * 1.1
    vmin = min(vals + [0.0])
    vmin = vmin * 1.1 if vmin < 0 else 0.0
    y_of = lambda v: top + (h - top - bottom) * (vmax - v) / (vmax - vmin)  # noqa: E731
    draw.text((left, 10), title, fill="black")
    draw.text((5, top - 15), ylabel, fill="black")
    draw.line([(left, top), (left, h - bottom), (w - right, h - bottom)], fill="black")
    for k in range(5):
        v = vmin + (vmax - vmin) * k / 4
        draw.line([(left - 4, y_of(v)), (left, y_of(v))], fill="black")
        draw.text((5, y_of(v) - 6), f"{v:.3g}", fill="black")
    n, m = max(len(labels), 1), max(len(series), 1)
    group_w = (w - left - right) / n
    bar_w = group_w * 0.8 / m
    for i, lab in enumerate(labels):
        x0 = left + i * group_w + group_w * 0.1
        for j, (name, values) in enumerate(series.items()):
            v = values[i] if i < len(values) else None
            if v is None or not np.isfinite(v):
                continue
            xa = x0 + j * bar_w
            draw.rectangle([xa, min(y_of(v), y_of(0)), xa + bar_w - 2, max(y_of(v), y_of(0))],
                           fill=PALETTE[j % len(PALETTE)])
        draw.text((x0, h - bottom + 5), str(lab)[:14], fill="black")
    for j, name in enumerate(series):
        draw.rectangle([left + 10 + 150 * j, h - 22, left + 22 + 150 * j, h - 10], fill=PALETTE[j % len(PALETTE)])
        draw.text((left + 28 + 150 * j, h - 23), name, fill="black")
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
