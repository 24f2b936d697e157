"""Persistent structures: hand-computed maps, the authors' tie rules, area/persistence filters, 3D."""

from __future__ import annotations

import numpy as np
import pytest

from CUTSSegmentationLib.condense.persistence import persistent_structures
from CUTSSegmentationLib.core.errors import InputError

# Three nested levels of a 4 x 5 image (20 px), finest first. Merges keep one member's id:
# L1: 2 -> 1, 6 -> 3; L2: 5 -> 4, 3 -> 1.
L0 = [[1, 1, 2, 2, 3], [1, 1, 2, 2, 3], [4, 4, 5, 5, 3], [4, 4, 5, 5, 6]]
L1 = [[1, 1, 1, 1, 3], [1, 1, 1, 1, 3], [4, 4, 5, 5, 3], [4, 4, 5, 5, 3]]
L2 = [[1, 1, 1, 1, 1],
      [1, 1, 1, 1, 1],
      [4, 4, 4, 4, 1],
      [4, 4, 4, 4, 1]]  # fmt: skip


def nested_levels() -> np.ndarray:
    return np.array([L0, L1, L2], dtype=np.uint16)


def test_hand_computed_map() -> None:
    # id: persistence, best level, area
    #  1: 3, L2, 12     2: 1 (dropped)      3: 2, L1, 4
    #  4: 3, L2, 8      5: 2, L0 (tie L0/L1 -> finest), 4      6: 1 (dropped)
    # paint order (-area, -persistence, id): 1, 4, 3, 5
    out = persistent_structures(nested_levels(), min_area_fraction=0.1)
    expected = np.array([[1, 1, 1, 1, 3],
                         [1, 1, 1, 1, 3],
                         [4, 4, 5, 5, 3],
                         [4, 4, 5, 5, 3]])  # fmt: skip
    assert out.dtype == np.uint16
    assert np.array_equal(out, expected)


def test_min_area_drops_persistent_but_small_structures() -> None:
    # min area 0.25 * 20 = 5 px: ids 3 and 5 (4 px at best) go; 1 and 4 remain
    out = persistent_structures(nested_levels(), min_area_fraction=0.25)
    expected = np.array([[1, 1, 1, 1, 1],
                         [1, 1, 1, 1, 1],
                         [4, 4, 4, 4, 1],
                         [4, 4, 4, 4, 1]])  # fmt: skip
    assert np.array_equal(out, expected)
    # the threshold value itself is kept: 0.2 * 20 = 4 px keeps ids 3 and 5
    assert np.array_equal(
        persistent_structures(nested_levels(), min_area_fraction=0.2),
        persistent_structures(nested_levels(), min_area_fraction=0.1),
    )


def test_unpainted_pixels_stay_zero_and_small_persistent_ids_end_on_top() -> None:
    a = np.array([[1, 1, 1, 7],
                  [1, 2, 1, 1],
                  [1, 1, 1, 1]])  # fmt: skip
    b = np.array([[1, 1, 1, 8],
                  [1, 2, 1, 1],
                  [1, 1, 1, 1]])  # fmt: skip
    c = np.array([[1, 1, 1, 8],
                  [1, 1, 1, 1],
                  [1, 1, 1, 1]])  # fmt: skip
    out = persistent_structures(np.array([a, b, c], np.uint16), min_area_fraction=0.0)
    # 1: area 11 at L2, persistence 3; 2: area 1, persistence 2 -> painted on top of 1;
    # 7: persistence 1 (dropped); 8: persistence 2, area 1 -> on top. Nothing left 0 here...
    assert out[1, 1] == 2 and out[0, 3] == 8 and (out[[0, 2], :3] == 1).all()
    # ... but with 8 only in one level, its pixel is covered by no kept id and stays 0
    out = persistent_structures(np.array([a, b], np.uint16), min_area_fraction=0.0)
    assert out[0, 3] == 0 and out[1, 1] == 2 and out[0, 0] == 1


def test_ties_in_area_and_persistence_paint_larger_id_last() -> None:
    # ids 3 and 6 both: area 2, persistence 2; their best-level regions overlap at (0, 1)
    l0 = np.array([[3, 3, 1, 1], [1, 1, 1, 1]])
    l1 = np.array([[1, 6, 6, 1], [1, 1, 1, 1]])
    levels = np.array([l0, l1, l1, l0], np.uint16)
    out = persistent_structures(levels, min_area_fraction=0.0)
    assert out[0, 0] == 3 and out[0, 1] == 6 and out[0, 2] == 6


def test_skip_coarsest_reproduces_the_authors_loop() -> None:
    two = np.array([L0, L1], np.uint16)
    assert persistent_structures(two, min_area_fraction=0.1).any()
    # the authors' loop ignores the last level, so with two levels nothing can persist twice
    assert not persistent_structures(two, min_area_fraction=0.1, skip_coarsest=True).any()


