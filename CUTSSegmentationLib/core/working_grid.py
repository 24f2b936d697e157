"""The grid the encoder and condensation work on: the image's own, or coarser blocks for very large volumes.

A 512 x 512 x 134 CT (35 M voxels) at 0.98 mm in-plane and 3 mm between slices costs four times the embedding
time and memory of a 256 x 256 x 134 grid at 1.95 mm, which still resolves finer than the slices do. Volumes above
`MAX_WORKING_VOXELS` are averaged over fz x f x f blocks (`working_factors`): the blocks whose coarsest side is
the shortest, so a thin-slice CT (512 x 512 x 400 at 1 mm) is averaged along z as well as in-plane instead of
being thinned in-plane alone to 4 mm pixels over 1 mm slices. The atoms found there are mapped back to every
voxel of the image's own grid, so every output keeps the input's geometry.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence, Union

import numpy as np

from .errors import InputError
from .imagedata import ImageData

#: Voxels above which a volume is processed on a coarser grid (about a 240 x 240 x 155 MRI).
MAX_WORKING_VOXELS = 9_000_000

#: Block sizes (z, y, x) of the working grid; y and x are always equal.
Factors = tuple[int, int, int]
#: The image's own grid.
NO_BLOCKS: Factors = (1, 1, 1)


def working_factors(image: ImageData, max_voxels: int = MAX_WORKING_VOXELS) -> Factors:
    """Block sizes (z, y, x) so that the working grid holds at most `max_voxels` voxels.

    Among the block sizes that fit, the one whose coarsest voxel side (mm) is the shortest, and of those the one
    with the most voxels: a volume with thick slices is averaged in-plane only, down to its slice thickness; a
    thin-slice one along z too.

    Examples
    --------
    >>> from CUTSSegmentationLib.core.imagedata import Geometry
    >>> def volume(shape, spacing):
    ...     return ImageData(np.zeros((*shape, 1), dtype=np.float32), Geometry(spacing=spacing))
    >>> working_factors(volume((134, 512, 512), (0.98, 0.98, 3.0)))  # a thorax CT: 1.95 mm pixels, 3 mm slices
    (1, 2, 2)
    >>> working_factors(volume((400, 512, 512), (0.98, 0.98, 1.0)))  # 1 mm slices: 2.9 mm pixels, 2 mm slices
    (2, 3, 3)
    >>> working_factors(volume((155, 240, 240), (1.0, 1.0, 1.0)))  # fits: the image's own grid
    (1, 1, 1)
    """
    if image.is_2d or image.n_pixels <= max_voxels:
        return NO_BLOCKS
    z, y, x = image.array.shape[:3]
    sx, sy, sz = (float(s) for s in image.geometry.spacing)
    best: tuple[float, int, Factors] = (math.inf, 0, NO_BLOCKS)
    for fz in range(1, z + 1):
        slices = -(-z // fz)
        f = _smallest_in_plane_factor(slices, y, x, max_voxels)
        if f is None:
            continue
        voxels = slices * -(-y // f) * -(-x // f)
        coarsest = round(max(sx * f, sy * f, sz * fz), 6)
        if (coarsest, -voxels) < (best[0], -best[1]):
            best = (coarsest, voxels, (fz, f, f))
        if f == 1:
            break  # thicker slices only coarsen from here
    return best[2]


def _smallest_in_plane_factor(slices: int, y: int, x: int, max_voxels: int) -> Union[int, None]:
    """The smallest f with slices x ceil(y / f) x ceil(x / f) <= max_voxels, None when even one pixel a slice
    is too many."""
    if slices > max_voxels:
        return None
    f = max(1, int(math.sqrt(slices * y * x / float(max_voxels))))
    while slices * -(-y // f) * -(-x // f) > max_voxels:
        f += 1
    return f


def factors_of(factors: Union[int, Sequence[int]]) -> Factors:
    """(z, y, x) block sizes from `factors`, or from one in-plane block size (hierarchies saved before z blocks).

    Examples
    --------
    >>> factors_of(2), factors_of([2, 3, 3])
    ((1, 2, 2), (2, 3, 3))
    """
    if isinstance(factors, (int, np.integer)):
        factors = (1, int(factors), int(factors))
    sizes = tuple(int(f) for f in factors)
    if len(sizes) != 3 or min(sizes) < 1:
        raise InputError(f"working grid blocks must be three sizes (z, y, x) of at least 1 voxel, got {factors}")
    return sizes  # type: ignore[return-value]


def block_mean(image: ImageData, factors: Union[int, Sequence[int]]) -> ImageData:
    """`image` averaged over blocks of `factors` (z, y, x) voxels (an int: in-plane f x f blocks); edge blocks are
    padded by replication.

    The result carries its own geometry: spacing times the block size along each axis, origin at the first
    block's centre, so whatever reads the working grid's voxel size (condensation's positions) reads it from the
    image.

    Examples
    --------
    >>> from CUTSSegmentationLib.core.imagedata import Geometry
    >>> image = ImageData(np.zeros((2, 4, 4, 1), np.float32), Geometry(spacing=(0.5, 0.5, 6.5)))
    >>> coarse = block_mean(image, 2)
    >>> coarse.array.shape, coarse.geometry.spacing, coarse.geometry.origin
    ((2, 2, 2, 1), (1.0, 1.0, 6.5), (0.25, 0.25, 0.0))
    >>> thick = block_mean(image, (2, 1, 1))
    >>> thick.array.shape, thick.geometry.spacing, thick.geometry.origin
    ((1, 4, 4, 1), (0.5, 0.5, 13.0), (0.0, 0.0, 3.25))
    """
    fz, fy, fx = factors_of(factors)
    if (fz, fy, fx) == NO_BLOCKS:
        return image
    z, y, x, c = image.array.shape
    nz, ny, nx = -(-z // fz), -(-y // fy), -(-x // fx)
    padded = np.pad(image.array, ((0, nz * fz - z), (0, ny * fy - y), (0, nx * fx - x), (0, 0)), mode="edge")
    coarse = padded.reshape(nz, fz, ny, fy, nx, fx, c).mean(axis=(1, 3, 5), dtype=np.float32)
    geometry = image.geometry
    sx, sy, sz = (float(s) for s in geometry.spacing)
    centre = ((fx - 1) / 2.0, (fy - 1) / 2.0, (fz - 1) / 2.0)
    origin = tuple(float(v) for v in geometry.index_to_lps(centre))
    return ImageData(
        array=np.ascontiguousarray(coarse, dtype=np.float32),
        geometry=replace(geometry, spacing=(sx * fx, sy * fy, sz * fz), origin=origin),
        is_2d=image.is_2d,
        source=image.source,
        source_dtype=image.source_dtype,
        sequences=image.sequences,
    )


def to_image_grid(labels: np.ndarray, factors: Union[int, Sequence[int]], shape_zyx: Sequence[int]) -> np.ndarray:
    """Per-voxel labels (N_working,) in raster order, repeated back onto the image's (Z, Y, X) grid, flattened.

    Examples
    --------
    >>> to_image_grid(np.array([1, 2]), 2, (1, 2, 3)).reshape(2, 3).tolist()
    [[1, 1, 2], [1, 1, 2]]
    >>> to_image_grid(np.array([1, 2, 3, 4]), (2, 1, 1), (3, 1, 2)).reshape(3, 2).tolist()  # 2-slice blocks
    [[1, 2], [1, 2], [3, 4]]
    """
    fz, fy, fx = factors_of(factors)
    if (fz, fy, fx) == NO_BLOCKS:
        return labels
    z, y, x = (int(s) for s in shape_zyx)
    grid = labels.reshape(-(-z // fz), -(-y // fy), -(-x // fx))
    full = np.repeat(np.repeat(np.repeat(grid, fz, axis=0), fy, axis=1), fx, axis=2)[:z, :y, :x]
    return np.ascontiguousarray(full).reshape(-1)


def box_on_image_grid(box: Sequence[slice], factors: Union[int, Sequence[int]], shape_zyx: Sequence[int]):
    """A box of working-grid voxels as the box of image voxels its blocks cover (clipped to `shape_zyx`).

    Examples
    --------
    >>> box_on_image_grid((slice(1, 3), slice(0, 2), slice(2, 4)), (1, 2, 2), (5, 3, 8))
    (slice(1, 3, None), slice(0, 3, None), slice(4, 8, None))
    """
    return tuple(slice(b.start * f, min(b.stop * f, int(n))) for b, f, n in zip(box, factors_of(factors), shape_zyx))
