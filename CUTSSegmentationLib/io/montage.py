"""PNG montage of a hierarchy (like the paper's Fig. 3A): the input, every kept level, the persistent map.

Colours follow label ids, and ids persist across levels (a merge keeps one member's id), so a structure
keeps its colour while it survives from fine to coarse levels. Pure numpy + Pillow (a scikit-image
dependency): no plotting library needed at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image, ImageDraw

from ..condense.hierarchy import Hierarchy
from .writing import write_png

_GOLDEN = 0.618033988749895


def label_colors(max_label: int) -> np.ndarray:
    """(max_label + 1, 3) uint8 colours: 0 is black, ids spread over hue by the golden ratio."""
    ids = np.arange(max_label + 1)
    hue = (ids * _GOLDEN) % 1.0
    sat = 0.55 + 0.35 * ((ids * 0.37) % 1.0)
    val = 0.75 + 0.25 * ((ids * 0.73) % 1.0)
    i = np.floor(hue * 6).astype(int) % 6
    f = hue * 6 - np.floor(hue * 6)
    p, q, t = val * (1 - sat), val * (1 - f * sat), val * (1 - (1 - f) * sat)
    table = np.select(
        [i[:, None] == k for k in range(6)],
        [np.stack(c, 1) for c in ((val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q))],
    )
    colors = (255 * table).astype(np.uint8)
    colors[0] = 0
    return colors


def colorize(labels: np.ndarray) -> np.ndarray:
    """(H, W) labels -> (H, W, 3) uint8."""
    return label_colors(int(labels.max()))[labels]


def _to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, C) float image -> uint8 RGB, contrast-stretched per image (1st-99th percentile)."""
    lo, hi = np.percentile(image, [1, 99])
    scaled = np.clip((image - lo) / max(hi - lo, 1e-12), 0, 1)
    if scaled.shape[-1] == 1:
        scaled = np.repeat(scaled, 3, axis=-1)
    return (255 * scaled[..., :3]).astype(np.uint8)


def _upscale(tile: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize so small images still show crisp labels."""
    h, w = tile.shape[:2]
    scale = size / max(h, w)
    rows = np.minimum((np.arange(int(round(h * scale))) / scale).astype(int), h - 1)
    cols = np.minimum((np.arange(int(round(w * scale))) / scale).astype(int), w - 1)
    return tile[rows][:, cols]


def hierarchy_montage(
    hierarchy: Hierarchy,
    image: Optional[np.ndarray] = None,
    slice_index: Optional[int] = None,
    tile: int = 192,
    columns: int = 6,
) -> np.ndarray:
    """RGB montage: [input] + levels (finest -> coarsest, captioned with cluster counts) + [persistent].

    `image` is the input as (Z, Y, X, C) or (Y, X, C); for volumes the middle slice is shown unless
    `slice_index` is given.
    """

    def pick(labels: np.ndarray) -> np.ndarray:
        if hierarchy.is_2d:
            return labels
        z = labels.shape[0] // 2 if slice_index is None else slice_index
        return labels[z]

    tiles: list[tuple[np.ndarray, str]] = []
    if image is not None:
        arr = np.asarray(image)
        if arr.ndim == 4:
            arr = arr[arr.shape[0] // 2 if slice_index is None else slice_index]
        tiles.append((_to_uint8_rgb(arr), "input"))
    for i in range(hierarchy.n_levels):
        tiles.append((colorize(pick(hierarchy.levels[i])), f"level {i}: {int(hierarchy.n_clusters[i])} clusters"))
    if hierarchy.persistent is not None:
        tiles.append((colorize(pick(hierarchy.persistent)), "persistent"))

    caption_h = 16
    scaled = [(_upscale(t, tile), c) for t, c in tiles]
    th = max(t.shape[0] for t, _ in scaled)
    tw = max(t.shape[1] for t, _ in scaled)
    columns = max(1, min(columns, len(scaled)))
    rows = (len(scaled) + columns - 1) // columns
    canvas = Image.new("RGB", (columns * (tw + 4) + 4, rows * (th + caption_h + 4) + 4), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for k, (t, caption) in enumerate(scaled):
        r, c = divmod(k, columns)
        x0, y0 = 4 + c * (tw + 4), 4 + r * (th + caption_h + 4)
        canvas.paste(Image.fromarray(t), (x0, y0 + caption_h))
        draw.text((x0 + 2, y0 + 2), caption, fill=(0, 0, 0))
    return np.asarray(canvas)


def save_montage(hierarchy: Hierarchy, path: Union[str, Path], image: Optional[np.ndarray] = None) -> Path:
    return write_png(hierarchy_montage(hierarchy, image), path)
