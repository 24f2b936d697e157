"""A closer look at the click: hierarchies of boxes around it, where the whole-volume hierarchy is too coarse.

The whole-volume hierarchy spends about a thousand atoms and at most 64 clusters on the whole scan. In a thorax
CT the finest region under a click in the mediastinum is the body's soft tissue (11 litres), and the tumour
that was clicked is no level's region. Condensing only a box around the click (the same embeddings, the same
settings) spends the atoms where the clinician looks, and there the tumour is a member of the click's chain.

Boxes of several sides give several chains. The structure is the member the other boxes agree with most (the
largest summed Dice with each other box's closest member): a member cut by one box's border, or merged with
its surroundings at one box's scale, is not what the other boxes hold.

`is_unresolved` says when the whole-volume structure cannot stand: the finest region under the click is larger
than `UNRESOLVED_ML` or covers more than `UNRESOLVED_FRACTION` of the scan (on the development volumes the thorax
CT's soft tissue is 10.5 litres and a sarcoma MR's finest region 18 % of its scan; every other finest region is
at most 1.8 litres and 11 %; the fraction lies near the middle of its gap on a log scale; docs/benchmarks.md,
"a closer look around the click"). Below those sizes the
whole-volume structure can still be several small organs in one region (a kidney with the gallbladder and the
duodenum, where some 64 clusters cover a whole abdomen): `splits_whole` says when the closer look's structure
is a part of it and replaces it.

Where the whole-volume structure cannot stand, a member that reaches every face of its box is left out
(`fills_box`): it goes on past the box on every side, so the box does not say where it ends, and it is no more
a structure than the whole-volume region was (a thorax CT's spinal cord: the 128 mm box's soft tissue, Dice 0.02,
against 0.13 for the member kept without it). Where the closer look only checks the whole-volume structure
(`splits_whole`), such members stay: a box filled by the clicked region says the structure is larger than the
box, not that one of its parts is the answer.

Boxes clipped to the same extent (a small scan inside every cube) are one box; with a single box, its
hierarchy's own click rule (`structures.structure_at_seed`) chooses, as agreement needs two.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional, Sequence

import numpy as np

from ..core.errors import InputError
from ..core.imagedata import ImageData, voxel_size_zyx
from ..core.progress import CancelToken, ProgressCallback, check_cancel, no_progress
from ..evaluate.metrics import dice
from .boundary import boundary_contrast
from .condensation import CondensationConfig, condense
from .features import condensation_features
from .hierarchy import level_maps
from .structures import MIN_STRUCTURE_VOXELS, chain_member, seed_chain, structure_at_seed

#: Sides (mm) of the cubes around the click whose hierarchies are compared.
ZOOM_SIDES_MM: tuple[float, ...] = (100.0, 128.0, 160.0)
#: A finest region under the click larger than this (millilitres) holds more than one structure.
UNRESOLVED_ML = 3000.0
#: ... as does a finest region covering more than this fraction of the scan.
UNRESOLVED_FRACTION = 0.14

#: The closer look's structure replaces the whole-volume one where it holds less than this fraction of the
#: whole-volume structure's voxels inside its box (docs/benchmarks.md, "a closer look around the click").
SPLIT_FRACTION = 0.5
#: ... and, where the whole-volume structure is larger than the box, at least this fraction of its boundary
#: contrast: a part with less is a piece of one homogeneous structure, cut where the image draws no edge.
EDGE_FRACTION = 0.25

Box = tuple[slice, slice, slice]
#: The progress stage of a closer look.
STAGE = "closer"


def finest_region(chain_sizes: Sequence[int]) -> int:
    """Voxels of the finest region under a click that is not a speck (at least `MIN_STRUCTURE_VOXELS`).

    Examples
    --------
    >>> finest_region([4, 471_520, 485_723])
    471520
    """
    sizes = [int(s) for s in chain_sizes]
    return next((s for s in sizes if s >= MIN_STRUCTURE_VOXELS), sizes[-1])


def region_millilitres(voxels: int, spacing_xyz: Sequence[float]) -> float:
    """Volume of `voxels` voxels of `spacing_xyz` mm, in millilitres.

    Examples
    --------
    >>> region_millilitres(1_000_000, (1.0, 1.0, 3.0))
    3000.0
    """
    return float(voxels) * float(np.prod(spacing_xyz)) / 1000.0


def is_unresolved(
    chain_sizes: Sequence[int],
    total_voxels: int,
    spacing_xyz: Sequence[float],
    limit_ml: float = UNRESOLVED_ML,
    limit_fraction: float = UNRESOLVED_FRACTION,
) -> bool:
    """Whether the finest region under a click (`finest_region` of its chain's sizes) is too large to be one
    structure: more than `limit_ml` millilitres, or more than `limit_fraction` of the scan's `total_voxels`
    (voxels of `spacing_xyz` mm).

    Examples
    --------
    >>> is_unresolved([1_000_000], 20_000_000, (1.0, 1.0, 3.0))  # 3.0 litres, 5 % of the scan
    False
    >>> is_unresolved([2_000_000], 20_000_000, (1.0, 1.0, 3.0))  # 6 litres
    True
    >>> is_unresolved([4, 300_000], 1_000_000, (1.0, 1.0, 3.0))  # 0.9 litres, but 30 % of the scan
    True
    >>> is_unresolved([182_000], 1_000_000, (1.0, 1.0, 3.0))  # 18 %: a sarcoma MR's tumour with the muscle around it
    True
    >>> is_unresolved([110_000], 1_000_000, (1.0, 1.0, 3.0))  # 11 %: under the limit; `splits_whole` still checks it
    False
    """
    finest = finest_region(chain_sizes)
    return region_millilitres(finest, spacing_xyz) > limit_ml or finest > limit_fraction * total_voxels


def splits_whole(
    whole: np.ndarray,
    closer: np.ndarray,
    box: Box,
    image: Optional[np.ndarray] = None,
    fraction: float = SPLIT_FRACTION,
    edge_fraction: float = EDGE_FRACTION,
) -> bool:
    """Whether the closer look's structure `closer` is a part of the whole-volume structure `whole`: fewer
    voxels than `fraction` of the whole-volume structure's voxels inside the closer look's `box`; where the
    whole-volume structure holds more voxels than the box, also an edge of the part's own in `image`.

    Counting only inside the box keeps a structure larger than every box (a lung, of which a box holds a part)
    from looking split by a box-sized part of it. A box can also carve a structure larger than itself into
    pieces where the image has no edge (a lung's parenchyma cut by the voxels' positions at the box's finest
    level): there the part must have at least `edge_fraction` of the whole-volume structure's boundary
    contrast (`boundary.boundary_contrast`). Smaller whole-volume regions are judged by voxels alone: a small
    organ in a shared region may be held with a weak edge (a gallbladder's part, 0.16 of its region's
    contrast) and still be the better answer (docs/benchmarks.md, "a closer look around the click").

    Parameters
    ----------
    whole, closer : np.ndarray
        Bool masks on the image's grid.
    box : tuple of slice
        The box whose hierarchy holds `closer`, on the same grid.
    image : np.ndarray, optional
        Intensities on the grid (``whole.shape`` or ``whole.shape + (C,)``); without them a whole-volume
        structure larger than the box is never judged split.
    fraction, edge_fraction : float
        The thresholds above.

    Examples
    --------
    >>> whole = np.zeros((1, 10, 10), dtype=bool); whole[0, :, :8] = True  # two organs in one region
    >>> closer = np.zeros_like(whole); closer[0, 2:6, 2:5] = True  # the box's structure: one of them
    >>> box = (slice(0, 1), slice(0, 10), slice(0, 10))
    >>> splits_whole(whole, closer, box)
    True
    >>> splits_whole(whole, whole, box)
    False

    A 60-voxel box inside an 80-voxel region: the part needs an edge of its own.

    >>> image = np.where(whole, 10.0, 0.0) + np.indices(whole.shape)[2] % 2  # one organ, a little texture
    >>> small_box = (slice(0, 1), slice(0, 10), slice(0, 6))
    >>> splits_whole(whole, closer, small_box, image)
    False
    >>> image[closer] += 20.0  # a brighter organ: an edge of its own
    >>> splits_whole(whole, closer, small_box, image)
    True
    """
    inside = int(np.count_nonzero(whole[box]))
    if inside == 0 or int(np.count_nonzero(closer)) >= fraction * inside:
        return False
    if int(np.count_nonzero(whole)) <= int(np.prod([b.stop - b.start for b in box])):
        return True
    return image is not None and boundary_contrast(closer, image) >= edge_fraction * boundary_contrast(whole, image)


def box_around(index_zyx: Sequence[int], side_mm: float, spacing_xyz: Sequence[float], shape: Sequence[int]) -> Box:
    """The cube of side `side_mm` centred on `index_zyx`, clipped to a grid of `shape` (z, y, x).

    Examples
    --------
    >>> box_around((5, 50, 50), 20.0, (1.0, 1.0, 4.0), (10, 100, 100))
    (slice(2, 9, None), slice(40, 61, None), slice(40, 61, None))
    """
    spacing_zyx = np.asarray(voxel_size_zyx(spacing_xyz, len(shape)))
    half = np.ceil(side_mm / 2.0 / spacing_zyx).astype(int)
    at = np.asarray(index_zyx, dtype=int)
    lo = np.maximum(at - half, 0)
    hi = np.minimum(at + half + 1, np.asarray(shape, dtype=int))
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))  # type: ignore[return-value]


def fills_box(member_box: Sequence[slice], shape: Sequence[int]) -> bool:
    """Whether a region whose bounding box is `member_box` reaches every face of a box of `shape`.

    Examples
    --------
    >>> fills_box((slice(0, 4), slice(0, 5), slice(0, 6)), (4, 5, 6))
    True
    >>> fills_box((slice(0, 4), slice(1, 5), slice(0, 6)), (4, 5, 6))  # one face not reached
    False
    """
    return all(b.start == 0 and b.stop == n for b, n in zip(member_box, shape))


@dataclass(frozen=True)
class ZoomedStructure:
    """The structure chosen among the boxes' chains.

    Attributes
    ----------
    mask : np.ndarray
        Bool, the grid's (Z, Y, X) shape.
    side_mm : float
        Side of the box whose hierarchy holds it.
    level : int
        Its level in that box's hierarchy.
    agreement : float
        Mean Dice with the closest member of every other box's chain (1: all boxes hold the same region).
    box : tuple of slice
        That box on the grid (`box_around` of the click and `side_mm`).
    """

    mask: np.ndarray
    side_mm: float
    level: int
    agreement: float
    box: Box


def box_hierarchy_levels(
    image: ImageData, box: Box, embeddings: np.ndarray, config: CondensationConfig, device="cpu"
) -> np.ndarray:
    """(L, *box shape) levels of the box's own hierarchy, finest first (volume settings of `config`)."""
    crop = replace(image, array=np.ascontiguousarray(image.array[box]))
    resolved = config.resolved(is_volume=True)
    features = condensation_features(
        embeddings,
        crop,
        float(resolved.intensity_weight or 0.0),
        seed=resolved.seed,
        position_weight=float(resolved.position_weight or 0.0),
    )
    result = condense(features, resolved, device=device)
    return level_maps(result.atom_labels, result.merge_tree, result.level_events, crop.spatial_shape)[1]


def structure_in_boxes(
    image: ImageData,
    index_zyx: Sequence[int],
    embed: Callable[[Box], np.ndarray],
    sides_mm: Sequence[float] = ZOOM_SIDES_MM,
    config: Optional[CondensationConfig] = None,
    device="cpu",
    progress: ProgressCallback = no_progress,
    cancel: Optional[CancelToken] = None,
    box_filling: bool = True,
) -> ZoomedStructure:
    """The structure under `index_zyx` that the hierarchies of boxes of `sides_mm` around it agree on.

    Parameters
    ----------
    image : ImageData
        The volume on the grid the embeddings are computed on.
    index_zyx : sequence of int
        The click on that grid.
    embed : callable
        ``embed(box) -> (n, D)`` embeddings of the box's voxels in raster order (`learn.embedding.embed_box`);
        called once, for the largest box.
    sides_mm : sequence of float
        Cube sides; at least two for the agreement to mean anything.
    config : CondensationConfig, optional
        Condensation settings (default: the volume defaults).
    device
        Where condensation runs.
    progress, cancel
        Progress callback (stage "closer") and cancel token, checked before each box.
    box_filling : bool
        False: leave out the members that reach every face of their box (`fills_box`) wherever another member
        remains; True: every member competes.

    Returns
    -------
    ZoomedStructure
        The mask on the grid, the box side and level it came from, and how well the other boxes agree.
    """
    config = config or CondensationConfig()
    shape = image.array.shape[:3]
    at = tuple(int(i) for i in index_zyx)
    sides = sorted(float(s) for s in sides_mm)
    outer = box_around(at, sides[-1], image.geometry.spacing, shape)
    outer_shape = tuple(o.stop - o.start for o in outer)
    progress(STAGE, 0.0, f"embedding a {sides[-1]:g} mm box around the seed")
    embeddings = embed(outer)
    embeddings = embeddings.reshape(*outer_shape, embeddings.shape[-1])  # the boxes nest: embed the largest once
    boxes: dict[tuple[int, ...], tuple[Box, float]] = {}
    for side in sides:  # a box clipped to the extent of a smaller one is that box
        box = box_around(at, side, image.geometry.spacing, shape)
        boxes.setdefault(tuple(v for b in box for v in (b.start, b.stop)), (box, side))
    members: list[tuple[float, int, np.ndarray]] = []  # (side, level, mask in the outer box)
    filling: list[bool] = []  # whether each member reaches every face of its box
    box_of_side = {side: box for box, side in boxes.values()}
    for done, (box, side) in enumerate(boxes.values()):
        check_cancel(cancel)
        progress(STAGE, (done + 0.5) / (len(boxes) + 0.5), f"condensing the {side:g} mm box")
        inner = tuple(slice(b.start - o.start, b.stop - o.start) for b, o in zip(box, outer))
        rows = np.ascontiguousarray(embeddings[inner]).reshape(-1, embeddings.shape[-1])
        levels = box_hierarchy_levels(image, box, rows, config, device)
        local = tuple(i - b.start for i, b in zip(at, box))
        if len(boxes) == 1:
            kept = structure_at_seed(levels, local[::-1])
            progress(STAGE, 1.0, "one box holds the whole scan around the seed: its own click rule chose")
            mask = np.zeros(outer_shape, dtype=bool)
            mask[inner] = kept.mask
            return ZoomedStructure(
                mask=_in_grid(mask, outer, shape), side_mm=side, level=kept.level, agreement=1.0, box=box
            )
        chain = seed_chain(levels, local)
        for k in range(len(levels)):
            if (k and chain.sizes[k] == chain.sizes[k - 1]) or chain.sizes[k] < MIN_STRUCTURE_VOXELS:
                continue
            mask = np.zeros(outer_shape, dtype=bool)
            mask[inner] = chain_member(levels, chain, k)
            members.append((side, k, mask))
            filling.append(fills_box(chain.boxes[k], levels.shape[1:]))
    if not members:
        raise InputError(f"no box around the seed holds a region of at least {MIN_STRUCTURE_VOXELS} voxels")
    if not box_filling and not all(filling):
        members = [m for m, fills in zip(members, filling) if not fills]
    kept_sides = sorted({s for s, _, _ in members})
    agreement = [
        sum(max(dice(mask, m) for s2, _, m in members if s2 == s) for s in kept_sides if s != side)
        / max(len(kept_sides) - 1, 1)
        for side, _, mask in members
    ]
    progress(STAGE, 1.0, f"{len(members)} regions of {len(kept_sides)} boxes compared")
    best = int(np.argmax(agreement))
    side, level, mask = members[best]
    return ZoomedStructure(
        mask=_in_grid(mask, outer, shape), side_mm=side, level=level, agreement=agreement[best], box=box_of_side[side]
    )


def _in_grid(mask: np.ndarray, box: Box, shape: Sequence[int]) -> np.ndarray:
    """`mask` of `box` placed in a bool array of the grid's `shape`."""
    full = np.zeros(tuple(shape), dtype=bool)
    full[box] = mask
    return full
