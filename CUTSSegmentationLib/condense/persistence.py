"""Persistent structures (paper section 3.2.2): one label map from the whole hierarchy.

The design, its sources and the choices made: docs/architecture.md, section `condense/persistence.py`.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import InputError
from ..core.label_dtypes import smallest_uint
from .level_stack import Levels, as_levels

#: Levels with more clusters than this do not enter the persistent map (see the module docstring).
PERSISTENT_MAX_CLUSTERS = 24

#: Above this id, ids are renumbered densely (np.unique) before counting, to keep the tables small.
_DENSE_MAX_ID = 1 << 22


def persistent_structures(
    levels: Levels,
    min_area_fraction: float = 0.01,
    min_persistence: int = 2,
    skip_coarsest: bool = False,
) -> np.ndarray:
    """The persistent-structures map of a hierarchy's `levels` (L, *shape), finest first; see the module doc.

    Returns a (*shape) label map, uint16 (uint32 only if a painted id exceeds 65535), 0 where nothing is
    painted. Memory stays O(one level + number of ids): one np.bincount per level to get areas and
    persistence, then one lookup pass per level for the painting (each pixel takes the kept id with the
    latest paint rank among the ids whose best-level region covers it, which equals painting them in order).
    """
    levels = as_levels(levels)
    if levels.ndim < 2:
        raise InputError(f"levels must be (L, *image shape), got shape {levels.shape}")
    if levels.dtype != bool and not np.issubdtype(levels.dtype, np.integer):
        raise InputError(f"levels must hold integer labels, got dtype {levels.dtype}")
    if not 0.0 <= float(min_area_fraction) <= 1.0:
        raise InputError(f"min_area_fraction must be in [0, 1], got {min_area_fraction}")
    shape = levels.shape[1:]
    used = levels[:-1] if skip_coarsest else levels
    n_pixels = int(np.prod(shape))
    if used.shape[0] == 0 or n_pixels == 0:
        return np.zeros(shape, dtype=np.uint16)
    if np.issubdtype(used.dtype, np.signedinteger) and used.min() < 0:
        raise InputError("levels contain negative labels")

    top = int(used.max())
    if top >= _DENSE_MAX_ID:  # sparse huge ids: renumber to 0..K-1 (0 stays 0 when present)
        id_values, dense = np.unique(np.asarray(used), return_inverse=True)
        dense = dense.reshape(used.shape)
        if id_values[0] != 0:
            id_values = np.concatenate([[0], id_values])
            dense = dense + 1
        used = dense
        top = len(id_values) - 1
    else:
        id_values = np.arange(top + 1)
    n_ids = top + 1

    persistence = np.zeros(n_ids, dtype=np.int64)
    area = np.zeros(n_ids, dtype=np.int64)
    best_level = np.full(n_ids, -1, dtype=np.int64)
    for index in range(used.shape[0]):
        counts = np.bincount(used[index].reshape(-1), minlength=n_ids)
        persistence += counts > 0
        larger = counts > area  # strict: ties keep the earlier (finer) level
        area[larger] = counts[larger]
        best_level[larger] = index

    keep = (area >= float(min_area_fraction) * n_pixels) & (persistence >= int(min_persistence)) & (area > 0)
    keep[0] = False  # 0 is "no label"
    kept = np.flatnonzero(keep)
    if kept.size == 0:
        return np.zeros(shape, dtype=np.uint16)
    # Paint order: (-area, -persistence, id); np.lexsort sorts by its last key first.
    order = kept[np.lexsort((kept, -persistence[kept], -area[kept]))]
    rank = np.zeros(n_ids, dtype=np.int64)
    rank[order] = np.arange(1, order.size + 1)  # later painted = higher rank = on top

    rank_dtype = np.uint16 if order.size < np.iinfo(np.uint16).max else np.uint32
    painted = np.zeros(shape, dtype=rank_dtype)
    for index in np.unique(best_level[kept]):
        table = np.zeros(n_ids, dtype=rank_dtype)
        here = kept[best_level[kept] == index]
        table[here] = rank[here]
        np.maximum(painted, table[used[index]], out=painted)

    id_of_rank = np.zeros(order.size + 1, dtype=np.int64)
    id_of_rank[1:] = id_values[order]
    out_dtype = smallest_uint(int(id_of_rank.max()))
    return id_of_rank.astype(out_dtype)[painted]


def persistent_level_indices(n_clusters: np.ndarray, max_clusters: int = PERSISTENT_MAX_CLUSTERS) -> np.ndarray:
    """Indices of the levels that feed the persistent map: those with at most `max_clusters` clusters.

    When fewer than two levels qualify (persistence needs two), the two coarsest levels are used (all of
    them when the hierarchy has fewer), so a hierarchy always yields a map.
    """
    counts = np.asarray(n_clusters).reshape(-1)
    chosen = np.flatnonzero(counts <= int(max_clusters))
    if chosen.size >= 2:
        return chosen
    return np.sort(np.argsort(counts, kind="stable")[: min(2, counts.size)])
