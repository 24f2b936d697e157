"""Edge growth: a kept structure grown out to the edge the image draws around it.

The hierarchy's members are unions of atoms found on a working grid, so the structure a click keeps often
stops a voxel or a few short of the organ's outline (a spleen whose rim is a separate atom), and stops short
most where the rim differs a little from the core (a tumour's edema). Growing the structure into the
neighbouring voxels that look like its own inside (within a few robust spreads of its median) reaches that
outline; growth that has not stopped by the time the distance doubles is a leak into a neighbour of the same
intensity (muscle around a sarcoma, brain around edema), and the structure is then kept as it was.

See docs/benchmarks.md ("3D volumes: growing to the edge") for the measurements behind the rule.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage as ndi

from ..core.imagedata import voxel_size_zyx
from .boundary import boundary_contrast, region_box, robust_centre_and_spread, with_channels

#: How far (mm) the growth may reach, doubling: the structure is grown to each in turn.
GROWTH_DISTANCES_MM: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0, 32.0)
#: Voxels within this many robust spreads of the structure's own median (every channel) may join it.
GROWTH_SPREADS = 2.0
#: The growth has stopped at an edge when doubling the distance adds less than this fraction of voxels.
SETTLED_FRACTION = 0.05
#: A growth that more than doubles the region is another structure joining it, not the region's rim.
MAX_GROWTH = 1.0
#: Voxels of one slab of the distance transform, halo included (scipy's transform holds ~50 bytes a voxel).
SLAB_VOXELS = 16_000_000


def grow_to_edge(
    region: np.ndarray,
    image: np.ndarray,
    spacing_xyz: Optional[Sequence[float]] = None,
    *,
    spreads: float = GROWTH_SPREADS,
    settled: float = SETTLED_FRACTION,
    distances_mm: Sequence[float] = GROWTH_DISTANCES_MM,
) -> tuple[np.ndarray, Optional[float]]:
    """`region` grown into the neighbouring voxels that look like it, up to where that growth stops.

    Parameters
    ----------
    region : np.ndarray
        Bool mask of the structure, (Y, X) or (Z, Y, X); not empty.
    image : np.ndarray
        Intensities on the same grid, `region.shape` or `region.shape + (C,)`.
    spacing_xyz : sequence of float, optional
        Voxel size (x, y[, z]) in mm (a third value of a 2D image is ignored); None: 1 along every axis.
    spreads : float
        A voxel may join when, on every channel, it lies within `spreads` robust spreads (10th-90th percentile
        range / 2.56) of the region's median.
    settled : float
        The growth to distance ``d`` is kept at the first ``d`` where growing to ``2 d`` adds less than this
        fraction of its voxels.
    distances_mm : sequence of float
        The distances tried, increasing, each twice the one before (at most 255 of them).

    Returns
    -------
    (np.ndarray, float or None)
        The grown mask (a new array) and the distance it grew to; `region` itself and None when the growth never
        settles (a leak) or adds nothing.

    Examples
    --------
    >>> image = np.zeros((1, 12)); image[0, 2:9] = 10.0; image[0, 4] = 9.0  # a bright run, a rim voxel missed
    >>> region = np.zeros((1, 12), dtype=bool); region[0, 3:8] = True
    >>> grown, reach = grow_to_edge(region, image, distances_mm=(1.0, 2.0, 4.0))
    >>> np.flatnonzero(grown[0]).tolist(), reach  # out to the run's edge, not into the dark background
    ([2, 3, 4, 5, 6, 7, 8], 1.0)

    The growth is kept only where it stopped at an edge: doubling the distance added less than `settled` of
    its voxels, it did not more than double the region (`MAX_GROWTH`), and the image changes across its
    boundary by more than `spreads` and at least as much as across the region's own
    (`boundary.boundary_contrast`).
    """
    region = np.asarray(region, dtype=bool)
    image = with_channels(image, region.ndim)
    spacing = voxel_size_zyx(spacing_xyz, region.ndim)
    box = region_box(region, spacing, float(distances_mm[-1]))
    if box is None:
        return region, None
    inside = region[box]
    alike = _alike(inside, image[box], spreads)
    bands = distance_bands(inside, spacing, distances_mm)
    alike &= bands < len(distances_mm)
    own = int(np.count_nonzero(inside))
    previous: Optional[tuple[np.ndarray, int, float]] = None
    for band, d in enumerate(distances_mm):
        grown = _connected_to(inside, inside | (alike & (bands <= band)))
        voxels = int(np.count_nonzero(grown))
        if previous is not None and voxels <= (1.0 + settled) * previous[1]:
            kept, kept_voxels, kept_distance = previous
            if kept_voxels == own or kept_voxels > (1.0 + MAX_GROWTH) * own:
                return region, None
            if boundary_contrast(kept, image[box]) < max(spreads, boundary_contrast(inside, image[box])):
                return region, None  # no edge where the growth stopped, or a softer one than the region's own
            out = region.copy()
            out[box] = kept
            return out, kept_distance
        if voxels > (1.0 + MAX_GROWTH) * own:
            return region, None  # every later growth is at least this large: none could be kept
        previous = (grown, voxels, float(d))
    return region, None


def distance_bands(
    inside: np.ndarray,
    spacing_zyx: Sequence[float],
    distances_mm: Sequence[float],
    slab_voxels: int = SLAB_VOXELS,
) -> np.ndarray:
    """uint8 map: the index of the first of `distances_mm` (increasing) within which each voxel lies of `inside`.

    Voxels farther than the last distance hold ``len(distances_mm)``. The Euclidean distance transform runs slab
    by slab along the first axis, each slab with a halo as thick as the last distance: a voxel's nearest inside
    voxel within that distance is in its slab's halo, so every band equals the whole-box transform's while
    memory stays at one slab's: `slab_voxels`, or three halos' thickness where the slices are wider than that
    (scipy's transform holds ~50 bytes a voxel: 1.1 GB for a lung's 22 M-voxel box at 1 mm, 0.7 GB in slabs).

    Examples
    --------
    >>> inside = np.zeros((1, 9), dtype=bool); inside[0, 4] = True
    >>> distance_bands(inside, (1.0, 1.0), (1.0, 2.0, 4.0))[0].tolist()
    [2, 2, 1, 0, 0, 0, 1, 2, 2]
    """
    if len(distances_mm) > 255:
        raise ValueError("at most 255 distances")
    inside = np.asarray(inside, dtype=bool)
    bands = np.full(inside.shape, len(distances_mm), dtype=np.uint8)
    halo = int(np.ceil(float(distances_mm[-1]) / float(spacing_zyx[0]))) + 1
    plane = max(1, int(np.prod(inside.shape[1:])))
    step = max(halo, slab_voxels // plane - 2 * halo)  # a slab's own slices: at least its halo's
    for start in range(0, inside.shape[0], step):
        stop = min(inside.shape[0], start + step)
        lo, hi = max(0, start - halo), min(inside.shape[0], stop + halo)
        part = inside[lo:hi]
        if not part.any():
            continue  # nothing inside within reach of this slab
        distance = ndi.distance_transform_edt(~part, sampling=spacing_zyx)[start - lo : stop - lo]
        core = bands[start:stop]
        for band in range(len(distances_mm) - 1, -1, -1):
            core[distance <= distances_mm[band]] = band
    return bands


def _alike(inside: np.ndarray, image: np.ndarray, spreads: float) -> np.ndarray:
    """Voxels within `spreads` robust spreads of the inside's median on every channel of `image` (..., C)."""
    alike = np.ones(inside.shape, dtype=bool)
    for channel in range(image.shape[-1]):
        values = image[..., channel]
        centre, spread = robust_centre_and_spread(values[inside])
        alike &= np.abs(values.astype(np.float32) - np.float32(centre)) <= spreads * spread
    return alike


def _connected_to(seed: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The face-connected components of `mask` that hold a voxel of `seed`."""
    labels, _ = ndi.label(mask)
    ids = np.unique(labels[seed])
    return np.isin(labels, ids[ids > 0])
