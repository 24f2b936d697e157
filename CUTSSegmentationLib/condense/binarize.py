"""One structure out of a label map: by a seed point (what a user does), or by a ground-truth hint (evaluation).

Label maps are `(Y, X)` or `(Z, Y, X)` arrays of non-negative integers (a hierarchy level or the persistent
map; 0 means "no label"). Seeds are voxel indices in (x, y[, z]) order, as on the command line and in
`Geometry`, so `(x, y, z)` addresses `labels[z, y, x]`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage as ndi

from ..core.errors import InputError
from ..core.imagedata import voxel_size_zyx

#: Above this label id, counting uses np.unique instead of a dense np.bincount table.
_DENSE_MAX_ID = 1 << 24


def _check_labels(labels: np.ndarray) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim not in (2, 3):
        raise InputError(f"label map must be 2D (Y, X) or 3D (Z, Y, X), got shape {arr.shape}")
    if arr.size == 0:
        raise InputError("label map is empty")
    if arr.dtype != bool and not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"label map must hold integers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.signedinteger) and arr.min() < 0:
        raise InputError("label map has negative labels")
    return arr


def seed_to_index(seed_index_xyz: Sequence[float], shape: Sequence[int]) -> tuple[int, ...]:
    """Array index (z, y, x) or (y, x) of a continuous (x, y[, z]) voxel index, checked against `shape`.

    Rounding: half up, floor(v + 0.5), as ITK rounds a continuous index to the voxel containing it (voxel i
    spans [i - 0.5, i + 0.5)). A 2D map takes (x, y) or (x, y, z) with z rounding to 0; a 3D map with one slice
    takes (x, y). Out-of-image or non-finite seeds raise InputError."""
    try:
        values = [float(v) for v in seed_index_xyz]
    except (TypeError, ValueError) as exc:
        raise InputError(f"seed must be numbers (x, y[, z]), got {seed_index_xyz!r}") from exc
    ndim = len(shape)
    if len(values) not in (2, 3):
        raise InputError(f"seed must be (x, y) or (x, y, z) voxel indices, got {len(values)} numbers")
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"seed has a non-finite coordinate: {tuple(values)}")
    rounded = [int(math.floor(v + 0.5)) for v in values]
    if ndim == 2 and len(rounded) == 3:
        if rounded[2] != 0:
            raise InputError(f"seed z = {values[2]:g} lies outside the 2D image (only z = 0 exists)")
        rounded = rounded[:2]
    elif ndim == 3 and len(rounded) == 2:
        if shape[0] != 1:
            raise InputError(f"a 3D label map ({shape[0]} slices) needs a seed (x, y, z), got (x, y)")
        rounded = rounded + [0]
    index = tuple(reversed(rounded))  # (x, y[, z]) -> (z,) y, x
    names = "zyx"[3 - ndim :]
    for axis, (i, n) in enumerate(zip(index, shape)):
        if not 0 <= i < n:
            raise InputError(
                f"seed {tuple(values)} lies outside the image: {names[axis]} = {i:.6g} is not in 0..{n - 1} "
                f"(image is {' x '.join(str(s) for s in reversed(shape))} voxels, x y[ z])"
            )
    return index


def binarize_at_seed(labels: np.ndarray, seed_index_xyz: Sequence[float]) -> np.ndarray:
    """Bool mask of every voxel with the label under the seed: the seed's whole class, connected or not.

    For the connected structure a click means, use `condense.structures.structure_at_seed`.

    Parameters
    ----------
    labels : np.ndarray
        (Y, X) or (Z, Y, X) label map of non-negative integers; 0 is "no label".
    seed_index_xyz : sequence of float
        Voxel index (x, y[, z]); continuous values round half up.

    Returns
    -------
    np.ndarray
        Bool mask, the shape of `labels`.

    Raises
    ------
    InputError
        A seed outside the image, or on label 0 (e.g. unpainted in the persistent map), in one line.

    Examples
    --------
    >>> binarize_at_seed(np.array([[1, 2, 1]]), (2, 0)).astype(int).tolist()
    [[1, 0, 1]]
    """
    arr = _check_labels(labels)
    index = seed_to_index(seed_index_xyz, arr.shape)
    value = arr[index]
    if value == 0:
        where = ", ".join(f"{n}={i}" for n, i in zip("xyz", reversed(index)))
        raise InputError(f"the seed ({where}) is on an unlabelled voxel (label 0): place it inside a structure")
    return arr == value


def binarize_with_hint(labels: np.ndarray, truth_mask: np.ndarray, include_unlabelled: bool = True) -> np.ndarray:
    """Bool mask of the label most frequent under the ground-truth foreground (paper section 3.2.3).

    For evaluation only: this is how the paper binarises every unsupervised method. Ties go to the label met
    first in raster (C) order among the foreground voxels, as the authors' loop does. With
    `include_unlabelled` (default, as the authors do) label 0 may win like any other label (it then selects
    the unpainted part of a persistent map); with False, label 0 is not a candidate unless it is the only one.
    An empty hint mask raises InputError."""
    arr = _check_labels(labels)
    hint = np.asarray(truth_mask)
    if hint.shape != arr.shape:
        raise InputError(f"hint mask shape {hint.shape} differs from the label map's {arr.shape}")
    hint = hint != 0
    if not hint.any():
        raise InputError("the ground-truth hint mask is empty: nothing to pick a label with")
    under = arr[hint]
    if under.dtype == bool:
        under = under.astype(np.uint8)
    top = int(under.max())
    if top < _DENSE_MAX_ID:
        ids = np.arange(top + 1)
        counts = np.bincount(under.ravel(), minlength=top + 1)
    else:
        ids, counts = np.unique(under, return_counts=True)
    if not include_unlabelled and ids.size and ids[0] == 0 and counts[1:].any():
        counts = counts.copy()
        counts[0] = 0
    best = counts.max()
    tied = ids[counts == best]
    if tied.size == 1:
        winner = tied[0]
    else:  # the first foreground voxel (raster order) whose label is among the tied ones
        winner = under[np.argmax(np.isin(under, tied))]
    return arr == winner


def innermost_point(mask: np.ndarray, spacing: Optional[Sequence[float]] = None) -> tuple[int, ...]:
    """The mask's innermost voxel as (x, y[, z]) indices: where a clinician would click a seed.

    Innermost = largest Euclidean distance to the nearest background voxel (the maximum of the distance
    transform), with the image border counting as background (the mask is padded with one background voxel),
    in voxels or, with `spacing` (x, y[, z] mm), in millimetres. Ties (e.g. along the ridge of an elongated
    shape) go to the tied voxel nearest the mask's centroid, then to the first in raster (C) order; the result
    is deterministic. An empty mask raises InputError."""
    m = np.asarray(mask)
    if m.ndim not in (2, 3):
        raise InputError(f"mask must be 2D (Y, X) or 3D (Z, Y, X), got shape {m.shape}")
    m = m != 0
    if not m.any():
        raise InputError("mask is empty: it has no innermost point")
    sampling = voxel_size_zyx(spacing, m.ndim)
    # Work on the bounding box (+1 background voxel on each side, which is also the image-border rule).
    box = []
    for axis in range(m.ndim):
        other = tuple(a for a in range(m.ndim) if a != axis)
        hits = np.flatnonzero(m.any(axis=other))
        box.append((int(hits[0]), int(hits[-1]) + 1))
    crop = np.pad(m[tuple(slice(a, b) for a, b in box)], 1)
    dist = ndi.distance_transform_edt(crop, sampling=sampling)
    tied = np.argwhere(dist == dist.max())
    if len(tied) > 1:
        centroid = np.asarray(ndi.center_of_mass(crop))
        d2 = (((tied - centroid) * np.asarray(sampling)) ** 2).sum(axis=1)
        tied = tied[d2 == d2.min()]  # argwhere is in raster order, so [0] is the raster-first of these
    index = [int(i) - 1 + a for i, (a, _) in zip(tied[0], box)]
    return tuple(reversed(index))
