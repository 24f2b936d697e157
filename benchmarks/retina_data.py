"""The retina images of the CUTS paper's Table 1 (56 fundus photographs with expert GA masks), as samples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from CUTSSegmentationLib.condense.binarize import innermost_point
from CUTSSegmentationLib.io.reading import read_image


@dataclass
class Sample:
    name: str
    image: "object"  # ImageData
    rgb: np.ndarray  # (Y, X, 3) uint8
    truth: np.ndarray  # (Y, X) bool
    seed_xy: tuple[int, int]


def load_retina(data_dir: Path) -> list[Sample]:

    samples = []
    for path in sorted((data_dir / "image_with_GA").glob("image*.png")):
        label = data_dir / "label_with_GA" / f"label{path.stem[5:]}.npy"
        if not label.is_file():
            continue
        image = read_image(path)
        truth = np.load(label) != 0
        rgb = np.clip(np.rint(image.array[0]), 0, 255).astype(np.uint8)
        samples.append(Sample(path.stem, image, rgb, truth, tuple(innermost_point(truth))))
    if not samples:
        raise SystemExit(f"no retina images found under {data_dir} (set --data or CUTS_RETINA_DIR)")
    return samples


def pick(n_total: int, n: Optional[int]) -> list[int]:
    """Indices of `n` images spread evenly over the sorted list (all when n is None or >= n_total)."""
    if n is None or n >= n_total:
        return list(range(n_total))
    return sorted({int(round(v)) for v in np.linspace(0, n_total - 1, n)})
