"""A closer look at the click: hierarchies of boxes around it, on the thorax CT whose whole-volume hierarchy
has no region for its tumour (docs/benchmarks.md, 3D volumes: 0.01 at the click, 0.47 for SLIC 500)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from CUTSSegmentationLib.condense.binarize import innermost_point
from CUTSSegmentationLib.condense.zoom import (
    ZOOM_SIDES_MM,
    box_around,
    fills_box,
    is_unresolved,
    splits_whole,
    structure_in_boxes,
)
from CUTSSegmentationLib.core.working_grid import block_mean, working_factors
from CUTSSegmentationLib.io.reading import read_image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from volume_cases import read_array, volumes_dir  # noqa: E402
from volume_scoring import dice  # noqa: E402

sys.path.remove(str(REPO / "benchmarks"))


def test_boxes_are_cubes_in_millimetres_clipped_to_the_grid() -> None:
    box = box_around((2, 100, 10), 100.0, (2.0, 2.0, 5.0), (40, 128, 128))
    assert box == (slice(0, 13), slice(75, 126), slice(0, 36))  # +-10 slices, +-25 voxels, clipped at 0
    assert not is_unresolved([1_800_000], 90_000_000, (1.0, 1.0, 1.0))  # 1.8 litres, 2 % of the scan: an organ
    assert is_unresolved([11_000_000 // 6], 90_000_000, (1.0, 2.0, 3.0))  # 11 litres: the body's soft tissue
    assert is_unresolved([4, 300_000], 1_000_000, (1.0, 1.0, 1.0))  # a speck, then 30 % of the scan


@pytest.fixture(scope="module")
def thorax_labels():
    """The thorax CT on its working grid, its expert labels (1, 2 lungs, 3 spinal cord, 4 tumour) and the
    working grid's blocks."""
    import SimpleITK as sitk

    root = volumes_dir()
    path = root / "lung" / "LUNG1-001_ct.nii.gz"
    if not path.is_file():
        pytest.fail(f"3D volumes not found at {root} (set CUTS_VOLUMES_DIR)")
    image = read_image(path)
    factors = working_factors(image)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "lung" / "LUNG1-001_label.nii.gz")))
    return image, block_mean(image, factors), labels, factors


