"""A kept structure grows out to the image's edge, and only there: on real scans with expert masks.

The hierarchy's region is stood in for by the expert mask shrunk in-plane (a region whose atoms stop short of
the organ's rim), so what is tested is the growth alone: a spleen in CT (fat and other organs around it) grows
back to its outline; a sarcoma in the thigh (muscle of the same density around it) and a region on a flat
image do not grow at all.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from CUTSSegmentationLib.condense.edge_growth import GROWTH_DISTANCES_MM, distance_bands, grow_to_edge
from CUTSSegmentationLib.condense.edge_snap import snap_outward
from CUTSSegmentationLib.condense.structures import structure_at_seed

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from volume_cases import volumes_dir  # noqa: E402
from volume_engine import innermost_point  # noqa: E402
from volume_scoring import dice  # noqa: E402

sys.path.remove(str(REPO / "benchmarks"))

IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
IN_PLANE[1] = ndi.generate_binary_structure(2, 1)


def _grown_and_snapped(region: np.ndarray, image: np.ndarray, spacing) -> np.ndarray:
    """What the engine's own click keeps of `region`: grown to the image's edge, then snapped out to it."""
    return snap_outward(grow_to_edge(region, image, spacing)[0], image, spacing)


@pytest.fixture(scope="module")
def spleen(volume_case):
    return volume_case("spleen2-ct-spleen")


@pytest.mark.parametrize("short_by", [2, 3])
def test_a_spleen_short_of_its_rim_grows_back_to_its_outline(spleen, short_by: int) -> None:
    image, truth, spacing = spleen
    region = ndi.binary_erosion(truth, IN_PLANE, iterations=short_by)
    grown, reach = grow_to_edge(region, image, spacing)
    assert reach is not None and np.all(grown[region])  # it only adds
    assert dice(grown, truth) >= max(0.96, dice(region, truth) + 0.02)
    assert not np.array_equal(region, grown) and region.sum() < grown.sum() < 1.2 * truth.sum()


def test_a_tumour_in_muscle_of_its_own_density_does_not_grow(volume_case) -> None:
    """Growth into the thigh's muscle never stops within 32 mm: a leak, and the region stays as it was."""
    image, truth, spacing = volume_case("sarcoma-sts001-ct-gtv")
    region = ndi.binary_erosion(truth, IN_PLANE, iterations=2)
    grown, reach = grow_to_edge(region, image, spacing)
    assert reach is None and np.array_equal(grown, region)


def test_a_region_on_a_flat_image_does_not_grow(spleen) -> None:
    _image, truth, spacing = spleen
    region = ndi.binary_erosion(truth, IN_PLANE, iterations=2)
    flat = np.random.default_rng(0).normal(100.0, 5.0, truth.shape).astype(np.float32)
    grown, reach = grow_to_edge(region, flat, spacing)
    assert reach is None and np.array_equal(grown, region)


def test_distance_bands_slab_by_slab_equal_the_whole_transform(spleen) -> None:
    """The spleen's mask (0.8 x 0.8 x 2.5 mm voxels) in slabs of a few slices: every voxel's band is the one the
    whole-volume transform gives, in mm, and voxels beyond the last distance are marked so."""
    _image, truth, spacing = spleen
    spacing_zyx = tuple(float(s) for s in spacing[::-1])
    distance = ndi.distance_transform_edt(~truth, sampling=spacing_zyx)
    expected = np.searchsorted(np.asarray(GROWTH_DISTANCES_MM), distance, side="left")
    plane = int(np.prod(truth.shape[1:]))
    for slab in (1, 30 * plane, truth.size):
        bands = distance_bands(truth, spacing_zyx, GROWTH_DISTANCES_MM, slab_voxels=slab)
        assert bands.dtype == np.uint8 and np.array_equal(bands, expected)
    assert np.unique(expected).tolist() == list(range(len(GROWTH_DISTANCES_MM) + 1))


