"""What a sceptical clinician tries before a new tool: each a function (image, spacing, seed) -> bool mask.

`image` is the first sequence, (Z, Y, X) float32; `spacing` is (x, y, z) mm; `seed` is the click as
(x, y, z) voxel indices. Settings are fixed in advance (documented defaults), never tuned on the references:

- k-means: intensity k-means on every voxel (k = 3, 5, 10, 20; as scikit-learn's KMeans: the lowest-inertia
  of 10 k-means++ starts, 1D Lloyd iterations run on a 4,096-bin histogram, then every voxel goes to its
  nearest centre), and the connected component (6-connected, scipy's default) of the seed's cluster that
  holds the seed.
- region growing: SimpleITK ConfidenceConnected from the seed (ITK's defaults, as Slicer's seeded tools:
  multiplier 2.5, initial neighbourhood radius 1, 5 iterations).
- SLIC supervoxels: `skimage.segmentation.slic` in 3D with the voxel spacing, intensities scaled to [0, 1]
  between the 0.5th and 99.5th percentiles, compactness 0.1 (scikit-image's advice for such intensities),
  n_segments = 50 and 500 (supervoxels of about 1/50 and 1/500 of the scan); the supervoxel under the
  seed, or (oracle) the label hint.

Label maps are memoised per image (`clear_memo` between volumes), so a scan with several structures is
clustered once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import numpy as np
import SimpleITK as sitk
from volume_engine import component_at

KMEANS_KS = (3, 5, 10, 20)
SLIC_SEGMENTS = (50, 500)
SLIC_COMPACTNESS = 0.1
CONFIDENCE = {"multiplier": 2.5, "initialNeighborhoodRadius": 1, "numberOfIterations": 5}
_BINS = 4096
KMEANS_RESTARTS = 10

_memo: dict[tuple, np.ndarray] = {}


def clear_memo() -> None:
    _memo.clear()


def _memoised(key: tuple, compute: Callable[[], np.ndarray]) -> np.ndarray:
    if key not in _memo:
        _memo[key] = compute()
    return _memo[key]


def _zyx(seed_xyz: Sequence[int]) -> tuple[int, int, int]:
    return int(seed_xyz[2]), int(seed_xyz[1]), int(seed_xyz[0])


# ------------------------------------------------------------------------------------------- k-means
def _lloyd(mids: np.ndarray, counts: np.ndarray, centres: np.ndarray, iterations: int) -> tuple[np.ndarray, float]:
    """Weighted 1D Lloyd iterations on histogram bins; (sorted centres, inertia)."""
    centres = np.unique(centres)
    for _ in range(iterations):
        cuts = 0.5 * (centres[1:] + centres[:-1])
        assign = np.searchsorted(cuts, mids)
        weight = np.bincount(assign, weights=counts, minlength=len(centres))
        total = np.bincount(assign, weights=counts * mids, minlength=len(centres))
        new = np.sort(np.where(weight > 0, total / np.maximum(weight, 1), centres))
        if np.allclose(new, centres):
            break
        centres = new
    cuts = 0.5 * (centres[1:] + centres[:-1])
    inertia = float((counts * (mids - centres[np.searchsorted(cuts, mids)]) ** 2).sum())
    return centres, inertia


def kmeans_1d_centres(values: np.ndarray, k: int, restarts: int = KMEANS_RESTARTS, iterations: int = 300) -> np.ndarray:
    """Sorted k-means centres of scalar `values`: the lowest-inertia of `restarts` k-means++ starts (seeded,
    deterministic), Lloyd iterations on a histogram of the values."""
    lo, hi = float(values.min()), float(values.max())
    counts, edges = np.histogram(values, bins=_BINS, range=(lo, hi))
    counts = counts.astype(np.float64)
    mids = 0.5 * (edges[:-1] + edges[1:])
    rng = np.random.default_rng(0)
    best, best_inertia = None, np.inf
    for _ in range(restarts):
        centres = [mids[rng.choice(_BINS, p=counts / counts.sum())]]
        for _ in range(1, k):  # k-means++: the next start with probability ~ weight x squared distance
            d2 = counts * np.min((mids[:, None] - np.asarray(centres)[None, :]) ** 2, axis=1)
            if d2.sum() <= 0:
                break
            centres.append(mids[rng.choice(_BINS, p=d2 / d2.sum())])
        found, inertia = _lloyd(mids, counts, np.asarray(centres), iterations)
        if inertia < best_inertia:
            best, best_inertia = found, inertia
    return best


def kmeans_labels(image: np.ndarray, k: int) -> np.ndarray:
    """Cluster id (uint8) of every voxel: its nearest k-means centre."""

    def compute() -> np.ndarray:
        centres = kmeans_1d_centres(image.ravel(), k)
        cuts = 0.5 * (centres[1:] + centres[:-1])
        return np.searchsorted(cuts, image).astype(np.uint8)

    return _memoised(("kmeans", id(image), k), compute)


def kmeans_component(k: int) -> Callable[[np.ndarray, Sequence[float], Sequence[int]], np.ndarray]:
    def baseline(image: np.ndarray, spacing: Sequence[float], seed: Sequence[int]) -> np.ndarray:
        return component_at(kmeans_labels(image, k), _zyx(seed))

    baseline.__name__ = f"kmeans{k}_component"
    return baseline


# ------------------------------------------------------------------------------------ region growing
def confidence_connected(image: np.ndarray, spacing: Sequence[float], seed: Sequence[int]) -> np.ndarray:
    """SimpleITK ConfidenceConnected from the seed with ITK's default settings."""
    itk_image = sitk.GetImageFromArray(np.asarray(image, dtype=np.float32))
    itk_image.SetSpacing(tuple(float(s) for s in spacing))
    grown = sitk.ConfidenceConnected(itk_image, seedList=[tuple(int(v) for v in seed)], replaceValue=1, **CONFIDENCE)
    return sitk.GetArrayFromImage(grown).astype(bool)


