"""Synthetic data: known structures, deterministic, distinct by intensity, with real geometry."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from CUTSSegmentationLib.evaluate.phantom import (
    DEFAULT_ORIGIN_3D,
    DEFAULT_SPACING_3D,
    LABELS_2D,
    LABELS_3D,
    oblique_direction,
    synthetic_image_2d,
    synthetic_phantom_3d,
)
from CUTSSegmentationLib.io.validation import validate_image


def _components(mask: np.ndarray) -> int:
    return int(ndimage.label(mask)[1])


@pytest.mark.parametrize("rgb", [False, True])
def test_2d_image_shape_dtype_and_labels(rgb: bool) -> None:
    image, truth = synthetic_image_2d(size=96, seed=3, rgb=rgb)
    assert image.array.shape == (1, 96, 96, 3 if rgb else 1)
    assert image.array.dtype == np.float32
    assert image.is_2d and image.spatial_shape == (96, 96)
    assert image.source_dtype == "uint8"
    # stored like a PNG: integers in 0..255
    assert image.array.min() >= 0 and image.array.max() <= 255
    assert np.array_equal(image.array, np.round(image.array))
    assert truth.dtype == np.uint16 and truth.shape == (96, 96)
    assert sorted(np.unique(truth).tolist()) == sorted(LABELS_2D)
    validate_image(image)


def test_2d_structures_are_single_compact_objects() -> None:
    _, truth = synthetic_image_2d(size=128, seed=0)
    for label in (2, 3, 4, 5):
        assert _components(truth == label) == 1, LABELS_2D[label]
        assert (truth == label).sum() > 200, LABELS_2D[label]
    # the ring has background in its hole: background is two pieces, and the ring encloses one
    assert _components(truth == 1) == 2
    hole = ndimage.binary_fill_holes(truth == 3) & ~(truth == 3)
    assert hole.any() and np.all(truth[hole] == 1)


def test_2d_structures_have_distinct_mean_intensities() -> None:
    image, truth = synthetic_image_2d(size=128, seed=1)
    grey = image.array[0, ..., 0]
    means = {label: float(grey[truth == label].mean()) for label in LABELS_2D}
    ordered = sorted(means.values())
    assert min(np.diff(ordered)) > 20, means  # every pair separable by intensity alone (0..255)
    assert means[4] > means[2] > means[3] > means[1] > means[5]


def test_2d_textures_differ_within_structures() -> None:
    image, truth = synthetic_image_2d(size=128, seed=2, noise=0.0)
    grey = image.array[0, ..., 0]
    # without noise: the disc is flat, the ring striped, the background smoothly varying
    assert grey[truth == 2].std() == 0.0
    assert grey[truth == 3].std() > 5.0
    assert grey[truth == 1].std() > 5.0


def test_2d_is_deterministic_per_seed() -> None:
    a, ta = synthetic_image_2d(seed=7)
    b, tb = synthetic_image_2d(seed=7)
    c, tc = synthetic_image_2d(seed=8)
    assert np.array_equal(a.array, b.array) and np.array_equal(ta, tb)
    assert not np.array_equal(ta, tc)
    assert not np.array_equal(a.array, c.array)


def test_2d_noise_level_is_respected() -> None:
    clean, truth = synthetic_image_2d(seed=0, noise=0.0)
    noisy, _ = synthetic_image_2d(seed=0, noise=0.1)
    disc = truth == 2
    assert clean.array[0, ..., 0][disc].std() == 0.0
    assert 15.0 < noisy.array[0, ..., 0][disc].std() < 35.0  # ~0.1 * 255, a little clipped


def test_2d_rejects_tiny_size() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        synthetic_image_2d(size=8)


def test_3d_phantom_shape_geometry_and_labels() -> None:
    image, truth = synthetic_phantom_3d(shape=(20, 64, 60), seed=0)
    assert image.array.shape == (20, 64, 60, 1)
    assert image.array.dtype == np.float32 and image.source_dtype == "int16"
    assert not image.is_2d and image.spatial_shape == (20, 64, 60)
    assert image.geometry.spacing == DEFAULT_SPACING_3D
    assert image.geometry.origin == DEFAULT_ORIGIN_3D
    assert np.array_equal(image.geometry.direction_matrix, np.eye(3))
    assert truth.shape == (20, 64, 60) and truth.dtype == np.uint16
    assert sorted(np.unique(truth).tolist()) == sorted(LABELS_3D)
    validate_image(image)


def test_3d_anatomy_is_nested() -> None:
    _, truth = synthetic_phantom_3d(seed=0)
    assert _components(truth == 5) == 1  # tumour
    assert _components(truth == 4) == 2  # two ventricles
    assert _components(truth == 2) == 1  # skull shell
    inside_skull = ndimage.binary_fill_holes(truth != 1)
    # brain, ventricles and tumour lie strictly inside the skull; air is outside
    for label in (3, 4, 5):
        assert np.all(inside_skull[truth == label])
    brain_region = ndimage.binary_fill_holes(np.isin(truth, (3, 4, 5)))
    assert np.all(brain_region[truth == 5]) and np.all(brain_region[truth == 4])
    assert not np.any(truth[0] == 5) and np.all(truth[:, 0, 0] == 1)


def test_3d_intensities_match_structures() -> None:
    image, truth = synthetic_phantom_3d(seed=4)
    values = image.array[..., 0]
    means = {label: float(values[truth == label].mean()) for label in LABELS_3D}
    assert means[2] > means[5] > means[3] > means[4] > means[1]
    assert abs(means[1]) < 5.0 and abs(means[2] - 900.0) < 5.0
    assert np.array_equal(values, np.round(values))  # integers, like an int16 CT


def test_3d_shapes_are_round_in_millimetres() -> None:
    """Spacing (0.9, 0.9, 2.5): the tumour sphere spans ~2.8x more voxels in x than in z."""
    _, truth = synthetic_phantom_3d(seed=0)
    z, y, x = np.nonzero(truth == 5)
    extent_z, extent_x = (z.max() - z.min() + 1) * 2.5, (x.max() - x.min() + 1) * 0.9
    assert abs(extent_z - extent_x) < 2.5 + 0.9


def test_3d_is_deterministic_and_accepts_oblique_geometry() -> None:
    direction = oblique_direction(25.0)
    a, ta = synthetic_phantom_3d(shape=(12, 40, 40), seed=5, direction=direction, origin=(1.0, 2.0, 3.0))
    b, tb = synthetic_phantom_3d(shape=(12, 40, 40), seed=5, direction=direction, origin=(1.0, 2.0, 3.0))
    c, _ = synthetic_phantom_3d(shape=(12, 40, 40), seed=6)
    assert np.array_equal(a.array, b.array) and np.array_equal(ta, tb)
    assert not np.array_equal(a.array, c.array)
    matrix = a.geometry.direction_matrix
    assert np.allclose(matrix @ matrix.T, np.eye(3)) and not np.allclose(matrix, np.eye(3))
    assert a.geometry.origin == (1.0, 2.0, 3.0)


def test_3d_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match=r"\(Z, Y, X\)"):
        synthetic_phantom_3d(shape=(2, 64, 64))
