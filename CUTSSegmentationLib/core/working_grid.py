"""The grid the encoder and condensation work on: the image's own, or coarser in-plane for very large volumes.

A 512 x 512 x 134 CT (35 M voxels) at 0.98 mm in-plane and 3 mm between slices costs four times the embedding
time and memory of a 256 x 256 x 134 grid at 1.95 mm, which still resolves finer than the slices do. Volumes above
`MAX_WORKING_VOXELS` are averaged over f x f in-plane blocks (the smallest f that fits); the atoms found there are
mapped back to every voxel of the image's own grid, so every output keeps the input's geometry.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from .imagedata import ImageData

#: Voxels above which a volume is processed on a coarser in-plane grid (about a 240 x 240 x 155 MRI).
MAX_WORKING_VOXELS = 9_000_000


def in_plane_factor(image: ImageData, max_voxels: int = MAX_WORKING_VOXELS) -> int:
    """Block size f (1 = the image's own grid) so that the working grid holds at most `max_voxels` voxels.

    Examples
    --------
    >>> in_plane_factor(ImageData(np.zeros((134, 512, 512, 1), dtype=np.float32)))
    2
    >>> in_plane_factor(ImageData(np.zeros((155, 240, 240, 1), dtype=np.float32)))
    1
    """
    if image.is_2d or image.n_pixels <= max_voxels:
        return 1
    return int(math.ceil(math.sqrt(image.n_pixels / float(max_voxels))))


def block_mean(image: ImageData, factor: int) -> ImageData:
    """`image` averaged over `factor` x `factor` in-plane blocks (edge blocks padded by replication).

    The result carries its own geometry: in-plane spacing times `factor`, origin at the first block's centre,
    so whatever reads the working grid's voxel size (condensation's positions) reads it from the image.

    Examples
    --------
    >>> from CUTSSegmentationLib.core.imagedata import Geometry
    >>> image = ImageData(np.zeros((2, 4, 4, 1), np.float32), Geometry(spacing=(0.5, 0.5, 6.5)))
    >>> coarse = block_mean(image, 2)
    >>> coarse.array.shape, coarse.geometry.spacing, coarse.geometry.origin
    ((2, 2, 2, 1), (1.0, 1.0, 6.5), (0.25, 0.25, 0.0))
    """
    if factor == 1:
        return image
    z, y, x, c = image.array.shape
    ny, nx = -(-y // factor), -(-x // factor)
    padded = np.pad(image.array, ((0, 0), (0, ny * factor - y), (0, nx * factor - x), (0, 0)), mode="edge")
    coarse = padded.reshape(z, ny, factor, nx, factor, c).mean(axis=(2, 4), dtype=np.float32)
    geometry = image.geometry
    sx, sy, sz = (float(s) for s in geometry.spacing)
    centre = (factor - 1) / 2.0
    origin = tuple(float(v) for v in geometry.index_to_lps((centre, centre, 0.0)))
    return ImageData(
        array=np.ascontiguousarray(coarse, dtype=np.float32),
        geometry=replace(geometry, spacing=(sx * factor, sy * factor, sz), origin=origin),
        is_2d=image.is_2d,
        source=image.source,
        source_dtype=image.source_dtype,
        sequences=image.sequences,
    )


def to_image_grid(labels: np.ndarray, factor: int, shape_zyx: tuple[int, int, int]) -> np.ndarray:
    """Per-voxel labels (N_working,) in raster order, repeated back onto the image's (Z, Y, X) grid, flattened.

    Examples
    --------
    >>> to_image_grid(np.array([1, 2]), 2, (1, 2, 3)).reshape(2, 3).tolist()
    [[1, 1, 2], [1, 1, 2]]
    """
    if factor == 1:
        return labels
    z, y, x = shape_zyx
    ny, nx = -(-y // factor), -(-x // factor)
    grid = labels.reshape(z, ny, nx)
    full = np.repeat(np.repeat(grid, factor, axis=1), factor, axis=2)[:, :y, :x]
    return np.ascontiguousarray(full).reshape(-1)
