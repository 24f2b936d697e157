"""Deterministic, distinct segment colours for cluster labels.

Why a fixed palette keyed by the label value: a cluster keeps its id across levels (see
`CUTSSegmentationLib.condense.hierarchy`), so keying the colour on the label makes a structure keep its colour while the
user drags the granularity slider; random colours would make every step look like a different segmentation.
Two labels of one level may still want the same palette slot; those collisions are resolved by taking the next
free slot, so the colours of one level are always pairwise distinct.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterable

RGB = tuple[float, float, float]

#: Kelly's colours of maximum contrast (white, black and grey left out: they vanish on a grey image).
_BASE: tuple[RGB, ...] = tuple(
    (r / 255.0, g / 255.0, b / 255.0)
    for r, g, b in (
        (230, 159, 0),
        (86, 180, 233),
        (0, 158, 115),
        (240, 228, 66),
        (0, 114, 178),
        (213, 94, 0),
        (204, 121, 167),
        (243, 195, 0),
        (135, 86, 146),
        (243, 132, 0),
        (161, 202, 241),
        (190, 0, 50),
        (194, 178, 128),
        (0, 136, 86),
        (230, 143, 172),
        (0, 103, 165),
        (249, 147, 121),
        (96, 78, 151),
        (246, 166, 0),
        (179, 68, 108),
        (220, 211, 0),
        (136, 45, 23),
        (141, 182, 0),
        (101, 69, 34),
        (226, 88, 34),
        (43, 61, 38),
    )
)

_GOLDEN = 0.618033988749895


def _generated(index: int) -> RGB:
    """Colour number `index` beyond the base palette: golden-ratio hue steps, three saturation/value rings."""
    hue = (index * _GOLDEN) % 1.0
    ring = index % 3
    sat = (0.85, 0.6, 0.95)[ring]
    val = (0.95, 0.8, 0.65)[ring]
    return colorsys.hsv_to_rgb(hue, sat, val)


#: The fixed palette: 26 hand-picked colours, then generated ones up to 256 entries.
PALETTE: tuple[RGB, ...] = _BASE + tuple(_generated(i) for i in range(256 - len(_BASE)))


def label_colors(labels: Iterable[int]) -> dict[int, RGB]:
    """Colour for every label: palette[label % len] unless taken by an earlier label of the same call.

    Past 256 labels the palette is exhausted and further colours are generated (still distinct as RGB
    triplets, if no longer easy to tell apart by eye).
    """
    out: dict[int, RGB] = {}
    used: set[int] = set()
    seen: set[RGB] = set(PALETTE)
    n = len(PALETTE)
    extra = 0
    for label in labels:
        label = int(label)
        if len(used) < n:
            slot = label % n
            while slot in used:
                slot = (slot + 1) % n
            used.add(slot)
            out[label] = PALETTE[slot]
        else:
            colour = _generated(n + extra)
            extra += 1
            while colour in seen:  # pragma: no cover - practically never
                colour = _generated(n + extra)
                extra += 1
            seen.add(colour)
            out[label] = colour
    return out
