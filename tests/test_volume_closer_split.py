"""A click on a small organ of a real abdominal MRI keeps that organ, not the region of several it shares.

TotalSegmentator's example MRI of the trunk (117 x 91 x 20, 3 mm) with its own output as the reference (a
model's segmentation, not an expert's: the benchmark's sanity set). Its whole-volume hierarchy holds the aorta
in one region with the vertebrae's surroundings (2,664 voxels for a 672-voxel aorta); the closer look's boxes
hold the aorta alone, and the click keeps it (`condense.zoom.splits_whole`). A kidney, which the whole-volume
hierarchy already holds alone, keeps the whole-volume structure. The engine is self-trained with the defaults
(about 40 s here); the click is the structure's innermost voxel, as in the 3D benchmark.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import volume_baselines  # noqa: E402
import volume_engine  # noqa: E402
from volume_cases import read_array, volumes_dir  # noqa: E402
from volume_scoring import dice  # noqa: E402

sys.path.remove(str(REPO / "benchmarks"))

AORTA, RIGHT_KIDNEY = 23, 2


@pytest.fixture(scope="module")
def abdomen_mri():
    """(image data, reference label map, spacing (x, y, z), hierarchy, encoder); missing data fails."""
    from CUTSSegmentationLib.io.sequences import read_sequences
    from CUTSSegmentationLib.pipeline import segment_with_encoder

    root = volumes_dir()
    path = root / "totalseg" / "example_mr_sm.nii.gz"
    if not path.is_file():
        pytest.fail(f"3D volumes not found at {root} (set CUTS_VOLUMES_DIR)")
    labels, spacing = read_array(root / "totalseg" / "example_seg_mr.nii.gz")
    image = read_sequences([path])
    hierarchy, model = segment_with_encoder(image, device="cpu", seed=0)
    return image, labels, spacing, hierarchy, model


def _click(abdomen_mri, label: int, look_closer=None):
    from CUTSSegmentationLib.pipeline import structure_at_click

    image, labels, spacing, hierarchy, model = abdomen_mri
    reference = labels == label
    seed = volume_engine.innermost_point(reference, spacing)
    kept = structure_at_click(hierarchy, seed, image, model, device="cpu", look_closer=look_closer)
    return kept, reference, seed


@pytest.mark.slow
def test_a_click_on_the_aorta_keeps_the_aorta_not_its_shared_region(abdomen_mri) -> None:
    kept, aorta, seed = _click(abdomen_mri, AORTA)
    whole, _, _ = _click(abdomen_mri, AORTA, look_closer=False)
    assert kept.box_mm is not None, "the click kept the whole-volume region"
    assert whole.voxels > 2 * kept.voxels  # the whole-volume region holds more than the aorta
    ours, theirs = dice(kept.mask, aorta), dice(whole.mask, aorta)
    image = abdomen_mri[0].array[..., 0]
    volume_baselines.clear_memo()
    baseline = max(
        dice(volume_baselines.kmeans_component(k)(image, abdomen_mri[2], seed), aorta)
        for k in volume_baselines.KMEANS_KS
    )
    volume_baselines.clear_memo()
    assert ours > theirs + 0.2, f"closer look {ours:.3f} vs whole volume {theirs:.3f}"
    assert ours > baseline, f"engine {ours:.3f} vs k-means best k + component {baseline:.3f}"


@pytest.mark.slow
def test_a_kidney_the_hierarchy_holds_alone_keeps_the_whole_volume_structure(abdomen_mri) -> None:
    kept, kidney, _ = _click(abdomen_mri, RIGHT_KIDNEY)
    whole, _, _ = _click(abdomen_mri, RIGHT_KIDNEY, look_closer=False)
    assert kept.box_mm is None
    assert np.array_equal(kept.mask, whole.mask)
    assert dice(kept.mask, kidney) > 0.85
