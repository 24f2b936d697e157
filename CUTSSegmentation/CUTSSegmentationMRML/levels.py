"""Hierarchy levels into segmentation nodes: level choice, panel text, seed points, kept structures.

The one implementation behind the console API, the module panel and `Resources/Scripts/batch.py`. Levels
are addressed as in the engine's command line: an integer index into the hierarchy's kept levels
(0 = finest, -1 = coarsest) or the string "persistent" for the persistent-structures map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import numpy as np
from CUTSSegmentationJobs.engine import Hierarchy, InputError, binarize_at_seed
from CUTSSegmentationJobs.engine import parse_level as engine_parse_level

from .bridge import present_labels, push_level_to_segmentation, seed_from_markup

PERSISTENT = "persistent"
# Aliases are evaluated at import: typing.Union, as Slicer 5.8 runs Python 3.9.
LevelSpec = Union[int, str]
SeedLike = Union[Sequence[float], Any]


# --------------------------------------------------------------------------------------- levels
def parse_level(value: None | int | str) -> LevelSpec:
    """ "persistent" / None -> "persistent"; "3" / 3 -> 3; anything else: InputError (the engine's rule)."""
    return engine_parse_level(value, name="level")


def level_label_map(hierarchy: Hierarchy, level: LevelSpec) -> np.ndarray:
    """The label map shown for `level` (cached in the hierarchy: no recomputation; range-checked)."""
    return hierarchy.label_map(level, name="level")


def default_level(hierarchy: Hierarchy) -> int:
    """The level shown first after condensation: the middle of the hierarchy (neither all fragments nor one blob)."""
    return max(0, (hierarchy.n_levels - 1) // 2)


def count_structures(label_map: np.ndarray) -> int:
    """Number of distinct nonzero labels."""
    return len(present_labels(label_map))


def level_description(hierarchy: Hierarchy, level: LevelSpec) -> str:
    """One line for the panel: "Level 3 of 6 (finest 0): 12 clusters" or "Persistent structures: 5"."""
    level = parse_level(level)
    if level == PERSISTENT:
        return f"Persistent structures: {count_structures(level_label_map(hierarchy, level))}"
    index = int(level) % hierarchy.n_levels
    clusters = int(hierarchy.n_clusters[index])
    return f"Level {index} of {hierarchy.n_levels - 1} (0 = finest): {clusters} cluster{'s' if clusters != 1 else ''}"


def segment_names(label_map: np.ndarray, level: LevelSpec) -> dict[int, str]:
    """Segment names: "Cluster N" on a level, "Structure N" on the persistent map (as `cuts segment` writes)."""
    prefix = "Structure" if parse_level(level) == PERSISTENT else "Cluster"
    return {int(v): f"{prefix} {int(v)}" for v in present_labels(label_map)}


# --------------------------------------------------------------------------------------- segmentations
def push_level(
    hierarchy: Hierarchy,
    level: LevelSpec,
    segmentation_node: Any,
    reference_volume_node: Any,
) -> list[str]:
    """Replace the segmentation's segments with the label map of `level` (fast: one shared labelmap layer)."""
    labels = level_label_map(hierarchy, level)
    return push_level_to_segmentation(
        labels,
        segmentation_node,
        reference_volume_node,
        names=segment_names(labels, level),
    )


def seed_voxel(seed: SeedLike, volume_node: Any, point_index: int = 0) -> tuple[int, int, int]:
    """Voxel index (x, y, z) of a seed given as a markups node (its point `point_index`) or as numbers."""
    if hasattr(seed, "GetNumberOfControlPoints"):
        return seed_from_markup(seed, volume_node, point_index)
    try:
        values = [float(v) for v in seed]
    except TypeError:
        raise InputError(f"a seed is a markups point node or voxel indices (x, y, z), got {seed!r}") from None
    if len(values) == 2:
        values.append(0.0)
    if len(values) != 3:
        raise InputError(f"a seed needs (x, y) or (x, y, z) voxel indices, got {len(values)} numbers")
    return tuple(int(np.floor(v + 0.5)) for v in values)  # type: ignore[return-value]


def structure_at_seed(hierarchy: Hierarchy, level: LevelSpec, seed_xyz: Sequence[float]) -> tuple[int, np.ndarray]:
    """(label, label map with only that label kept) for the structure under the seed voxel."""
    labels = level_label_map(hierarchy, level)
    seed = tuple(seed_xyz)
    if labels.ndim == 2 and len(seed) == 3 and int(np.floor(float(seed[2]) + 0.5)) == 0:
        seed = seed[:2]
    mask = binarize_at_seed(labels, seed)
    label = int(labels[mask].flat[0])
    return label, np.where(mask, labels, 0).astype(labels.dtype, copy=False)


def keep_structure_at_seed(
    hierarchy: Hierarchy,
    level: LevelSpec,
    seed_xyz: Sequence[float],
    segmentation_node: Any,
    reference_volume_node: Any,
) -> int:
    """Replace the segmentation's segments with the one structure under the seed; returns its label.

    The kept segment has the same id, name and colour it has when the whole level is shown, so the
    Segment Editor and a user's eye keep recognising it.
    """
    label, kept = structure_at_seed(hierarchy, level, seed_xyz)
    names = segment_names(kept, level)
    push_level_to_segmentation(kept, segmentation_node, reference_volume_node, names=names)
    return label


def reference_volume_of(segmentation_node: Any) -> Any | None:
    """The volume whose geometry a segmentation was given (Slicer's "referenceImageGeometryRef"), if any."""
    if segmentation_node is None:
        return None
    node = segmentation_node.GetNodeReference("referenceImageGeometryRef")
    return node if node is not None and node.IsA("vtkMRMLVolumeNode") else None
