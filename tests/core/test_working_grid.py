"""The working grid of large volumes: blocks chosen from the voxel size, averaged, and mapped back onto the
image's grid with its geometry (core/working_grid.py)."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

from CUTSSegmentationLib import pipeline
from CUTSSegmentationLib.condense.binarize import innermost_point
from CUTSSegmentationLib.core.imagedata import Geometry, ImageData
from CUTSSegmentationLib.core.working_grid import (
    MAX_WORKING_VOXELS,
    block_mean,
    box_on_image_grid,
    to_image_grid,
    working_factors,
)
from CUTSSegmentationLib.io.reading import read_image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from volume_cases import read_array, volumes_dir  # noqa: E402
from volume_scoring import dice  # noqa: E402

sys.path.remove(str(REPO / "benchmarks"))


def _header_only(shape_zyx, spacing_xyz) -> ImageData:
    """A volume of `shape_zyx` that takes no memory (a zero-stride view): what the grid's choice reads."""
    return ImageData(np.broadcast_to(np.float32(0), (*shape_zyx, 1)), Geometry(spacing=spacing_xyz))


def _blocks(shape, factors) -> int:
    return int(np.prod([-(-n // f) for n, f in zip(shape, factors)]))


@pytest.mark.parametrize(
    "shape, spacing",
    [
        ((134, 512, 512), (0.98, 0.98, 3.0)),  # thorax CT, thick slices
        ((402, 512, 512), (0.98, 0.98, 1.0)),  # the same chest in 1 mm slices
        ((620, 512, 512), (0.78, 0.78, 0.5)),  # a thin-slice abdominal CT
        ((256, 256, 256), (1.0, 1.0, 1.0)),  # isotropic MRI over the cap
        ((90, 512, 512), (0.8, 0.8, 5.0)),  # few thick slices
        ((2000, 96, 96), (1.0, 1.0, 0.25)),  # many slices of a small field
    ],
)
def test_the_blocks_fit_and_no_blocks_that_fit_have_a_shorter_coarsest_side(shape, spacing) -> None:
    fz, fy, fx = working_factors(_header_only(shape, spacing))
    assert fy == fx and _blocks(shape, (fz, fy, fx)) <= MAX_WORKING_VOXELS
    coarsest = max(spacing[0] * fx, spacing[2] * fz)
    for gz, g in itertools.product(range(1, 2 * fz + 3), range(1, 2 * fy + 3)):
        if _blocks(shape, (gz, g, g)) <= MAX_WORKING_VOXELS:
            assert max(spacing[0] * g, spacing[2] * gz) >= coarsest - 1e-9, (gz, g)


def test_thick_slices_are_only_averaged_in_plane_and_thin_ones_along_z_too() -> None:
    assert working_factors(_header_only((134, 512, 512), (0.98, 0.98, 3.0))) == (1, 2, 2)
    fz, f, _ = working_factors(_header_only((402, 512, 512), (0.98, 0.98, 1.0)))
    assert fz > 1 and 0.98 * f < 4  # in-plane alone would take 4 x 4 blocks: 3.9 mm pixels over 1 mm slices
    assert working_factors(_header_only((155, 240, 240), (1.0, 1.0, 1.0))) == (1, 1, 1)


def test_blocks_average_the_real_volume_and_sit_at_their_voxels_centre() -> None:
    """On a real MRI (its own direction and origin), each working voxel is its block's mean, lies at the centre
    of the block's voxels in patient space, and its label repeats back onto exactly that block."""
    path = volumes_dir() / "spine" / "t1.nii.gz"
    if not path.is_file():
        pytest.fail(f"3D volumes not found at {path.parent} (set CUTS_VOLUMES_DIR)")
    image = read_image(path)
    factors = (3, 2, 2)
    working = block_mean(image, factors)
    z, y, x = image.array.shape[:3]
    assert working.array.shape[:3] == (-(-z // 3), -(-y // 2), -(-x // 2))
    block = image.array[3:6, 4:6, 10:12, 0]
    assert working.array[1, 2, 5, 0] == pytest.approx(float(block.mean()), rel=1e-5)
    corners = [image.geometry.index_to_lps((i, j, k)) for k in (3, 5) for j in (4, 5) for i in (10, 11)]
    assert np.allclose(working.geometry.index_to_lps((5, 2, 1)), np.mean(corners, axis=0), atol=1e-4)
    labels = np.arange(working.n_pixels, dtype=np.int64)
    back = to_image_grid(labels, factors, (z, y, x)).reshape(z, y, x)
    assert set(np.unique(back[3:6, 4:6, 10:12])) == {int(np.ravel_multi_index((1, 2, 5), working.array.shape[:3]))}
    assert box_on_image_grid((slice(1, 2), slice(2, 3), slice(5, 6)), factors, (z, y, x)) == (
        slice(3, 6),
        slice(4, 6),
        slice(10, 12),
    )


@pytest.mark.slow
def test_a_volume_condensed_on_z_blocks_keeps_the_clicked_cord() -> None:
    """The spine T2 MRI (1 mm) worked on a grid capped at half its voxels, so averaged over pairs of slices
    (as a thin-slice CT over the cap is): the hierarchy keeps the image's grid, records its blocks, and the click
    at the cord's centre keeps the cord (0.97 on the image's own grid, docs/benchmarks.md)."""
    root = volumes_dir()
    path = root / "spine" / "t2.nii.gz"
    if not path.is_file():
        pytest.fail(f"3D volumes not found at {root} (set CUTS_VOLUMES_DIR)")
    image = read_image(path)
    cord = read_array(root / "spine" / "t2_cord_label.nii.gz")[0] == 1
    blocks = working_factors(image, max_voxels=image.n_pixels // 2)
    hierarchy, model = pipeline.segment_with_encoder(image, device="cpu", seed=0, working_grid=blocks)
    factors = tuple(hierarchy.info["working_grid_factors"])
    assert factors == (2, 1, 1)  # 1 x 1 x 2 mm: coarser along z, not 2 x 2 x 1 mm
    assert hierarchy.shape == image.spatial_shape
    fz, fy, fx = factors
    finest = hierarchy.levels[0][: fz * (image.array.shape[0] // fz), : fy * (image.array.shape[1] // fy)]
    cells = finest[:, : fx * (finest.shape[2] // fx)].reshape(
        finest.shape[0] // fz, fz, -1, fy, finest.shape[2] // fx, fx
    )
    assert (cells == cells[:, :1, :, :1, :, :1]).all()  # one label a block
    seed = innermost_point(cord, image.geometry.spacing)
    kept = pipeline.structure_at_click(hierarchy, seed, image, model, device="cpu")
    assert kept.mask[seed[2], seed[1], seed[0]]
    assert dice(kept.mask, cord) > 0.8  # 0.91 here; 0.37 on 2 x 2 x 2 mm blocks, which thin the 5 mm cord
