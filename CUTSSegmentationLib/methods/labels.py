"""Label maps of the per-image methods: renumbered 1..n, and wrapped as a one-level `Hierarchy`.

A one-level hierarchy lets every method write the same files (`io.outputs.write_segmentation_outputs`):
``hierarchy.npz`` (one level; ``atom_map`` = the labels - 1, a one-row ``merge_tree``), ``persistent.nrrd``
(= the map), ``segmentation.seg.nrrd`` and ``levels.png``.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..condense.hierarchy import Hierarchy
from ..core.errors import InputError
from ..core.imagedata import ImageData
from ..core.label_dtypes import smallest_uint


def relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..n in increasing order of their old values (uint16)."""
    values, inverse = np.unique(np.asarray(labels), return_inverse=True)
    return (inverse.reshape(np.shape(labels)) + 1).astype(smallest_uint(len(values)))


def single_level_hierarchy(labels: np.ndarray, image: ImageData, info: Optional[dict[str, Any]] = None) -> Hierarchy:
    """A label map (values >= 1, `image.spatial_shape`) as a one-level hierarchy; see the module docstring."""
    labels = np.asarray(labels)
    if labels.shape != tuple(image.spatial_shape):
        raise InputError(f"label map shape {labels.shape} differs from the image's {tuple(image.spatial_shape)}")
    if labels.size and labels.min() < 1:
        raise InputError("a one-level hierarchy needs labels >= 1 (0 means 'no label')")
    top = int(labels.max()) if labels.size else 1
    dtype = smallest_uint(top)
    levels = labels.astype(dtype)[None]
    atom_map = (labels.astype(np.int64) - 1).astype(smallest_uint(max(top - 1, 0)))
    merge_tree = np.arange(top, dtype=np.int64)[None]
    n_present = int(len(np.unique(labels)))
    return Hierarchy(
        levels=levels,
        n_clusters=np.asarray([n_present]),
        level_steps=np.asarray([0]),
        atom_map=atom_map,
        merge_tree=merge_tree,
        persistent=levels[0].copy(),
        geometry=image.geometry,
        is_2d=image.is_2d,
        info=dict(info or {}),
    )
