"""Levels read from the atom map on demand (condense/level_stack.py), on a real MRI's hierarchy.

The spine T2 MRI (60 x 55 x 52) is segmented once with a short self-training. Every way the engine, the command
line and the Slicer module read levels must give what the stored maps gave, the hierarchy file must no longer
hold the levels, and files that do hold them (format /1) must still load.
"""

from __future__ import annotations

import dataclasses
import json
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from CUTSSegmentationLib.condense.hierarchy import Hierarchy
from CUTSSegmentationLib.condense.level_stack import LevelStack
from CUTSSegmentationLib.condense.persistence import persistent_level_indices, persistent_structures
from CUTSSegmentationLib.condense.structures import component_at, fill_enclosed, seed_chain, structure_at_seed
from CUTSSegmentationLib.io.reading import read_image
from CUTSSegmentationLib.pipeline import segment

SPINE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "volumes" / "spine"


@pytest.fixture(scope="module")
def spine() -> tuple[Hierarchy, np.ndarray, np.ndarray]:
    """(hierarchy, its levels as stored arrays, the image's voxels); missing data fails (CI has the volumes)."""
    if not (SPINE / "t2.nii.gz").is_file():
        pytest.fail(f"spine MRI not found at {SPINE}")
    image = read_image(SPINE / "t2.nii.gz")
    hierarchy = segment(image, device="cpu", train_epochs=2, seed=0)
    stored = np.stack(
        [hierarchy.merge_tree[step][hierarchy.atom_map].astype(np.int64) + 1 for step in hierarchy.level_steps]
    ).astype(hierarchy.levels.dtype)
    return hierarchy, stored, image.array[..., 0]


def test_levels_are_the_merge_tree_s_and_every_read_matches_the_stored_maps(spine) -> None:
    hierarchy, stored, _ = spine
    levels = hierarchy.levels
    assert isinstance(levels, LevelStack) and hierarchy.n_levels > 3
    assert levels.shape == stored.shape and levels.ndim == 4 and levels.dtype == np.uint16
    np.testing.assert_array_equal(np.asarray(levels), stored)
    box = (slice(10, 30), slice(5, 40), slice(20, 50))
    reads = {
        "one level": (levels[2], stored[2]),
        "negative index": (levels[-1], stored[-1]),
        "a box of a level": (levels[(1,) + box], stored[(1,) + box]),
        "one voxel": (levels[0, 26, 27, 30], stored[0, 26, 27, 30]),
        "one voxel at every level": (levels[:, 26, 27, 30], stored[:, 26, 27, 30]),
        "a box at some levels": (levels[1:3][(slice(None),) + box], stored[1:3][(slice(None),) + box]),
        "chosen levels": (np.asarray(levels[[0, 2]]), stored[[0, 2]]),
        "reversed": (np.asarray(levels[::-1]), stored[::-1]),
        "a mask of a level": (
            levels[1][stored[0] == stored[0, 26, 27, 30]],
            stored[1][stored[0] == stored[0, 26, 27, 30]],
        ),
        "iteration": (np.stack(list(levels)), stored),
        "one slice as (L, 1, Y, X)": (np.asarray(levels[:, 26:27].reshape(len(levels), 1, 55, 60)), stored[:, 26:27]),
    }
    for name, (read, expected) in reads.items():
        np.testing.assert_array_equal(read, expected, err_msg=name)
    assert levels.max() == stored.max() and levels.min() == stored.min()
    for label in range(int(stored.max()) + 2):  # one label past the largest: held by no level
        held = [bool((stored[k] == label).any()) for k in range(len(stored))]
        assert levels.levels_holding(label).tolist() == held, label
    assert hierarchy.level(3) is not hierarchy.level(3)  # computed when read: a caller may change its copy


def test_clicks_and_persistence_on_the_stack_equal_those_on_the_stored_maps(spine) -> None:
    hierarchy, stored, voxels = spine
    for seed in ((30, 27, 26), (12, 40, 10), (45, 8, 40)):
        on_stack = structure_at_seed(hierarchy.levels, seed, image=voxels, spacing_xyz=hierarchy.geometry.spacing)
        on_maps = structure_at_seed(stored, seed, image=voxels, spacing_xyz=hierarchy.geometry.spacing)
        assert on_stack.level == on_maps.level and on_stack.chain_sizes.tolist() == on_maps.chain_sizes.tolist()
        np.testing.assert_array_equal(on_stack.mask, on_maps.mask)
    whole = structure_at_seed(hierarchy.levels, (30, 27, 26), level=2, whole_class=True)
    np.testing.assert_array_equal(whole.mask, stored[2] == stored[2, 26, 27, 30])
    used = persistent_level_indices(hierarchy.n_clusters)
    np.testing.assert_array_equal(hierarchy.persistent, persistent_structures(stored[used]))


