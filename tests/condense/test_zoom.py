"""A closer look at the click: hierarchies of boxes around it, on the thorax CT whose whole-volume hierarchy
has no region for its tumour (docs/benchmarks.md, 3D volumes: 0.01 at the click, 0.47 for SLIC 500)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from CUTSSegmentationLib.condense.binarize import innermost_point
from CUTSSegmentationLib.condense.zoom import ZOOM_SIDES_MM, box_around, is_unresolved, structure_in_boxes
from CUTSSegmentationLib.core.working_grid import block_mean, in_plane_factor
from CUTSSegmentationLib.io.reading import read_image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from volume_cases import volumes_dir  # noqa: E402
from volume_scoring import dice  # noqa: E402

sys.path.remove(str(REPO / "benchmarks"))


def test_boxes_are_cubes_in_millimetres_clipped_to_the_grid() -> None:
    box = box_around((2, 100, 10), 100.0, (2.0, 2.0, 5.0), (40, 128, 128))
    assert box == (slice(0, 13), slice(75, 126), slice(0, 36))  # +-10 slices, +-25 voxels, clipped at 0
    assert not is_unresolved([1_800_000], 90_000_000, (1.0, 1.0, 1.0))  # 1.8 litres, 2 % of the scan: an organ
    assert is_unresolved([11_000_000 // 6], 90_000_000, (1.0, 2.0, 3.0))  # 11 litres: the body's soft tissue
    assert is_unresolved([4, 300_000], 1_000_000, (1.0, 1.0, 1.0))  # a speck, then 30 % of the scan


@pytest.fixture(scope="module")
def thorax_ct():
    """The thorax CT on its working grid, the tumour's mask on that grid, and the click (the tumour's centre)."""
    import SimpleITK as sitk

    root = volumes_dir()
    path = root / "lung" / "LUNG1-001_ct.nii.gz"
    if not path.is_file():
        pytest.fail(f"3D volumes not found at {root} (set CUTS_VOLUMES_DIR)")
    image = read_image(path)
    factor = in_plane_factor(image)
    working = block_mean(image, factor)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "lung" / "LUNG1-001_label.nii.gz")))
    tumour = labels == 4
    x, y, z = innermost_point(tumour, image.geometry.spacing)
    return working, tumour[:, ::factor, ::factor], (z, y // factor, x // factor)


@pytest.mark.slow
def test_boxes_around_the_click_separate_the_tumour(thorax_ct) -> None:
    """With the simplest embedding (the voxel's intensity and its in-plane local mean), the member the three
    boxes agree on is the tumour; no whole-volume level holds it. (With the self-trained encoder: 0.78.)"""
    working, tumour, click = thorax_ct
    array = working.array[..., 0]
    low, high = np.percentile(array, [0.5, 99.5])
    smooth = ndi.gaussian_filter(array, (0, 1.5, 1.5))

    def embed(box):
        rows = np.stack([(array[box] - low) / (high - low), (smooth[box] - low) / (high - low)], axis=-1)
        return rows.reshape(-1, 2).astype(np.float32)

    zoomed = structure_in_boxes(working, click, embed)
    assert zoomed.mask.shape == tumour.shape and zoomed.mask[click]
    assert zoomed.side_mm in ZOOM_SIDES_MM and zoomed.agreement > 0.5
    outer = box_around(click, max(ZOOM_SIDES_MM), working.geometry.spacing, tumour.shape)
    assert not zoomed.mask.sum() - zoomed.mask[outer].sum()  # nothing outside the largest box
    assert ndi.label(zoomed.mask)[1] == 1  # one connected structure
    assert dice(zoomed.mask, tumour) > 0.5
