"""Evaluation metrics for binary segmentations, as the CUTS paper reports them (Table 1).

The design, its sources and the choices made: docs/architecture.md, section `evaluate/metrics.py`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.metrics import structural_similarity

from ..core.distances import squared_distance_to
from ..core.errors import InputError
from ..core.imagedata import voxel_size_zyx


# --------------------------------------------------------------------------------------------- helpers
def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks as bool arrays of the same 2D or 3D shape."""
    p = np.asarray(pred)
    t = np.asarray(truth)
    if p.shape != t.shape:
        raise InputError(f"prediction and ground truth differ in shape: {p.shape} vs {t.shape}")
    if p.ndim not in (2, 3):
        raise InputError(f"masks must be 2D (Y, X) or 3D (Z, Y, X), got shape {p.shape}")
    if p.size == 0:
        raise InputError("masks are empty arrays")
    return p != 0, t != 0


def diagonal(shape: Sequence[int], spacing: Optional[Sequence[float]] = None) -> float:
    """Length of the image diagonal, sqrt(sum (n_i * s_i)^2), in pixels or mm (the authors' sqrt(H^2 + W^2)).

    Axes of length 1 are left out, so a 2D image stored as (1, Y, X) gets the same value as (Y, X)."""
    sampling = voxel_size_zyx(spacing, len(shape))
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, sampling) if n > 1)))


# --------------------------------------------------------------------------------------------- metrics
def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient 2|P & T| / (|P| + |T|). Both masks empty -> 1.0 (perfect agreement, as the authors'
    epsilon-smoothed formula gives); exactly one empty -> 0.0."""
    p, t = _pair(pred, truth)
    total = int(np.count_nonzero(p)) + int(np.count_nonzero(t))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(p & t)) / total


def hausdorff(pred: np.ndarray, truth: np.ndarray, spacing: Optional[Sequence[float]] = None) -> float:
    """Symmetric Hausdorff distance between the two foreground sets.

    spacing=None: in pixels, identical to `skimage.metrics.hausdorff_distance(pred, truth)` (all foreground
    voxels, Euclidean distance between voxel centres). spacing=(x, y[, z]) in mm (Geometry.spacing order; the
    array is (Z, Y, X)): the same distance measured in millimetres. If either mask is empty (or both), the
    image diagonal in the same unit (`diagonal`), as the authors do.

    Computed with two exact Euclidean distance transforms over the bounding box of both masks (O(voxels)), so
    a 256x256x128 volume takes about a second; interior voxels are included because the farthest point of
    one set from the other need not lie on its boundary (a disc around a ring)."""
    p, t = _pair(pred, truth)
    sampling = voxel_size_zyx(spacing, p.ndim)
    if not p.any() or not t.any():
        return diagonal(p.shape, spacing)
    both = p | t
    box = []
    for axis in range(p.ndim):
        other = tuple(a for a in range(p.ndim) if a != axis)
        hits = np.flatnonzero(both.any(axis=other))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    pc, tc = p[tuple(box)], t[tuple(box)]
    worst = 0.0
    for source, target in ((pc, tc), (tc, pc)):
        only = source & ~target
        if only.any():
            worst = max(worst, float(squared_distance_to(target, sampling)[only].max()))
    return math.sqrt(worst)


def ssim(pred: np.ndarray, truth: np.ndarray) -> float:
    """Structural similarity of the masks as float images (data_range=1), as the authors evaluate:
    `skimage.metrics.structural_similarity(truth, pred, data_range=1)` with its default 7-wide uniform window
    (2D or 3D). Axes of length 1 are dropped first; if a remaining axis is shorter than 7 the window shrinks to
    the largest odd size that fits (the authors' rule)."""
    p, t = _pair(pred, truth)
    keep = tuple(n for n in p.shape if n > 1)
    if len(keep) < 2:
        raise InputError(f"SSIM needs a 2D or 3D image, got shape {p.shape}")
    p = p.reshape(keep).astype(np.float64)
    t = t.reshape(keep).astype(np.float64)
    win = None
    if min(keep) < 7:
        win = min(keep) if min(keep) % 2 == 1 else min(keep) - 1
        if win < 3:
            raise InputError(f"SSIM needs at least 3 pixels along every axis, got shape {keep}")
    return float(structural_similarity(t, p, data_range=1.0, win_size=win))


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    """Root mean squared error of the {0, 1} masks: sqrt(fraction of voxels where they disagree)."""
    p, t = _pair(pred, truth)
    return float(math.sqrt(np.count_nonzero(p != t) / p.size))


def ergas(pred: np.ndarray, truth: np.ndarray, ratio: float = 4.0, window: int = 8) -> float:
    """ERGAS exactly as sewar 0.4.5 `ergas(GT=truth, P=pred, r=4, ws=8)` computes it for a one-channel image.

    That version's definition (which the paper's ERGAS values rest on; later sewar releases changed it):
    - local RMSE map: sqrt of a `window`-wide moving average of (truth - pred)^2;
    - local mean map: the `window`-wide moving average of truth, *divided again by window^2* (a quirk of
      0.4.5 that scales ERGAS up by 64; it is why Table 1 reports values in the thousands);
    - both moving averages are scipy `uniform_filter` windows (mode 'reflect', origin 0, so for window 8 the
      window of pixel i covers i-4 .. i+3);
    - where the local mean is exactly 0 (no truth foreground in the window) the pixel contributes 0;
    - per pixel: 100 * ratio * |rmse / mean|; the result is the mean over the interior, leaving out
      s = round(window / 2) pixels at each border of Y and X.
    The masks are taken as {0, 1} float64. A 3D (Z, Y, X) mask is done slice by slice along Z (the window is
    2D, as it is for the 2D images the paper evaluates) and the slices' ERGAS are averaged.
    """
    p, t = _pair(pred, truth)
    if p.ndim == 2:
        p, t = p[None], t[None]
    s = int(np.round(window / 2))
    if p.shape[1] <= 2 * s or p.shape[2] <= 2 * s:
        raise InputError(f"ERGAS with window {window} needs more than {2 * s} pixels along Y and X, got {p.shape[1:]}")
    tf = t.astype(np.float64)
    size = (1, window, window)
    local_mse = ndi.uniform_filter((p != t).astype(np.float64), size=size, mode="reflect")
    local_mean = ndi.uniform_filter(tf, size=size, mode="reflect") / (window * window)
    local_rmse = np.sqrt(np.maximum(local_mse, 0.0))
    empty = local_mean == 0
    ratio_map = np.where(empty, 0.0, local_rmse / np.where(empty, 1.0, np.abs(local_mean)))
    return float(np.mean(100.0 * ratio * ratio_map[:, s:-s, s:-s]))


def evaluate_binary(pred: np.ndarray, truth: np.ndarray, spacing: Optional[Sequence[float]] = None) -> dict[str, float]:
    """All of the paper's metrics at once: dice, hausdorff (pixels), ssim, ergas, rmse; plus hausdorff_mm
    when `spacing` (x, y[, z] in mm) is given."""
    p, t = _pair(pred, truth)
    out = {
        "dice": dice(p, t),
        "hausdorff": hausdorff(p, t),
        "ssim": ssim(p, t),
        "ergas": ergas(p, t),
        "rmse": rmse(p, t),
    }
    if spacing is not None:
        out["hausdorff_mm"] = hausdorff(p, t, spacing=spacing)
    return out