def test_growth_reach_is_in_millimetres() -> None:
    """The same bright run, missed by one voxel on each side, is reached at 1 mm with 1 mm voxels and only at
    4 mm when its voxels are 3 mm wide (2 mm reaches no neighbour)."""
    image = np.zeros((1, 15), dtype=np.float32)
    image[0, 4:11] = 10.0
    image[0, 6] = 9.0
    region = np.zeros(image.shape, dtype=bool)
    region[0, 5:10] = True
    grown, reach = grow_to_edge(region, image, (1.0, 1.0), distances_mm=(1.0, 2.0, 4.0))
    assert reach == 1.0 and np.flatnonzero(grown[0]).tolist() == list(range(4, 11))
    grown, reach = grow_to_edge(region, image, (3.0, 1.0), distances_mm=(2.0, 4.0, 8.0))
    assert reach == 4.0 and np.flatnonzero(grown[0]).tolist() == list(range(4, 11))


def test_the_click_grows_only_at_the_engines_own_level(spleen) -> None:
    """structure_at_seed grows (and snaps) the automatic level's region with the image; a level the user
    chose, the whole class, or a click without the image keep the hierarchy's region."""
    image, truth, spacing = spleen
    region = ndi.binary_erosion(truth, IN_PLANE, iterations=2)
    levels = np.stack([np.where(region, 1, 2), np.ones(truth.shape)]).astype(np.uint16)
    click = innermost_point(truth, spacing)
    grown = structure_at_seed(levels, click, image=image, spacing_xyz=spacing)
    assert grown.level == 0 and grown.grown_mm is not None and grown.voxels == int(grown.mask.sum())
    assert np.array_equal(grown.mask, _grown_and_snapped(region, image, spacing))
    for kept in (
        structure_at_seed(levels, click, spacing_xyz=spacing),
        structure_at_seed(levels, click, level=0, image=image, spacing_xyz=spacing),
        structure_at_seed(levels, click, whole_class=True, image=image, spacing_xyz=spacing),
    ):
        assert kept.grown_mm is None and np.array_equal(kept.mask, region)


def test_cuts_binarize_grows_the_structure_and_says_so(tmp_path: Path, capsys, spleen) -> None:
    from CUTSSegmentationLib.cli import main
    from CUTSSegmentationLib.condense.hierarchy import Hierarchy
    from CUTSSegmentationLib.io.reading import read_image

    image, truth, spacing = spleen
    path = volumes_dir() / "spleen" / "spleen2_ct.nii.gz"
    region = ndi.binary_erosion(truth, IN_PLANE, iterations=2)
    levels = np.stack([np.where(region, 1, 2), np.ones(truth.shape)]).astype(np.uint16)
    hierarchy = Hierarchy(
        levels=levels,
        n_clusters=np.array([2, 1]),
        level_steps=np.array([0, 1]),
        atom_map=(levels[0] - 1).astype(np.uint32),
        merge_tree=np.array([[0, 1], [0, 0]], dtype=np.uint32),
        geometry=read_image(path).geometry,
        is_2d=False,
        info={"source": str(path)},
    )
    hierarchy.save(tmp_path / "hierarchy.npz")
    x, y, z = innermost_point(truth, spacing)
    seed = ["--seed", f"{x},{y},{z}", "--closer", "never"]
    assert main(["binarize", str(tmp_path / "hierarchy.npz"), *seed, "--out", str(tmp_path / "auto.nrrd")]) == 0
    assert "to the image's edge" in capsys.readouterr().err
    kept = read_image(tmp_path / "auto.nrrd").array.reshape(truth.shape).astype(bool)
    assert np.array_equal(kept, _grown_and_snapped(region, image, spacing))
    assert (
        main(["binarize", str(tmp_path / "hierarchy.npz"), *seed, "--level", "0", "--out", str(tmp_path / "0.nrrd")])
        == 0
    )
    assert "edge" not in capsys.readouterr().err
    assert np.array_equal(read_image(tmp_path / "0.nrrd").array.reshape(truth.shape).astype(bool), region)
