"""`cuts demo`: the whole job on bundled data, no download.

Two inputs ship with the installation: the colour fundus photograph of scikit-image (`skimage.data.retina`,
the paper's first application, resized to 256 x 256) and a synthetic 3D head phantom with known structures
(`evaluate.phantom.synthetic_phantom_3d`). For each, the demo trains a small encoder on the input, condenses its
embeddings, and writes the same outputs as `cuts segment` plus the model, the input as a file Slicer can
open, and (for the phantom) the ground truth and the Dice of the best level against each true structure.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk
from skimage import data
from skimage.transform import resize

from .condense.binarize import binarize_with_hint
from .core.imagedata import ImageData
from .core.progress import ProgressCallback, no_progress
from .evaluate.metrics import dice
from .evaluate.phantom import synthetic_phantom_3d
from .io.outputs import write_segmentation_outputs
from .io.staging import atomic_write, staged_outputs
from .io.writing import itk_image_from_volume, write_label_image, write_png
from .learn.modelfile import save_model
from .pipeline import segment, train

#: Default epochs for the phantom's 32 slices (2 optimiser steps each): about as long as the retina's
#: default per-image training, so the whole demo takes a few minutes on a laptop CPU.
PHANTOM_DEMO_EPOCHS = 60


def demo_retina_image(size: int = 256) -> ImageData:
    """scikit-image's bundled fundus photograph as an 8-bit RGB image of `size` x `size`."""
    rgb = data.retina()
    small = resize(rgb, (size, size), anti_aliasing=True, preserve_range=True)
    array = np.clip(np.round(small), 0, 255).astype(np.float32)[None]
    return ImageData(array=array, is_2d=True, source="skimage.data.retina", source_dtype="uint8")


def best_level_dice(hierarchy, truth: np.ndarray) -> dict[str, float]:
    """For each true structure, the best Dice any single cluster of any level reaches (label-hint, oracle)."""
    scores: dict[str, float] = {}
    for value in [int(v) for v in np.unique(truth) if v != 0]:
        mask = truth == value
        scores[str(value)] = max(
            float(dice(binarize_with_hint(hierarchy.levels[k], mask), mask)) for k in range(hierarchy.n_levels)
        )
    return scores


def _run_one(
    name: str,
    image: ImageData,
    out: Path,
    device: str,
    epochs: Optional[int],
    progress: ProgressCallback,
    truth: Optional[np.ndarray] = None,
) -> dict:
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = train([image], epochs=epochs, device=device, progress=progress)
    train_s = time.perf_counter() - t0
    save_model(model, folder / "model.safetensors")
    t0 = time.perf_counter()
    hierarchy = segment(image, model, device=device, progress=progress)
    segment_s = time.perf_counter() - t0
    write_segmentation_outputs(hierarchy, image, folder)
    if not image.is_2d:
        volume = itk_image_from_volume(image.array[..., 0].astype(np.int16), image.geometry)
        atomic_write(folder / "input.nrrd", lambda tmp: sitk.WriteImage(volume, str(tmp), True))
    else:
        write_png(image.array[0].astype(np.uint8), folder / "input.png")
    summary = {
        "input": image.source,
        "shape": list(image.spatial_shape),
        "train_s": round(train_s, 2),
        "segment_s": round(segment_s, 2),
        "levels": [int(c) for c in hierarchy.n_clusters],
    }
    if truth is not None:
        write_label_image(truth, image.geometry, folder / "ground_truth.nrrd", image.is_2d)
        summary["best_level_dice_per_structure"] = best_level_dice(hierarchy, truth)
    return summary


def run_demo(
    out: Path, device: str = "auto", epochs: Optional[int] = None, progress: ProgressCallback = no_progress
) -> dict:
    """Run the demo into `out` (staged: a failed or cancelled demo leaves no partial folder)."""
    summary: dict = {}
    with staged_outputs(Path(out)) as stage:
        summary["retina"] = _run_one("retina", demo_retina_image(), stage, device, epochs, progress)
        phantom, truth = synthetic_phantom_3d()
        summary["phantom"] = _run_one(
            "phantom", phantom, stage, device, epochs or PHANTOM_DEMO_EPOCHS, progress, truth=truth
        )
        (stage / "summary.json").write_text(json.dumps(summary, indent=2))
    for name, item in summary.items():
        print(
            f"{name}: {item['shape']} trained {item['train_s']} s, segmented {item['segment_s']} s, "
            f"levels {item['levels']} -> {Path(out) / name}",
            file=sys.stderr,
        )
    return summary