def test_seed_chains_equal_floods_of_every_whole_stored_level(spine) -> None:
    """The chain floods only where the coarser region holds several labels at the finer level, and only in its
    box: every size and box equals a flood of the whole stored level."""
    hierarchy, stored, _ = spine
    for seed in ((26, 27, 30), (10, 40, 12), (40, 8, 45), (0, 0, 0), (51, 54, 59)):  # (z, y, x)
        chain = seed_chain(hierarchy.levels, seed)
        for level in range(len(stored)):
            region = component_at(stored[level], seed)
            assert chain.sizes[level] == region.sum(), (seed, level)
            where = np.nonzero(region)
            assert chain.boxes[level] == tuple(slice(int(w.min()), int(w.max()) + 1) for w in where), (seed, level)


def test_filling_equals_scipy_s_in_3d_then_slice_by_slice(spine) -> None:
    """`fill_enclosed` labels the background once instead of scipy's iterated dilations: the same voxels, on
    regions of the spine hierarchy (with their cavities and slice-closed channels) and on random masks."""
    _, stored, _ = spine
    masks = [stored[level] == stored[level, 26, 27, 30] for level in range(len(stored))]
    masks += [stored[2] == label for label in np.unique(stored[2])[:6]]
    rng = np.random.default_rng(0)
    masks += [rng.random((9, 14, 11)) < density for density in (0.3, 0.5, 0.7)] + [np.zeros((3, 4, 5), dtype=bool)]
    for mask in masks:
        expected = ndi.binary_fill_holes(mask)
        for z in range(expected.shape[0]):
            expected[z] = ndi.binary_fill_holes(expected[z])
        np.testing.assert_array_equal(fill_enclosed(mask), expected)
    flat = masks[-2][0]
    np.testing.assert_array_equal(fill_enclosed(flat), ndi.binary_fill_holes(flat))


def test_the_file_holds_no_levels_and_reads_back_the_same_hierarchy(spine, tmp_path: Path) -> None:
    hierarchy, stored, _ = spine
    lazy = hierarchy.save(tmp_path / "lazy.npz")
    full = dataclasses.replace(hierarchy, levels=stored).save(tmp_path / "full.npz")
    with zipfile.ZipFile(lazy) as archive:
        assert "levels.npy" not in archive.namelist()
    assert lazy.stat().st_size < 0.5 * full.stat().st_size
    for path in (lazy, full):
        again = Hierarchy.load(path)
        np.testing.assert_array_equal(np.asarray(again.levels), stored)
        np.testing.assert_array_equal(again.persistent, hierarchy.persistent)
        assert again.levels.dtype == stored.dtype
    assert isinstance(Hierarchy.load(lazy).levels, LevelStack)


def test_a_file_of_the_first_format_still_loads(spine, tmp_path: Path) -> None:
    """Files written before the levels were left out: format cuts-hierarchy/1, every level stored."""
    hierarchy, stored, _ = spine
    arrays = dict(np.load(hierarchy.save(tmp_path / "now.npz"), allow_pickle=False))
    info = json.loads(str(arrays["info"]))
    arrays["info"] = np.asarray(json.dumps({**info, "format": "cuts-hierarchy/1"}))
    arrays["levels"] = stored
    old = tmp_path / "old.npz"
    np.savez_compressed(old, **arrays)
    again = Hierarchy.load(old)
    assert isinstance(again.levels, np.ndarray)
    np.testing.assert_array_equal(again.levels, stored)


def test_reading_a_hierarchy_allocates_no_level_maps(spine, tmp_path: Path) -> None:
    """Loading and one level read allocate a few maps' worth, not one per level (a stored stack would)."""
    hierarchy, stored, _ = spine
    path = hierarchy.save(tmp_path / "h.npz")
    one_map = stored[0].nbytes
    tracemalloc.start()
    try:
        again = Hierarchy.load(path)
        again.level(1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert hierarchy.n_levels >= 8, "too few levels to tell a stack from the maps"
    assert peak < 6 * one_map, f"{peak / one_map:.1f} level maps allocated"