# --------------------------------------------------------------------------------------------- SLIC
def _unit_range(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image, [0.5, 99.5])
    return np.clip((image - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0).astype(np.float32)


def slic_labels(image: np.ndarray, spacing: Sequence[float], n_segments: int) -> np.ndarray:
    """3D SLIC supervoxels (spacing-aware) of the intensity-scaled volume."""
    from skimage.segmentation import slic

    def compute() -> np.ndarray:
        return slic(
            _unit_range(image),
            n_segments=n_segments,
            compactness=SLIC_COMPACTNESS,
            spacing=np.asarray(spacing[::-1], dtype=float),
            channel_axis=None,
            start_label=1,
        )

    return _memoised(("slic", id(image), n_segments), compute)


def slic_at_seed(n_segments: int):
    def baseline(image: np.ndarray, spacing: Sequence[float], seed: Sequence[int]) -> np.ndarray:
        labels = slic_labels(image, spacing, n_segments)
        return labels == labels[_zyx(seed)]

    baseline.__name__ = f"slic{n_segments}_seed"
    return baseline


def slic_hint(n_segments: int):
    """Oracle: the supervoxel most frequent under the reference (needs the reference: a hint)."""

    def baseline(image: np.ndarray, spacing: Sequence[float], seed: Sequence[int], reference: np.ndarray) -> np.ndarray:
        labels = slic_labels(image, spacing, n_segments)
        return labels == np.bincount(labels[reference]).argmax()

    baseline.__name__ = f"slic{n_segments}_hint"
    return baseline


# -------------------------------------------------------------------------------------------- registry
#: Seed-point baselines (what a click returns): name -> (image, spacing, seed) -> mask.
SEED_BASELINES: dict[str, Callable] = {
    **{f"k-means k={k} + component": kmeans_component(k) for k in KMEANS_KS},
    "region growing (ConfidenceConnected)": confidence_connected,
    **{f"SLIC {n} (supervoxel at seed)": slic_at_seed(n) for n in SLIC_SEGMENTS},
}
#: Oracle baselines: name -> (image, spacing, seed, reference) -> mask.
HINT_BASELINES: dict[str, Callable] = {f"SLIC {n} (label hint)": slic_hint(n) for n in SLIC_SEGMENTS}
#: Families whose best member is reported (an oracle choice, like the engine's best level).
FAMILIES: dict[str, tuple[str, ...]] = {
    "k-means best k + component": tuple(f"k-means k={k} + component" for k in KMEANS_KS),
    "SLIC best n (label hint)": tuple(HINT_BASELINES),
}
