"""A kept structure's outline moves out to the image's strongest edge, and a thin structure keeps its own.

The hierarchy's region is stood in for by the expert mask shrunk in-plane (atoms that stop short of the rim),
so what is tested is the snap alone, on real scans: a glioma's whole tumour in FLAIR (a fading rim of edema)
reaches its outline better than a plain dilation does; a spinal cord in its sheath of bright fluid keeps its
outline, where a band as deep as half the cord would jump to the sheath's; on noise nothing moves.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from CUTSSegmentationLib.condense.edge_snap import snap_outward
from CUTSSegmentationLib.condense.structures import snapped_structure, structure_at_seed
from CUTSSegmentationLib.evaluate.metrics import dice

IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
IN_PLANE[1] = ndi.generate_binary_structure(2, 1)


def test_a_glioma_short_of_its_rim_snaps_out_to_it_better_than_a_dilation(volume_case) -> None:
    """Whole tumour in FLAIR, 1 mm voxels, two voxels short of the expert outline in every slice (Dice 0.85):
    the snap reaches 0.92 and more, above a one-voxel dilation of the same region, and keeps all of it."""
    image, truth, spacing = volume_case("brats-pat0002-flair-wt")
    region = ndi.binary_erosion(truth, IN_PLANE, iterations=2)
    snapped = snap_outward(region, image, spacing)
    assert np.all(snapped[region]) and snapped.sum() < 1.2 * truth.sum()
    dilated = ndi.binary_dilation(region, IN_PLANE)
    assert dice(snapped, truth) >= max(0.92, dice(dilated, truth) + 0.003, dice(region, truth) + 0.05)


@pytest.mark.parametrize("name", ["spine-t2-cord", "spine-t1-cord"])
def test_a_thin_cord_keeps_its_own_outline(volume_case, name: str) -> None:
    """The cord (about 4 mm deep) keeps its expert outline exactly; a band half its depth wide, with no check
    of the outline's contrast, moves it out into the fluid around it (Dice 1 -> below 0.95): the band's depth
    limit alone keeps it."""
    image, truth, spacing = volume_case(name)
    assert np.array_equal(snap_outward(truth, image, spacing), truth)
    assert dice(snap_outward(truth, image, spacing, depth_fraction=0.5, min_contrast=0.0), truth) < 0.95


def test_no_edge_no_snap(volume_case) -> None:
    """On noise the gradient's ridge is anywhere in the band: the outline it gives is no edge and is not kept."""
    _image, truth, spacing = volume_case("spleen2-ct-spleen")
    region = ndi.binary_erosion(truth, IN_PLANE, iterations=2)
    noise = np.random.default_rng(0).normal(100.0, 5.0, truth.shape).astype(np.float32)
    assert np.array_equal(snap_outward(region, noise, spacing), region)
    assert not np.array_equal(snap_outward(region, noise, spacing, min_contrast=0.0), region)


def test_an_empty_region_and_a_2d_image() -> None:
    empty = np.zeros((4, 6, 6), dtype=bool)
    assert not snap_outward(empty, np.ones(empty.shape), (1.0, 1.0, 1.0)).any()
    image = np.zeros((30, 30), dtype=np.float32)
    image[5:25, 5:25] = 10.0
    region = np.zeros(image.shape, dtype=bool)
    region[7:23, 7:23] = True  # two pixels short of the square's edge on every side
    square = image > 0
    snapped = snap_outward(region, image, (1.0, 1.0), depth_fraction=0.5)
    assert np.all(snapped[region]) and not np.any(snapped & ~square)  # out to the edge, never beyond it
    assert dice(snapped, square) > 0.99 and dice(region, square) < 0.8  # corners rounded by the Gaussian
    # channels add: a second channel with the same edge gives the same outline
    both = snap_outward(region, np.stack([image, 2 * image], -1), (1.0, 1.0), depth_fraction=0.5)
    assert np.array_equal(both, snapped)


def _snap_on_the_whole_box(region: np.ndarray, image: np.ndarray, spacing) -> np.ndarray:
    """The snap as its definition reads: scipy's distances, the watershed flooded over the whole box."""
    from skimage.segmentation import watershed

    from CUTSSegmentationLib.condense.boundary import padded_box
    from CUTSSegmentationLib.condense.edge_snap import (
        GRADIENT_SIGMA_MM,
        SNAP_DEPTH_FRACTION,
        SNAP_REACH_MM,
        gradient_magnitude,
    )

    zyx = tuple(float(s) for s in spacing[::-1])
    margin = SNAP_REACH_MM + 4.0 * GRADIENT_SIGMA_MM
    box = padded_box(
        ndi.find_objects(region.view(np.uint8))[0], region.shape, [int(np.ceil(margin / s)) + 1 for s in zyx]
    )
    inside = region[box]
    depth_in = ndi.distance_transform_edt(inside, sampling=zyx)
    band = min(SNAP_REACH_MM, SNAP_DEPTH_FRACTION * depth_in.max())
    markers = np.zeros(inside.shape, dtype=np.uint8)
    markers[depth_in > band] = 1
    markers[ndi.distance_transform_edt(~inside, sampling=zyx) > band] = 2
    image = image if image.ndim == region.ndim + 1 else image[..., None]
    out = region.copy()
    out[box] |= watershed(gradient_magnitude(image[box], inside, zyx), markers) == 1
    return out


@pytest.mark.parametrize("name", ["spleen2-ct-spleen", "brats-pat0002-flair-wt"])
def test_the_watershed_on_the_band_equals_the_whole_box(volume_case, name: str) -> None:
    """Flooding only the band (and the markers' voxels beside it), with SimpleITK's distances, gives exactly
    the outline the whole box's flood gives with scipy's."""
    image, truth, spacing = volume_case(name)
    region = ndi.binary_erosion(truth, IN_PLANE, iterations=2)
    expected = _snap_on_the_whole_box(region, image, spacing)
    assert not np.array_equal(expected, region)
    assert np.array_equal(snap_outward(region, image, spacing, min_contrast=0.0), expected)


def test_a_structure_snapped_where_it_is_kept_equals_the_click_snapped_at_once(volume_case) -> None:
    """A caller that defers the snap (`structure_at_seed(..., snap=False)`, then `snapped_structure` on the
    structure it keeps, as the closer look does) keeps the same voxels as the click that snaps at once; the
    deferred structure is the unsnapped one (the snap moves this glioma's outline)."""
    image, truth, spacing = volume_case("brats-pat0002-flair-wt")
    region = ndi.binary_erosion(truth, IN_PLANE, iterations=2)
    levels = np.stack([np.where(region, 1, 2), np.ones(region.shape, dtype=int)]).astype(np.uint8)
    seed = tuple(int(np.median(axis)) for axis in np.nonzero(region))[::-1]
    at_once = structure_at_seed(levels, seed, image=image, spacing_xyz=spacing)
    deferred = structure_at_seed(levels, seed, image=image, spacing_xyz=spacing, snap=False)
    kept = snapped_structure(deferred, image, spacing)
    assert np.array_equal(kept.mask, at_once.mask) and kept.voxels == at_once.voxels == int(at_once.mask.sum())
    assert deferred.voxels < at_once.voxels and np.all(at_once.mask[deferred.mask])