def _structure_on_working_grid(thorax_labels, value: int):
    """The working grid, the structure's mask on it and its click (the structure's innermost voxel)."""
    image, working, labels, (fz, fy, fx) = thorax_labels
    mask = labels == value
    x, y, z = innermost_point(mask, image.geometry.spacing)
    return working, mask[::fz, ::fy, ::fx], (z // fz, y // fy, x // fx)


@pytest.fixture(scope="module")
def thorax_ct(thorax_labels):
    """The thorax CT on its working grid, the tumour's mask on that grid, and the click (the tumour's centre)."""
    return _structure_on_working_grid(thorax_labels, 4)


def _simplest_embedding(working):
    """The voxel's intensity and its in-plane local mean, scaled to the scan's robust range: ``embed(box)``."""
    array = working.array[..., 0]
    low, high = np.percentile(array, [0.5, 99.5])
    smooth = ndi.gaussian_filter(array, (0, 1.5, 1.5))

    def embed(box):
        rows = np.stack([(array[box] - low) / (high - low), (smooth[box] - low) / (high - low)], axis=-1)
        return rows.reshape(-1, 2).astype(np.float32)

    return embed


@pytest.mark.slow
def test_boxes_around_the_click_separate_the_tumour(thorax_ct) -> None:
    """With the simplest embedding (the voxel's intensity and its in-plane local mean), the member the three
    boxes agree on is the tumour; no whole-volume level holds it. (With the self-trained encoder: 0.78.)"""
    working, tumour, click = thorax_ct
    zoomed = structure_in_boxes(working, click, _simplest_embedding(working))
    assert zoomed.mask.shape == tumour.shape and zoomed.mask[click]
    assert zoomed.side_mm in ZOOM_SIDES_MM and zoomed.agreement > 0.5
    outer = box_around(click, max(ZOOM_SIDES_MM), working.geometry.spacing, tumour.shape)
    assert not zoomed.mask.sum() - zoomed.mask[outer].sum()  # nothing outside the largest box
    assert ndi.label(zoomed.mask)[1] == 1  # one connected structure
    assert dice(zoomed.mask, tumour) > 0.5


def _reaches_every_face(zoomed) -> bool:
    member_box = ndi.find_objects(zoomed.mask.astype(np.uint8))[0]
    local = tuple(slice(m.start - b.start, m.stop - b.start) for m, b in zip(member_box, zoomed.box))
    return fills_box(local, [b.stop - b.start for b in zoomed.box])


@pytest.mark.slow
def test_regions_filling_their_box_compete_only_when_the_whole_structure_is_checked(thorax_labels) -> None:
    """The spinal cord, a 400 mm tube, leaves every box: with every member competing, the boxes agree on the
    soft tissue around it; leaving out the members that reach every face of their box keeps a region inside
    the box that holds six times more of the cord. The right lung is larger than every box: there the member the
    boxes agree on is the lung inside the box (what tells the whole-volume check that the structure is larger
    than the box), and leaving the members filling a box out would keep a part of it."""
    working, cord, click = _structure_on_working_grid(thorax_labels, 3)
    embed = _simplest_embedding(working)
    every = structure_in_boxes(working, click, embed)
    inside = structure_in_boxes(working, click, embed, box_filling=False)
    for zoomed in (every, inside):
        assert zoomed.mask[click] and ndi.label(zoomed.mask)[1] == 1
    assert not _reaches_every_face(inside)
    assert dice(inside.mask, cord) > 3 * dice(every.mask, cord)

    working, lung, click = _structure_on_working_grid(thorax_labels, 2)
    every = structure_in_boxes(working, click, embed)
    inside = structure_in_boxes(working, click, embed, box_filling=False)
    in_box = np.zeros_like(lung)
    in_box[every.box] = lung[every.box]
    assert dice(every.mask, in_box) > 0.95
    in_box = np.zeros_like(lung)
    in_box[inside.box] = lung[inside.box]
    assert dice(inside.mask, in_box) < 0.5


def test_a_closer_look_reports_each_box_and_stops_when_cancelled() -> None:
    """Progress names every box; a cancel during the look stops it before the next box is condensed."""
    from CUTSSegmentationLib.core.errors import CancelledError
    from CUTSSegmentationLib.core.imagedata import Geometry, ImageData
    from CUTSSegmentationLib.core.progress import CancelToken

    rng = np.random.default_rng(0)
    array = rng.normal(0.0, 0.1, (20, 60, 60)).astype(np.float32)
    array[8:12, 25:35, 25:35] += 3.0  # a bright block around the click
    image = ImageData(array[..., None], Geometry(spacing=(2.0, 2.0, 4.0)))
    embed = lambda box: array[box].reshape(-1, 1)  # noqa: E731

    reports: list[tuple[str, float, str]] = []
    zoomed = structure_in_boxes(image, (10, 30, 30), embed, (40.0, 60.0), progress=lambda *r: reports.append(r))
    assert [m for _, _, m in reports if "condensing" in m] == ["condensing the 40 mm box", "condensing the 60 mm box"]
    assert reports[-1][1] == 1.0 and {stage for stage, _, _ in reports} == {"closer"}
    assert dice(zoomed.mask, np.pad(np.ones((4, 10, 10), bool), ((8, 8), (25, 25), (25, 25)))) > 0.9

    token = CancelToken()

    seen: list[str] = []

    def cancel_during_first_box(stage: str, fraction: float, message: str) -> None:
        seen.append(message)
        if "40 mm" in message:
            token.cancel()

    with pytest.raises(CancelledError):
        structure_in_boxes(image, (10, 30, 30), embed, (40.0, 60.0), progress=cancel_during_first_box, cancel=token)
    assert "condensing the 40 mm box" in seen and "condensing the 60 mm box" not in seen


def test_a_part_of_a_structure_larger_than_the_box_splits_it_only_with_an_edge_of_its_own() -> None:
    """`splits_whole` on real CTs with reference masks as the structures. Thorax CT: a few slices of the right
    lung in a 100 mm box (a piece of parenchyma, contrast 0.15 against the lung's 6.3) do not split the lung,
    larger than the box; the tumour does split a region holding it and the left lung (its own edge, 3.6).
    TotalSegmentator's example CT: the gallbladder splits a region of the organs around it that fits the box,
    by voxels alone."""
    root = volumes_dir()
    if not (root / "lung").is_dir():
        pytest.fail(f"3D volumes not found at {root} (set CUTS_VOLUMES_DIR)")
    ct, spacing = read_array(root / "lung" / "LUNG1-001_ct.nii.gz")
    labels = read_array(root / "lung" / "LUNG1-001_label.nii.gz")[0]
    lung, tumour = labels == 2, labels == 4
    x, y, z = innermost_point(lung, spacing)
    box = box_around((z, y, x), 100.0, spacing, lung.shape)
    piece = np.zeros_like(lung)
    piece[box] = lung[box]
    piece[box[0].start + 4 :] = False  # a few slices of it: a small part of what the box holds
    assert 0 < piece.sum() < 0.5 * lung[box].sum()
    assert not splits_whole(lung, piece, box, ct)
    assert not splits_whole(lung, piece, box)  # larger than the box, no image to show an edge: never split
    x, y, z = innermost_point(tumour, spacing)
    box = box_around((z, y, x), 100.0, spacing, lung.shape)
    assert splits_whole((labels == 1) | tumour, tumour, box, ct)
    labels, spacing = read_array(root / "totalseg" / "example_seg.nii.gz")
    region = np.isin(labels, [2, 4, 6, 7, 19, 52])  # kidney, gallbladder, stomach, pancreas, duodenum, aorta
    gallbladder = labels == 4
    x, y, z = innermost_point(gallbladder, spacing)
    box = box_around((z, y, x), 128.0, spacing, labels.shape)
    assert splits_whole(region, gallbladder, box)
    assert not splits_whole(region, region, box)
