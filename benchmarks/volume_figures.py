"""One figure for the 3D benchmark: per case, the axial slice through the click, with outlines.

Each panel is cropped around the structure (with a margin), shows the scan in grey and outlines the
reference (green), the engine's result for the click (red) and the best baseline's (yellow); the click is a
cross. Kept small (one PNG, low dpi) so the docs stay light.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

COLOURS = {"reference": "#2ca02c", "engine": "#d62728", "baseline": "#ffdd00"}


def click_panel(
    title: str,
    image: np.ndarray,
    spacing_xyz: Sequence[float],
    seed_xyz: Sequence[int],
    reference: np.ndarray,
    engine: np.ndarray,
    baseline: np.ndarray,
) -> dict[str, Any]:
    """The panel of `draw_cases` for the axial slice through a click: (Z, Y, X) volumes cut at the seed's z."""
    z = int(seed_xyz[2])
    return {
        "title": title,
        "image": image[z],
        "reference": reference[z],
        "engine": engine[z],
        "baseline": baseline[z],
        "seed_yx": (seed_xyz[1], seed_xyz[0]),
        "aspect": spacing_xyz[1] / spacing_xyz[0],
    }


def crop_around(reference: np.ndarray, seed_yx: Sequence[int], margin: float = 0.35) -> tuple[slice, slice]:
    """The structure's bounding box on this slice grown by `margin` of its size (at least 12 pixels)."""
    ys, xs = np.nonzero(reference)
    if ys.size == 0:
        ys, xs = np.array([seed_yx[0]]), np.array([seed_yx[1]])
    box = []
    for lo, hi, n in ((ys.min(), ys.max(), reference.shape[0]), (xs.min(), xs.max(), reference.shape[1])):
        pad = max(12, int(margin * (hi - lo + 1)))
        box.append(slice(max(0, int(lo) - pad), min(n, int(hi) + 1 + pad)))
    return box[0], box[1]


def draw_outline(ax, mask: Optional[np.ndarray], colour: str, aspect: float) -> None:
    """Outline `mask` on `ax` in `colour` (nothing for an empty or full mask, which has no outline)."""
    if mask is None or not mask.any() or mask.all():
        return
    ax.contour(mask.astype(np.float32), levels=[0.5], colors=[colour], linewidths=0.9)


def draw_slice(
    ax,
    image: np.ndarray,
    outlines: Sequence[tuple[Optional[np.ndarray], str]],
    seed_yx: Sequence[int],
    aspect: float,
    crop_to: np.ndarray,
) -> None:
    """One slice in grey, cropped around `crop_to` (`crop_around`), with each (mask, colour) of `outlines`
    outlined and the click as a cyan cross."""
    ys, xs = crop_around(crop_to, seed_yx)
    image = image[ys, xs]
    lo, hi = np.percentile(image, [1, 99])
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, aspect=aspect, interpolation="nearest")
    for mask, colour in outlines:
        draw_outline(ax, None if mask is None else mask[ys, xs], colour, aspect)
    ax.plot([seed_yx[1] - xs.start], [seed_yx[0] - ys.start], "+", color="cyan", ms=6)


def draw_cases(
    panels: Sequence[dict[str, Any]],
    path: Path,
    columns: int = 5,
    legend: Sequence[str] = ("reference", "engine (click)", "best baseline (click)"),
) -> Path:
    """Write one PNG of all panels. A panel: title, image (Y, X), reference, engine, baseline masks, seed_yx,
    aspect (row spacing / column spacing); `legend` names the three outlines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.3 * columns, 2.5 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, panel in zip(axes.ravel(), panels):
        outlines = [(panel.get(key), COLOURS[key]) for key in ("reference", "engine", "baseline")]
        draw_slice(ax, panel["image"], outlines, panel["seed_yx"], panel["aspect"], panel["reference"])
        ax.set_title(panel["title"], fontsize=6.5)
    handles = [Line2D([0], [0], color=c, lw=1.5) for c in COLOURS.values()]
    fig.legend(
        handles,
        list(legend),
        loc="lower center",
        ncol=3,
        fontsize=7,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
