"""The structure under a click: connected in 3D, chosen where the seed's region grows the most."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from CUTSSegmentationLib.condense.structures import (
    SeedChain,
    component_at,
    fill_enclosed,
    seed_chain,
    structure_at_seed,
)
from CUTSSegmentationLib.core.errors import InputError


def _ball(shape, centre, radius):
    z, y, x = np.indices(shape)
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2


@pytest.fixture
def lesion_levels() -> tuple[np.ndarray, np.ndarray]:
    """Three levels over a 24 x 40 x 40 volume: a lesion that shares its class with a far-away ring.

    Level 0: lesion core (1), lesion rim (2), ring (3, same tissue class as the rim), background (4).
    Level 1: core and rim merged (the lesion, 1); the ring now carries the lesion's id too (class 1).
    Level 2: lesion and background merged: everything but nothing else (1).
    """
    shape = (24, 40, 40)
    core = _ball(shape, (12, 20, 20), 5)
    lesion = _ball(shape, (12, 20, 20), 6)
    z, y, x = np.indices(shape)
    ring = ((y - 20) ** 2 + (x - 20) ** 2 >= 17**2) & ((y - 20) ** 2 + (x - 20) ** 2 <= 19**2)
    fine = np.full(shape, 4, dtype=np.uint16)
    fine[ring] = 3
    fine[lesion] = 2
    fine[core] = 1
    mid = fine.copy()
    mid[(fine == 2) | (fine == 3)] = 1
    coarse = np.ones(shape, dtype=np.uint16)
    return np.stack([fine, mid, coarse]), lesion


def test_click_keeps_the_connected_lesion_not_its_whole_class(lesion_levels):
    levels, lesion = lesion_levels
    structure = structure_at_seed(levels, (20, 20, 12))
    assert (
        structure.level == 1
    )  # core (515 vx) -> lesion (925, x1.8) -> everything (x41): the first salient jump is the last
    assert structure.persistence == 1
    assert np.array_equal(structure.mask, lesion)
    whole = structure_at_seed(levels, (20, 20, 12), whole_class=True)
    assert whole.voxels > structure.voxels  # the ring shares the class
    assert np.array_equal(whole.mask, levels[1] == 1)


def test_chain_is_nested_and_sized_per_level(lesion_levels):
    levels, lesion = lesion_levels
    chain = seed_chain(levels, (12, 20, 20))  # an array index (z, y, x)
    assert chain.sizes.tolist() == [
        int(_ball(levels.shape[1:], (12, 20, 20), 5).sum()),
        int(lesion.sum()),
        levels[0].size,
    ]
    assert np.all(np.diff(chain.sizes) >= 0)
    # the box of a finer component lies inside the coarser one's
    for fine_box, coarse_box in zip(chain.boxes[:-1], chain.boxes[1:]):
        assert all(c.start <= f.start and f.stop <= c.stop for f, c in zip(fine_box, coarse_box))


def test_explicit_level_and_errors(lesion_levels):
    levels, _ = lesion_levels
    assert structure_at_seed(levels, (20, 20, 12), level=0).voxels == int((levels[0] == 1).sum())
    assert structure_at_seed(levels, (20, 20, 12), level=-1).voxels == levels[0].size
    with pytest.raises(InputError, match="level 3 does not exist"):
        structure_at_seed(levels, (20, 20, 12), level=3)
    with pytest.raises(InputError, match="outside the image"):
        structure_at_seed(levels, (50, 12, 12))


def test_enclosed_cavity_is_filled_and_an_open_one_is_not():
    shell = _ball((21, 21, 21), (10, 10, 10), 8) & ~_ball((21, 21, 21), (10, 10, 10), 4)
    assert fill_enclosed(shell).sum() == _ball((21, 21, 21), (10, 10, 10), 8).sum()
    cup = shell.copy()
    cup[10:, 10, 10] = False  # a one-voxel channel from the cavity out through the top (along z)
    assert ndi.binary_fill_holes(cup).sum() == cup.sum()  # open in 3D ...
    # ... but closed in every axial slice, so the slice-wise pass fills cavity and channel
    expected = _ball((21, 21, 21), (10, 10, 10), 8)
    expected[18, 10, 10] = False  # the pole voxel: alone in its slice, nothing encloses it
    assert np.array_equal(fill_enclosed(cup), expected)


def test_persistence_counts_the_levels_a_region_stays_the_same(lesion_levels):
    levels, lesion = lesion_levels
    # the lesion stays itself over three levels (a finer split of the background changes nothing under the seed)
    padded = np.concatenate([levels[:2], levels[1:2], levels[1:2], levels[2:]])
    structure = structure_at_seed(padded, (20, 20, 12))
    assert structure.level in (1, 2, 3) and structure.persistence == 3
    assert np.array_equal(structure.mask, lesion)


def test_component_at_uses_face_neighbours_by_default():
    labels = np.zeros((1, 3, 3), dtype=np.uint8)
    labels[0, 0, 0] = labels[0, 1, 1] = 1
    assert component_at(labels, (0, 0, 0)).sum() == 1
    assert component_at(labels, (0, 0, 0), connectivity=3).sum() == 2


def test_first_salient_jump_wins_over_a_larger_later_one():
    """The spinal cord's chain on the spine T2 MRI: cord (4,058 vx) -> cord + CSF (x3.2) -> ... -> all (x8)."""
    sizes = np.array([3256, 3486, 4053, 4058, 13094, 21044, 21044, 21044, 167897])
    chain = SeedChain(index=(0, 0, 0), sizes=sizes, boxes=[()] * len(sizes))
    assert chain.chosen_level() == 3
    # no salient jump: the largest one; specks below the minimum size are never chosen
    assert SeedChain(index=(0,), sizes=np.array([10, 15, 30, 40]), boxes=[()] * 4).chosen_level() == 1
    assert SeedChain(index=(0,), sizes=np.array([1, 900, 1000]), boxes=[()] * 3).chosen_level() == 1


def test_whole_image_counts_as_the_level_above_the_coarsest():
    """The left lung on the lung CT: whole only at the coarsest level, no 2.5-fold growth inside the hierarchy."""
    sizes = np.array([151232, 151232, 152984, 349952, 449496, 772228])
    chain = SeedChain(index=(0, 0, 0), sizes=sizes, boxes=[()] * len(sizes))
    assert chain.chosen_level() == 2  # without the image: the largest inner growth (x2.29), the lung in pieces
    assert chain.chosen_level(total=512 * 512 * 134) == 5  # x45 into the whole image: the whole lung
    # an earlier salient growth still wins, and a region that is already the whole image changes nothing
    assert SeedChain(index=(0,), sizes=np.array([10, 100, 120]), boxes=[()] * 3).chosen_level(total=10_000) == 0
    assert SeedChain(index=(0,), sizes=np.array([10, 15, 40]), boxes=[()] * 3).chosen_level(total=40) == 1
