"""A small IMAGE plot of the per-step reflection diagnostics, drawn with PIL (no plotting dependency)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..w2sd_core import ReflectionDiagnostics, StopTracker

WIDTH, HEIGHT, MARGIN = 512, 320, 36


def _panel(
    draw: ImageDraw.ImageDraw,
    top: int,
    height: int,
    values: Sequence[float],
    lo: float,
    hi: float,
    color: tuple[int, int, int],
    label: str,
) -> None:
    left, right = MARGIN, WIDTH - 10
    draw.rectangle([left, top, right, top + height], outline=(90, 90, 90))
    draw.text((left + 4, top + 2), label, fill=(220, 220, 220))
    if hi <= lo:
        hi = lo + 1.0
    if lo < 0 < hi:
        zero = top + height - (0 - lo) / (hi - lo) * height
        draw.line([left, zero, right, zero], fill=(70, 70, 70))
    draw.text((4, top), f"{hi:.2g}", fill=(160, 160, 160))
    draw.text((4, top + height - 10), f"{lo:.2g}", fill=(160, 160, 160))
    n = len(values)
    points = []
    for i, v in enumerate(values):
        if not math.isfinite(v):
            continue
        x = left + (i + 0.5) / max(n, 1) * (right - left)
        y = top + height - (min(max(v, lo), hi) - lo) / (hi - lo) * height
        points.append((x, y))
    if len(points) > 1:
        draw.line(points, fill=color, width=2)
    for x, y in points:
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=color)


def plot_image(sizes: Sequence[float], cosines: Sequence[float], title: str, note: str = "") -> torch.Tensor:
    """IMAGE tensor [1, H, W, 3] in 0..1: reflection size per reflected step, and direction cosine.

    `note` goes on the bottom line (which steps reflected, where an adaptive window stopped).
    """
    image = Image.new("RGB", (WIDTH, HEIGHT), (24, 24, 28))
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, 6), title[:70], fill=(255, 255, 255))
    if note:
        draw.text((MARGIN, HEIGHT - 14), note[:78], fill=(255, 220, 140))
    if not sizes:
        draw.text(
            (MARGIN, HEIGHT // 2),
            "no reflection steps ran (empty window): this was plain sampling",
            fill=(255, 200, 120),
        )
    else:
        finite = [s for s in sizes if math.isfinite(s)] or [0.0]
        _panel(
            draw,
            24,
            130,
            sizes,
            0.0,
            max(finite) * 1.1,
            (120, 200, 255),
            "reflection size |x~ - x| / |x| per reflected step",
        )
        _panel(
            draw,
            174,
            130,
            cosines,
            -1.0,
            1.0,
            (255, 170, 90),
            "cosine between successive reflection directions",
        )
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array)[None]


def diagnostics_image(
    diagnostics: ReflectionDiagnostics | None,
    title: str,
    stop: StopTracker | None = None,
    first_step: int = 0,
) -> torch.Tensor:
    """The plot for a run's diagnostics (None or empty: a note that nothing reflected).

    `first_step`: the run was a stage starting at that step; the note numbers steps in the whole schedule.
    """
    if diagnostics is None or len(diagnostics) == 0:
        return plot_image([], [], title)
    note = reflected_note(diagnostics, stop, first_step)
    return plot_image(diagnostics.sizes(), diagnostics.cosines(), title, note)


def reflected_note(diagnostics: ReflectionDiagnostics, stop: StopTracker | None, first_step: int = 0) -> str:
    """Which steps reflected, and why an adaptive window ended where it did."""
    steps = [first_step + i for i in diagnostics.steps]
    shown = (
        f"{steps[0]}-{steps[-1]}"
        if steps == list(range(steps[0], steps[-1] + 1))
        else ",".join(map(str, steps))
    )
    note = f"reflected steps {shown}"
    if stop is not None:
        note += f"; adaptive stop after {stop.reason}" if stop.stopped else "; adaptive: never stopped"
    return note
