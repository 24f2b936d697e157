"""Structures, not classes: the connected region a click on the hierarchy means.

A level's label is a tissue class: one id can cover a lesion and, far away, the scalp. A clinician who clicks
the lesion means the connected region under the click. Because the hierarchy is nested (clusters only merge),
the component under a seed can only grow from the finest level to the coarsest: a chain
``C_0 <= C_1 <= ... <= C_{L-1}``. The structure a click keeps is the chain's member just before its first
salient growth (at least 2.5 times larger at the next level): the region stays itself over some levels, then
merges into something much larger (a lesion into the surrounding white matter, the spinal cord into the CSF
around it). With the image, a finer member whose boundary is clearly sharper in it replaces that choice
(`sharpest_level`, `condense.boundary`): a region that leaks into a neighbour in small steps ends at its edge;
the kept region then grows out to that edge where the hierarchy's atoms stop short of it
(`condense.edge_growth`). Any level, or the whole class, stays available.

See docs/architecture.md ("Structures") for the measurements behind the rule.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import flood

from ..core.errors import InputError
from .binarize import seed_to_index
from .boundary import CONTRAST_MARGIN, SHELL_VOXELS, boundary_contrast, padded_box
from .edge_growth import grow_to_edge
from .edge_snap import snap_outward
from .level_stack import Levels, as_levels

#: A chain member smaller than this many voxels is never chosen as the structure (single-voxel specks).
MIN_STRUCTURE_VOXELS = 8
#: Growth from one level to the next that marks a structure's boundary (the same choice for every jump in
#: 2-3 on the development volumes; docs/benchmarks.md, 3D volumes).
SALIENT_JUMP = 2.5


@dataclass(frozen=True)
class SeedChain:
    """The nested components under one seed, finest level first.

    Attributes
    ----------
    index : tuple of int
        The seed as an array index ((z,) y, x).
    sizes : np.ndarray
        (L,) voxels of the component under the seed at each level (non-decreasing).
    boxes : list of tuple of slice
        Bounding box of each component (the finer ones nest inside the coarser ones).
    """

    index: tuple[int, ...]
    sizes: np.ndarray
    boxes: list[tuple[slice, ...]]

    def growth(self) -> np.ndarray:
        """(L - 1,) relative growth from each level to the next coarser one (>= 1)."""
        s = self.sizes.astype(np.float64)
        return s[1:] / np.maximum(s[:-1], 1.0)

    def persistence(self, level: int) -> int:
        """Consecutive levels around `level` whose region under the seed has the same voxels (nested: same size)."""
        same = self.sizes == self.sizes[level]
        lo, hi = level, level
        while lo > 0 and same[lo - 1]:
            lo -= 1
        while hi + 1 < len(same) and same[hi + 1]:
            hi += 1
        return hi - lo + 1

    def chosen_level(
        self, min_voxels: int = MIN_STRUCTURE_VOXELS, jump: float = SALIENT_JUMP, total: Optional[int] = None
    ) -> int:
        """The level just before the first growth by at least `jump` (else before the largest growth).

        The first salient jump from the finest level keeps the smallest structure that stands out around the
        click (a spinal cord before it joins the CSF around it, which later joins everything). Levels whose
        component is smaller than `min_voxels` are not candidates unless no level is larger; a hierarchy of one
        level, or a chain that never grows, gives its coarsest level. With `total` (the image's voxel count),
        the whole image counts as the level above the coarsest, as the merge tree ends in one cluster: a region
        whole only at the coarsest level (a lung in a thorax CT) is kept there when it is salient against the rest.
        """
        if total is not None and int(total) > int(self.sizes[-1]):
            extended = SeedChain(self.index, np.append(self.sizes, int(total)), [*self.boxes, ()])
            return min(extended.chosen_level(min_voxels, jump), len(self.sizes) - 1)
        n = len(self.sizes)
        if n == 1:
            return 0
        growth = self.growth()
        candidates = self.sizes[:-1] >= min_voxels
        if not candidates.any() or float(growth.max()) <= 1.0:
            return n - 1
        salient = np.flatnonzero(candidates & (growth >= jump))
        if salient.size:
            return int(salient[0])
        return int(np.argmax(np.where(candidates, growth, -np.inf)))


def _box(mask: np.ndarray, offset: Sequence[slice]) -> tuple[slice, ...]:
    """Bounding box of a non-empty bool mask, in the coordinates of the array `offset` cuts from."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        start = offset[axis].start or 0
        box.append(slice(start + int(hits[0]), start + int(hits[-1]) + 1))
    return tuple(box)


def component_at(labels: np.ndarray, index: Sequence[int], connectivity: int = 1) -> np.ndarray:
    """Bool mask of the connected region of equal label that contains `index` (face neighbours by default).

    Examples
    --------
    >>> labels = np.array([[1, 1, 2, 1]])
    >>> component_at(labels, (0, 0)).astype(int).tolist()
    [[1, 1, 0, 0]]
    """
    return flood(np.asarray(labels), tuple(int(i) for i in index), connectivity=connectivity)


def seed_chain(levels: Levels, index: Sequence[int], connectivity: int = 1) -> SeedChain:
    """Sizes and boxes of the component under `index` at every level of `levels` (L, *shape), finest first.

    Coarsest first, each flood runs inside the previous (coarser) component's bounding box: a finer component
    lies inside the coarser one, so the work shrinks with the structure instead of costing a full pass per level.
    Where the coarser component holds one label at the finer level it is the finer component too, and no flood
    runs (a thorax CT's click on the body's soft tissue: 3 floods of 16 levels).
    """
    levels = as_levels(levels)
    index = tuple(int(i) for i in index)
    n = levels.shape[0]
    sizes = np.zeros(n, dtype=np.int64)
    boxes: list[tuple[slice, ...]] = [()] * n
    box: tuple[slice, ...] = tuple(slice(0, s) for s in levels.shape[1:])
    mask: Optional[np.ndarray] = None  # the coarser level's region, in `box`
    for level in range(n - 1, -1, -1):
        crop = levels[(level,) + box]
        local = tuple(i - b.start for i, b in zip(index, box))
        if mask is None or not bool(np.all(crop[mask] == crop[local])):
            mask = component_at(crop, local, connectivity)
            inner = _box(mask, box)
            mask = mask[tuple(slice(i.start - b.start, i.stop - b.start) for i, b in zip(inner, box))]
            box = inner
        # else: the coarser region is connected and holds one label here, so it is this level's region too
        sizes[level] = int(np.count_nonzero(mask))
        boxes[level] = box
    return SeedChain(index=index, sizes=sizes, boxes=boxes)


def chain_member(
    levels: Levels, chain: SeedChain, level: int, fill_holes: bool = True, connectivity: int = 1
) -> np.ndarray:
    """Bool mask (the levels' spatial shape) of the chain's region at `level`, cavities filled by default.

    The flood runs inside the region's bounding box, which `seed_chain` recorded (`connectivity` must be the
    chain's), so every member of a chain costs one flood of its box.

    Examples
    --------
    >>> levels = np.array([[[1, 1, 2]], [[1, 1, 1]]])  # (L=2, Y=1, X=3)
    >>> chain = seed_chain(levels, (0, 0))
    >>> chain_member(levels, chain, 0).astype(int).tolist(), int(chain_member(levels, chain, 1).sum())
    ([[1, 1, 0]], 3)
    """
    box, region = _member_in_box(levels, chain, level, fill_holes, connectivity)
    mask = np.zeros(levels.shape[1:], dtype=bool)
    mask[box] = region
    return mask


def _member_in_box(
    levels: Levels, chain: SeedChain, level: int, fill_holes: bool, connectivity: int, pad: int = 0
) -> tuple[tuple[slice, ...], np.ndarray]:
    """(box, region in the box) of the chain's member at `level`; the box is its bounding box grown by `pad`."""
    box = padded_box(chain.boxes[level], levels.shape[1:], pad)
    local = tuple(i - b.start for i, b in zip(chain.index, box))
    region = component_at(levels[(level,) + box], local, connectivity)
    if fill_holes:
        region = fill_enclosed(region)
    return box, region


def sharpest_level(
    levels: Levels,
    chain: SeedChain,
    level: int,
    image: np.ndarray,
    *,
    margin: float = CONTRAST_MARGIN,
    min_voxels: int = MIN_STRUCTURE_VOXELS,
    fill_holes: bool = True,
    connectivity: int = 1,
) -> int:
    """`level`, or the finer level whose member of the chain has the sharpest boundary in `image`, where that
    boundary is more than `margin` times as sharp as `level`'s (`boundary.boundary_contrast`).

    Only finer members are candidates: the size rule's member is the largest one a click keeps; the image can
    only say that the structure ends earlier (a spleen before its leak into a neighbour).

    Examples
    --------
    >>> image = np.array([[10.0, 9.5, 10, 10, 5, 4.5, 5, 5, 4, 4, 4, 4]])  # a bright run, a dim one, background
    >>> levels = np.array([[[1] * 4 + [2] * 4 + [3] * 4], [[1] * 8 + [3] * 4]])  # the runs merge at level 1
    >>> chain = seed_chain(levels, (0, 0))
    >>> sharpest_level(levels, chain, 1, image, min_voxels=1)  # the bright run is sharper than the merged runs
    0
    """
    shape = levels.shape[1:]
    image = np.asarray(image)
    if image.shape[: len(shape)] != shape:
        raise InputError(f"the image {image.shape[: len(shape)]} is not the hierarchy's grid {shape}")

    def contrast(k: int) -> float:
        box, region = _member_in_box(levels, chain, k, fill_holes, connectivity, pad=SHELL_VOXELS)
        return boundary_contrast(region, image[box])

    sizes = chain.sizes
    candidates = [  # distinct finer regions: no speck, not the size rule's region, not the finer level's
        k for k in range(int(level)) if min_voxels <= sizes[k] < sizes[level] and (k == 0 or sizes[k] != sizes[k - 1])
    ]
    if not candidates:
        return int(level)
    chosen, best = int(level), contrast(level)
    floor = margin * best
    for k in candidates:
        score = contrast(k)
        if score > floor and score > best:
            chosen, best = k, score
    return chosen


def fill_enclosed(mask: np.ndarray) -> np.ndarray:
    """`mask` with its enclosed cavities filled, in 3D and then slice by slice.

    A structure is solid as a clinician outlines it: a necrotic core inside a tumour, a vessel inside an
    organ that is closed in the slice, belong to it. Equal to `scipy.ndimage.binary_fill_holes` on the volume and
    then on each slice along the first axis, done as one labelling of the background each: 2.0 s instead of
    9.5 s for the four regions of 7-10 M voxels a click on a thorax CT's soft tissue fills.

    Examples
    --------
    >>> ring = np.ones((1, 5, 5), dtype=bool); ring[0, 2, 2] = False  # a hole closed in its slice
    >>> bool(fill_enclosed(ring)[0, 2, 2])
    True
    """
    mask = np.asarray(mask, dtype=bool)
    filled = _without_enclosed_background(mask, ndi.generate_binary_structure(mask.ndim, 1), range(mask.ndim))
    if filled.ndim == 3:
        in_slice = np.zeros((3, 3, 3), dtype=bool)
        in_slice[1] = ndi.generate_binary_structure(2, 1)
        filled = _without_enclosed_background(filled, in_slice, (1, 2))
    return filled


def _without_enclosed_background(mask: np.ndarray, structure: np.ndarray, border_axes: Sequence[int]) -> np.ndarray:
    """`mask` joined by every background component (`structure`-connected) that touches no end of `border_axes`."""
    labels, count = ndi.label(~mask, structure)
    if count == 0:
        return mask.copy()
    open_to_border = np.zeros(count + 1, dtype=bool)
    for axis in border_axes:
        open_to_border[np.take(labels, 0, axis=axis)] = True
        open_to_border[np.take(labels, -1, axis=axis)] = True
    open_to_border[0] = False  # label 0 is the mask itself
    return ~open_to_border[labels]


def labelled_seed(levels: Levels, seed_index_xyz: Sequence[float]) -> tuple[int, ...]:
    """The seed's array index (z, y, x) or (y, x); InputError where it lies outside the levels' grid or on an
    unlabelled voxel (label 0 at the finest level), so a bad click fails before any work."""
    index = seed_to_index(seed_index_xyz, levels.shape[1:])
    if levels[(0,) + index] == 0:
        raise InputError("the seed is on an unlabelled voxel (label 0): place it inside a structure")
    return index


@dataclass(frozen=True)
class Structure:
    """What a click keeps: the mask and where in the hierarchy it came from.

    Attributes
    ----------
    mask : np.ndarray
        Bool, the image's shape.
    level : int
        The level the region was taken from.
    persistence : int
        Consecutive levels around `level` over which the region under the seed stays the same voxels: how
        long this structure lives in the hierarchy (the structure's persistence, not its label id's).
    voxels : int
        Voxels in `mask` (after filling enclosed cavities).
    chain_sizes : np.ndarray
        (L,) voxels of the region under the seed at every level, finest first.
    box_mm : float, optional
        Side of the box around the click whose own hierarchy the structure came from (`condense.zoom`; then
        `level` is a level of that box's hierarchy); None: the whole image's hierarchy.
    grown_mm : float, optional
        How far (mm) the structure was grown to the image's edge beyond its region in the hierarchy
        (`edge_growth.grow_to_edge`); None: kept as the hierarchy holds it.
    """

    mask: np.ndarray
    level: int
    persistence: int
    voxels: int
    chain_sizes: np.ndarray
    box_mm: Optional[float] = None
    grown_mm: Optional[float] = None


def structure_at_seed(
    levels: Levels,
    seed_index_xyz: Sequence[float],
    *,
    level: Optional[int] = None,
    whole_class: bool = False,
    fill_holes: bool = True,
    connectivity: int = 1,
    image: Optional[np.ndarray] = None,
    spacing_xyz: Optional[Sequence[float]] = None,
    snap: bool = True,
) -> Structure:
    """The structure under a seed: its connected region at the chosen level of the hierarchy.

    Parameters
    ----------
    levels : np.ndarray or LevelStack
        (L, *shape) label maps, finest first (a hierarchy's levels; a single map as (1, *shape) works too).
    seed_index_xyz : sequence of float
        The click as a voxel index (x, y[, z]); continuous values round half up.
    level : int, optional
        Use this level (negative counts from the coarsest) instead of the automatic choice.
    whole_class : bool
        Keep every voxel with the seed's label at that level (the tissue class), not only the region under it.
    fill_holes : bool
        Fill cavities enclosed by the structure (ignored with `whole_class`).
    connectivity : int
        1: face neighbours; ``ndim``: also edge and corner neighbours.
    image : np.ndarray, optional
        The segmented image's intensities on the levels' grid (`shape` or `shape + (C,)`): the automatic level
        then moves to a finer member of the seed's chain whose boundary is clearly sharper
        (`sharpest_level`), and the structure grows out to the edge the image draws around it where that
        growth stops (`edge_growth.grow_to_edge`), its outline moved out to the strongest edge just beyond it
        (`edge_snap.snap_outward`). Without it the level is chosen from the region's sizes
        alone and the structure is the level's region.
    spacing_xyz : sequence of float, optional
        Voxel size (x, y[, z]) in mm, for the growth to the image's edge and the snap to it; None: 1 along every
        axis.
    snap : bool
        False: the grown structure is left unsnapped, for a caller that snaps (`edge_snap.snap_outward`) only
        the structure it keeps.

    Returns
    -------
    Structure
        The bool mask (the image's shape), the level used and the chain of component sizes.

    Examples
    --------
    >>> fine = np.repeat([1, 2, 3], 10)[None, :]  # (Y=1, X=30): three runs of 10 pixels
    >>> coarse = np.repeat([1, 1, 3], 10)[None, :]  # 1 and 2 merged
    >>> coarsest = np.ones((1, 30), dtype=int)
    >>> s = structure_at_seed(np.stack([fine, coarse, coarsest]), (2, 0))
    >>> s.level, s.voxels, s.chain_sizes.tolist()  # 10 -> 20 (x2) -> 30 (x1.5): kept before the x2
    (0, 10, [10, 20, 30])
    """
    levels = as_levels(levels)
    if levels.ndim not in (3, 4):
        raise InputError(f"levels must be (L, Y, X) or (L, Z, Y, X), got shape {levels.shape}")
    if levels.shape[0] == 0:
        raise InputError("the hierarchy has no levels")
    index = labelled_seed(levels, seed_index_xyz)
    chain = seed_chain(levels, index, connectivity=connectivity)
    if level is None:
        chosen = chain.chosen_level(total=int(np.prod(levels.shape[1:])))
        if image is not None:
            chosen = sharpest_level(levels, chain, chosen, image, fill_holes=fill_holes, connectivity=connectivity)
    else:
        if not -levels.shape[0] <= int(level) < levels.shape[0]:
            raise InputError(f"level {level} does not exist (the hierarchy has {levels.shape[0]} levels)")
        chosen = int(level) % levels.shape[0]
    grown_mm = None
    if whole_class:
        labels = levels[chosen]
        mask = labels == labels[index]
    else:
        mask = chain_member(levels, chain, chosen, fill_holes=fill_holes, connectivity=connectivity)
        if level is None and image is not None:
            mask, grown_mm = grow_to_edge(mask, image, spacing_xyz)
            if snap:
                mask = snap_outward(mask, image, spacing_xyz)
    return Structure(
        mask=mask,
        level=chosen,
        persistence=chain.persistence(chosen),
        voxels=int(mask.sum()),
        chain_sizes=chain.sizes,
        grown_mm=grown_mm,
    )


def snapped_structure(structure: Structure, image: np.ndarray, spacing_xyz: Optional[Sequence[float]]) -> Structure:
    """`structure` (from `structure_at_seed(..., snap=False)`) with its outline moved out to the image's edge
    (`edge_snap.snap_outward`), as `structure_at_seed` snaps it with the image: for a caller that snaps only the
    structure it keeps, the snap of a large region taking seconds."""
    mask = snap_outward(structure.mask, image, spacing_xyz)
    return replace(structure, mask=mask, voxels=int(mask.sum()))