def test_persistence_counts_levels_not_consecutive_runs() -> None:
    x = np.array([[1, 1], [1, 2]])
    y = np.array([[1, 1], [1, 1]])
    out = persistent_structures(np.array([x, y, x], np.uint16), min_area_fraction=0.0)
    assert out[1, 1] == 2  # id 2 appears in levels 0 and 2 -> persistence 2


def reference(levels: np.ndarray, fraction: float) -> np.ndarray:
    """A direct, slow transcription of the rule, for randomized comparison."""
    n = levels[0].size
    rows = []
    for label in np.unique(levels):
        if label == 0:
            continue
        areas = [(levels[i] == label).sum() for i in range(len(levels))]
        persistence = sum(a > 0 for a in areas)
        best = int(np.argmax(areas))
        if areas[best] < fraction * n or persistence < 2:
            continue
        rows.append((-areas[best], -persistence, int(label), best))
    out = np.zeros(levels.shape[1:], np.int64)
    for _, _, label, best in sorted(rows):
        out[levels[best] == label] = label
    return out


def test_matches_reference_on_random_hierarchies() -> None:
    rng = np.random.default_rng(3)
    for _ in range(40):
        shape = tuple(int(s) for s in rng.integers(3, 12, size=rng.integers(2, 4)))
        level = rng.integers(1, 20, size=shape)
        levels = [level]
        for _ in range(int(rng.integers(1, 6))):
            ids = np.unique(levels[-1])
            merge = np.arange(ids.max() + 1)
            merge[ids] = rng.choice(ids, size=ids.size)
            levels.append(merge[levels[-1]])
        stack = np.array(levels, np.uint16)
        for fraction in (0.0, 0.01, 0.1):
            assert np.array_equal(persistent_structures(stack, min_area_fraction=fraction), reference(stack, fraction))


def test_volume_and_large_ids() -> None:
    levels = np.zeros((3, 4, 6, 6), np.uint32)
    levels[:, :2] = 70000
    levels[:, 2:] = 5
    levels[0, 3, 0, 0] = 9
    out = persistent_structures(levels)
    assert out.shape == (4, 6, 6)
    assert out.dtype == np.uint32  # ids past 65535 need uint32
    assert (out[:2] == 70000).all() and (out[2:] == 5).all()
    out16 = persistent_structures(np.where(levels == 70000, 11, levels).astype(np.uint16))
    assert out16.dtype == np.uint16


def test_bad_input() -> None:
    with pytest.raises(InputError):
        persistent_structures(np.zeros((3,), np.uint16))
    with pytest.raises(InputError):
        persistent_structures(np.zeros((2, 3, 3), np.float32))
    with pytest.raises(InputError):
        persistent_structures(-np.ones((2, 3, 3), np.int32))


def test_persistent_levels_are_the_coarse_part_of_the_hierarchy() -> None:
    from CUTSSegmentationLib.condense.persistence import PERSISTENT_MAX_CLUSTERS, persistent_level_indices

    counts = np.array([64, 40, 30, 25, 24, 12, 9, 4, 2])
    assert PERSISTENT_MAX_CLUSTERS == 24
    assert persistent_level_indices(counts).tolist() == [4, 5, 6, 7, 8]
    assert persistent_level_indices(counts, max_clusters=16).tolist() == [5, 6, 7, 8]
    assert persistent_level_indices(counts, max_clusters=64).tolist() == list(range(9))
    # fewer than two qualifying levels: the two coarsest, so persistence (>= 2 levels) can still hold
    assert persistent_level_indices(np.array([80, 50, 20])).tolist() == [1, 2]
    assert persistent_level_indices(np.array([30])).tolist() == [0]


def test_pipeline_persistent_map_ignores_the_fine_levels() -> None:
    """build_hierarchy keeps every level for the slider but builds the persistent map from the levels with at
    most 24 clusters: 2 groups x 40 sub-clusters of embeddings give fine levels (> 24 clusters) that must not
    enter the map."""
    from CUTSSegmentationLib.condense.condensation import condense
    from CUTSSegmentationLib.condense.persistence import persistent_level_indices
    from CUTSSegmentationLib.core.imagedata import ImageData
    from CUTSSegmentationLib.pipeline import build_hierarchy

    rng = np.random.default_rng(0)
    group = np.repeat(np.arange(2), 2048)
    sub = rng.integers(0, 40, size=4096)
    centres = rng.normal(size=(2, 1, 16)) * 8.0 + rng.normal(size=(2, 40, 16)) * 1.5
    emb = (centres[group, sub] + rng.normal(size=(4096, 16)) * 0.1).astype(np.float32)
    h = build_hierarchy(condense(emb), ImageData(np.zeros((1, 64, 64, 1), np.float32), is_2d=True))
    assert h.n_clusters.max() > 24, h.n_clusters  # there are fine levels to leave out
    chosen = persistent_level_indices(h.n_clusters)
    assert h.n_clusters[chosen].max() <= 24 and len(chosen) >= 2
    assert np.array_equal(h.persistent, persistent_structures(h.levels[chosen]))
    assert not np.array_equal(h.persistent, persistent_structures(h.levels))
    assert len(np.unique(h.persistent[h.persistent > 0])) <= 24
