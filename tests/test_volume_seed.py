"""One real MRI (cervical spine T2, 60 x 55 x 52, expert spinal-cord mask) through the user's path.

The click is the cord's innermost voxel, as in the 3D benchmark (benchmarks/volumes3d.py). The engine is
self-trained on the volume with a short budget and clicked with the benchmark's headline click; the sceptic's
baseline, intensity k-means (best of k = 3, 5, 10, 20) with the connected component under the seed, is
computed here on the same volume. The engine must beat it.

The engine's click keeps the connected structure at the level before the first salient growth of the region
under the seed (condense/structures.py); the baseline reaches 0.88 on this cord.
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
from volume_scoring import dice, hd95  # noqa: E402

sys.path.remove(str(REPO / "benchmarks"))

#: The user's default self-training (None: the engine's CPU budget for volumes, about a minute here). Encoders
#: trained for a fraction of it give hierarchies that do not hold the cord at any level.
TRAIN_EPOCHS = None


@pytest.fixture(scope="module")
def spine_t2() -> tuple[np.ndarray, np.ndarray, tuple[float, float, float], Path]:
    """(image, cord mask, spacing (x, y, z), image path); missing data fails (CI has the shared volumes)."""
    root = volumes_dir()
    path = root / "spine" / "t2.nii.gz"
    if not path.is_file():
        pytest.fail(f"3D volumes not found at {root} (set CUTS_VOLUMES_DIR)")
    image, spacing = read_array(path)
    labels, _ = read_array(root / "spine" / "t2_cord_label.nii.gz")
    return image.astype(np.float32), labels == 1, spacing, path


def _kmeans_component_best(image: np.ndarray, spacing, seed, cord: np.ndarray) -> float:
    volume_baselines.clear_memo()
    scores = [
        dice(volume_baselines.kmeans_component(k)(image, spacing, seed), cord) for k in volume_baselines.KMEANS_KS
    ]
    volume_baselines.clear_memo()
    return max(scores)


def test_kmeans_component_baseline_on_spine(spine_t2) -> None:
    """The baseline the engine must beat, as the benchmark computes it: a strong number on this cord."""
    image, cord, spacing, _ = spine_t2
    assert image.shape == (52, 55, 60) and int(cord.sum()) == 4275
    seed = volume_engine.innermost_point(cord, spacing)
    assert cord[seed[2], seed[1], seed[0]]
    best = _kmeans_component_best(image, spacing, seed, cord)
    assert 0.85 < best < 0.92, best
    mask = volume_baselines.kmeans_component(5)(image, spacing, seed)
    assert hd95(mask, cord, spacing) < 5.0


@pytest.mark.slow
def test_engine_click_beats_kmeans_component(spine_t2) -> None:
    from CUTSSegmentationLib.io.reading import read_image
    from CUTSSegmentationLib.pipeline import segment

    image, cord, spacing, path = spine_t2
    seed = volume_engine.innermost_point(cord, spacing)
    hierarchy = segment(read_image(path), device="cpu", train_epochs=TRAIN_EPOCHS, seed=0)
    assert hierarchy.shape == cord.shape and hierarchy.n_levels > 2
    click = volume_engine.CLICKS[volume_engine.headline_click()]
    ours = dice(click(volume_engine.EngineRun(hierarchy, [path]), seed, spacing), cord)
    baseline = _kmeans_component_best(image, spacing, seed, cord)
    assert ours > baseline, f"engine {ours:.3f} vs k-means + component {baseline:.3f}"
