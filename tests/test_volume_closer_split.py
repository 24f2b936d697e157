"""A click on a small organ of a real abdominal MRI keeps that organ, not the region of several it shares.

TotalSegmentator's example MRI of the trunk (117 x 91 x 20, 3 mm) with its own output as the reference (a
model's segmentation, not an expert's: the benchmark's sanity set). Its whole-volume hierarchy holds the
gallbladder in one region with the liver (27,000 voxels for a 1,121-voxel gallbladder) and the vertebrae with
their surroundings; the closer look's boxes hold each alone, and the click keeps it (`condense.zoom
.splits_whole`). A kidney, which the whole-volume hierarchy already holds alone, keeps the whole-volume
structure. The engine is self-trained with the defaults on one torch thread (about 50 s here; the run, and so
which region shares which organ, depends on the thread count); the click is the structure's innermost voxel,
as in the 3D benchmark.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import volume_engine  # noqa: E402
from volume_cases import read_array, volumes_dir  # noqa: E402
from volume_scoring import dice  # noqa: E402

sys.path.remove(str(REPO / "benchmarks"))

GALLBLADDER, VERTEBRAE, RIGHT_KIDNEY = 4, 19, 2


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
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        hierarchy, model = segment_with_encoder(image, device="cpu", seed=0)
    finally:
        torch.set_num_threads(threads)
    return image, labels, spacing, hierarchy, model


def _click(abdomen_mri, label: int, look_closer=None):
    from CUTSSegmentationLib.pipeline import structure_at_click

    image, labels, spacing, hierarchy, model = abdomen_mri
    reference = labels == label
    seed = volume_engine.innermost_point(reference, spacing)
    kept = structure_at_click(hierarchy, seed, image, model, device="cpu", look_closer=look_closer)
    return kept, reference, seed


@pytest.mark.slow
@pytest.mark.parametrize(("label", "gain"), [(GALLBLADDER, 0.2), (VERTEBRAE, 0.05)], ids=["gallbladder", "vertebrae"])
def test_a_click_on_an_organ_keeps_the_organ_not_its_shared_region(abdomen_mri, label: int, gain: float) -> None:
    kept, organ, _ = _click(abdomen_mri, label)
    whole, _, _ = _click(abdomen_mri, label, look_closer=False)
    assert kept.box_mm is not None, "the click kept the whole-volume region"
    assert whole.voxels > 2 * kept.voxels  # the whole-volume region holds more than the organ
    ours, theirs = dice(kept.mask, organ), dice(whole.mask, organ)
    assert ours > theirs + gain, f"closer look {ours:.3f} vs whole volume {theirs:.3f}"


@pytest.mark.slow
def test_a_kidney_the_hierarchy_holds_alone_keeps_the_whole_volume_structure(abdomen_mri) -> None:
    kept, kidney, _ = _click(abdomen_mri, RIGHT_KIDNEY)
    whole, _, _ = _click(abdomen_mri, RIGHT_KIDNEY, look_closer=False)
    assert kept.box_mm is None
    assert np.array_equal(kept.mask, whole.mask)
    assert dice(kept.mask, kidney) > 0.85
