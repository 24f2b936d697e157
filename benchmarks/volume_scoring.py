"""Scores of one mask against a reference in a 3D volume: Dice and the surface-based HD95 in millimetres.

HD95 follows the usual surface definition (as MONAI's and the Medical Segmentation Decathlon's): the border
voxels of each mask (voxels with a 6-neighbour outside it), the distance from every border voxel of one mask to
the nearest border voxel of the other (Euclidean, with the voxel spacing), the 95th percentile of each
direction, and the larger of the two. Distances come from one distance transform per mask on the bounding box
of both masks (the nearest border voxel of either mask always lies inside it), so a full-body mask costs one
linear-time transform, never a voxel-pair matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

_SIX = ndi.generate_binary_structure(3, 1)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """2|P & T| / (|P| + |T|); 0 when exactly one is empty, 1 when both are."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    total = int(np.count_nonzero(p)) + int(np.count_nonzero(t))
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(p & t)) / total


def bounding_box(mask: np.ndarray, pad: int = 0) -> tuple[slice, ...]:
    """Slices of the mask's bounding box grown by `pad` voxels (clipped to the array)."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(0, int(hits[0]) - pad), min(mask.shape[axis], int(hits[-1]) + 1 + pad)))
    return tuple(box)


def _border(mask: np.ndarray) -> np.ndarray:
    """Voxels of `mask` with a 6-neighbour outside it (the array edge counts as outside)."""
    inner = ndi.binary_erosion(mask, structure=_SIX, border_value=0)
    return mask & ~inner


def _distance_to(mask: np.ndarray, spacing_xyz: Sequence[float]) -> np.ndarray:
    """Euclidean distance (mm) from every voxel to the nearest voxel of `mask` (multithreaded Maurer)."""
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(tuple(float(s) for s in spacing_xyz))
    dist = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return np.maximum(sitk.GetArrayViewFromImage(dist), 0.0)


def hd95(pred: np.ndarray, truth: np.ndarray, spacing_xyz: Sequence[float]) -> float:
    """Surface HD95 in mm (see the module docstring); NaN when either mask is empty."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    if not p.any() or not t.any():
        return math.nan
    box = bounding_box(p | t, pad=1)
    bp, bt = _border(p[box]), _border(t[box])
    directed = []
    for source, target in ((bp, bt), (bt, bp)):
        distances = _distance_to(target, spacing_xyz)[source]
        directed.append(float(np.percentile(distances, 95)))
    return max(directed)


def score(pred: np.ndarray, truth: np.ndarray, spacing_xyz: Sequence[float]) -> dict[str, float]:
    """{"dice", "hd95_mm", "voxels"} of one mask."""
    return {"dice": dice(pred, truth), "hd95_mm": hd95(pred, truth, spacing_xyz), "voxels": int(np.count_nonzero(pred))}


#: The engine's two runs per case: trained on the case's own volume, or one encoder for the whole dataset.
SELF_TRAINED = "self-trained"
DATASET_ENCODER = "dataset encoder"


def best_baseline(row: dict[str, Any]) -> str:
    """Name of the seed-point baseline (or family) with the highest Dice on this case (oracle hints excluded)."""
    seed_names = [n for n in row["baselines"] if "hint" not in n]
    return max(seed_names, key=lambda n: row["baselines"][n]["dice"])
