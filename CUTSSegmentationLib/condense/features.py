"""The points condensation clusters: each voxel's embedding, joined with its own intensities in volumes.

The encoder sees a 17 x 17 pixel neighbourhood, so its embeddings blur a structure's edge by a few voxels and
let a thin structure (a spinal cord inside bright CSF) share atoms with its surroundings. Appending the voxel's
standardised intensities, weighted to carry as much spread as the embedding, keeps edges where the image has
them while the embedding still separates what intensity alone cannot (texture, context). The join is computed
chunk by chunk as condensation reads its input, so the (N, D + C) matrix never exists.
"""

from __future__ import annotations

from typing import Union

import numpy as np

from ..core.imagedata import ImageData

#: Voxels sampled to estimate the embeddings' spread and the intensities' mean and standard deviation.
_SAMPLE = 65536


class JoinedFeatures:
    """(N, D + C) float32 rows ``[embedding, weight * standardised intensities]``, read on demand.

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

    Examples
    --------
    >>> from CUTSSegmentationLib.core.imagedata import ImageData
    >>> image = ImageData(np.arange(8, dtype=np.float32).reshape(2, 2, 2, 1))
    >>> rng = np.random.default_rng(0)
    >>> JoinedFeatures(rng.normal(size=(8, 4)).astype(np.float16), image, weight=1.0)[0:2].shape
    (2, 5)
    """

    def __init__(self, embeddings: np.ndarray, image: ImageData, weight: float, seed: int = 0) -> None:
        n = embeddings.shape[0]
        self._embeddings = embeddings
        self._intensities = image.array.reshape(-1, image.channels)
        if self._intensities.shape[0] != n:
            raise ValueError(f"{n} embeddings for {self._intensities.shape[0]} voxels")
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=min(n, _SAMPLE), replace=False))
        emb = np.asarray(embeddings[sample], dtype=np.float32)
        spread = float(np.sqrt(((emb - emb.mean(0)) ** 2).sum(1).mean()))
        values = self._intensities[sample].astype(np.float64)
        self._mean = values.mean(0).astype(np.float32)
        std = values.std(0)
        std[~(std > 0)] = 1.0
        channels = self._intensities.shape[1]
        self._scale = (float(weight) * spread / np.sqrt(channels) / std).astype(np.float32)
        self.shape = (n, embeddings.shape[1] + channels)
        self.ndim = 2

    def __getitem__(self, rows: Union[slice, np.ndarray]) -> np.ndarray:
        emb = np.asarray(self._embeddings[rows], dtype=np.float32)
        values = (np.asarray(self._intensities[rows], dtype=np.float32) - self._mean) * self._scale
        return np.concatenate([emb, values], axis=1)


def condensation_features(
    embeddings: np.ndarray, image: ImageData, intensity_weight: float, seed: int = 0
) -> Union[np.ndarray, JoinedFeatures]:
    """The embeddings alone (weight 0), or joined with the image's intensities."""
    if intensity_weight <= 0:
        return embeddings
    return JoinedFeatures(embeddings, image, intensity_weight, seed=seed)
