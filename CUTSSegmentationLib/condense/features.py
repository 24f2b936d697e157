"""The points condensation clusters: each voxel's embedding, joined with its intensities and position in volumes.

The encoder sees a 17 x 17 pixel neighbourhood, so its embeddings blur a structure's edge by a few voxels and
let a thin structure (a spinal cord inside bright CSF) share atoms with its surroundings. Appending the voxel's
standardised intensities, weighted to carry as much spread as the embedding, keeps edges where the image has
them while the embedding still separates what intensity alone cannot (texture, context). The join is computed
chunk by chunk as condensation reads its input, so the (N, D + C) matrix never exists.

Appending the voxel's physical position (millimetres, weighted the same way) makes atoms and clusters
spatially coherent: a tissue class that appears in many places (the soft tissue of a thorax, a tumour with the
muscle of the same intensity elsewhere) is split where its parts lie apart, so the region under a click grows
through neighbouring parts instead of jumping to the whole class. The position block is zero-mean by
construction and isotropic in millimetres, so anisotropic voxels (6.5 mm slices) weigh by their true extent.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

from ..core.imagedata import ImageData

#: Voxels sampled to estimate the embeddings' spread and the intensities' mean and standard deviation.
_SAMPLE = 65536


class JoinedFeatures:
    """(N, D + C [+ 3]) float32 rows ``[embedding, weight * intensities, position_weight * position]``, on demand.

    Supports what condensation reads: ``shape``, ``ndim`` and row indexing by a slice or an index array.

    Parameters
    ----------
    embeddings : np.ndarray
        (N, D) per-voxel embeddings (float16 or float32), (Z, Y, X) raster order.
    image : ImageData
        The image the embeddings came from (N voxels, C channels).
    weight : float
        Spread of the intensity block relative to the embeddings' (0 leaves the embeddings alone).
    seed : int
        Seed of the sample the statistics are estimated on.
    position_weight : float
        Spread of the position block relative to the embeddings' (0: no position columns).

    Examples
    --------
    >>> from CUTSSegmentationLib.core.imagedata import ImageData
    >>> image = ImageData(np.arange(8, dtype=np.float32).reshape(2, 2, 2, 1))
    >>> rng = np.random.default_rng(0)
    >>> JoinedFeatures(rng.normal(size=(8, 4)).astype(np.float16), image, weight=1.0)[0:2].shape
    (2, 5)
    >>> JoinedFeatures(rng.normal(size=(8, 4)), image, weight=1.0, position_weight=1.0)[[0, 7]].shape
    (2, 8)
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        image: ImageData,
        weight: float,
        seed: int = 0,
        position_weight: float = 0.0,
    ) -> None:
        n = embeddings.shape[0]
        self._embeddings = embeddings
        self._intensities = image.array.reshape(-1, image.channels)
        if self._intensities.shape[0] != n:
            raise ValueError(f"{n} embeddings for {self._intensities.shape[0]} voxels")
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=min(n, _SAMPLE), replace=False))
        emb = as_float32(embeddings[sample])
        spread = float(np.sqrt(((emb - emb.mean(0)) ** 2).sum(1).mean()))
        values = self._intensities[sample].astype(np.float64)
        self._mean = values.mean(0).astype(np.float32)
        std = values.std(0)
        std[~(std > 0)] = 1.0
        channels = self._intensities.shape[1]
        self._scale = (float(weight) * spread / np.sqrt(channels) / std).astype(np.float32)
        self._grid = tuple(int(s) for s in image.array.shape[:3])
        self._position_scale: Optional[np.ndarray] = None
        if position_weight > 0:
            spacing = np.asarray(tuple(reversed(image.geometry.spacing)), dtype=np.float64)  # (z, y, x) mm
            extent = np.asarray(self._grid, dtype=np.float64)
            # Spread of a voxel's position over the grid: per axis the variance of a uniform index, in mm^2.
            variance = (extent**2 - 1.0) / 12.0 * spacing**2
            total = float(np.sqrt(variance.sum()))
            if total > 0:
                self._position_scale = (float(position_weight) * spread / total * spacing).astype(np.float32)
                self._position_offset = ((extent - 1.0) / 2.0).astype(np.float32)
        extra = 3 if self._position_scale is not None else 0
        self.shape = (n, embeddings.shape[1] + channels + extra)
        self.ndim = 2

    def __getitem__(self, rows: Union[slice, np.ndarray]) -> np.ndarray:
        emb = as_float32(self._embeddings[rows])
        values = (np.asarray(self._intensities[rows], dtype=np.float32) - self._mean) * self._scale
        if self._position_scale is None:
            return np.concatenate([emb, values], axis=1)
        flat = np.arange(*rows.indices(self.shape[0])) if isinstance(rows, slice) else np.asarray(rows)
        position = np.stack(np.unravel_index(flat, self._grid), axis=1).astype(np.float32)
        position = (position - self._position_offset) * self._position_scale
        return np.concatenate([emb, values, position], axis=1)


def as_float32(rows: np.ndarray) -> np.ndarray:
    """`rows` as a C-contiguous float32 array, the same values; float16 (how embeddings are kept) is widened by
    torch, whose conversion is vectorised: a tenth of numpy's time on a chunk of 128-wide embeddings.

    Examples
    --------
    >>> as_float32(np.array([[0.5, -2.0]], dtype=np.float16)).tolist()
    [[0.5, -2.0]]
    """
    rows = np.asarray(rows)
    if rows.dtype == np.float16:
        return torch.from_numpy(np.ascontiguousarray(rows)).float().numpy()
    return np.ascontiguousarray(rows, dtype=np.float32)


def condensation_features(
    embeddings: np.ndarray,
    image: ImageData,
    intensity_weight: float,
    seed: int = 0,
    position_weight: float = 0.0,
) -> Union[np.ndarray, JoinedFeatures]:
    """The embeddings alone (both weights 0), or joined with the image's intensities and voxel positions."""
    if intensity_weight <= 0 and position_weight <= 0:
        return embeddings
    return JoinedFeatures(embeddings, image, intensity_weight, seed=seed, position_weight=position_weight)
