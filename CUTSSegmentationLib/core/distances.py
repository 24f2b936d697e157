"""Euclidean distances to a mask, in mm, fast on large volumes (scoring and the click's edge snap share it)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

#: Arrays with more voxels than this use SimpleITK's multithreaded Maurer distance map instead of scipy's.
SITK_MIN_VOXELS = 200_000


def squared_distance_to(mask: np.ndarray, sampling: Sequence[float]) -> np.ndarray:
    """Squared Euclidean distance from every voxel to the nearest voxel of `mask` (0 inside `mask`).

    Exact either way: scipy's EDT for small arrays (float64), SimpleITK's signed Maurer map for large ones
    (float32; multithreaded, 3-5x faster: 2.5 s instead of 9-13 s on a 35 M-voxel thorax CT). For unit spacing
    the squared distances are integers, exact even in float32.

    Parameters
    ----------
    mask : np.ndarray
        Bool, any shape; axes of length 1 are left out.
    sampling : sequence of float
        Voxel size along each axis of `mask` (z, y, x order).

    Examples
    --------
    >>> squared_distance_to(np.array([[0, 1, 0, 0]], dtype=bool), (1.0, 2.0)).tolist()
    [[4.0, 0.0, 4.0, 16.0]]
    """
    mask = np.asarray(mask, dtype=bool)
    keep = [i for i, n in enumerate(mask.shape) if n > 1]
    squeezed = mask.reshape([mask.shape[i] for i in keep])
    samp = tuple(float(sampling[i]) for i in keep)
    if squeezed.ndim in (2, 3) and squeezed.size >= SITK_MIN_VOXELS:
        image = sitk.GetImageFromArray(squeezed.view(np.uint8))
        image.SetSpacing(tuple(reversed(samp)))
        dist = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=True, useImageSpacing=True)
        out = sitk.GetArrayFromImage(dist)
        np.maximum(out, 0.0, out=out)  # inside the mask: negative (distance to its contour) -> 0
        return out.reshape(mask.shape)
    if squeezed.ndim == 0:
        return np.zeros(mask.shape)
    dist = ndi.distance_transform_edt(~squeezed, sampling=samp)
    return (dist * dist).reshape(mask.shape)
