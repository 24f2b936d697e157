"""Binarisation by seed and by ground-truth hint; the innermost point used as a benchmark seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from CUTSSegmentationLib.condense.binarize import binarize_at_seed, binarize_with_hint, innermost_point
from CUTSSegmentationLib.core.errors import InputError


def label_map_2d() -> np.ndarray:
    labels = np.ones((6, 8), np.uint16)
    labels[:, 4:] = 2
    labels[4:, :] = 3
    labels[0, 0] = 0
    return labels


# ------------------------------------------------------------------------------------------ seeds
def test_seed_is_x_y_order_and_rounds_half_up() -> None:
    labels = label_map_2d()
    assert np.array_equal(binarize_at_seed(labels, (5, 1)), labels == 2)  # x=5, y=1 -> labels[1, 5]
    assert np.array_equal(binarize_at_seed(labels, (1, 5)), labels == 3)
    assert np.array_equal(binarize_at_seed(labels, (3.49, 1)), labels == 1)
    assert np.array_equal(binarize_at_seed(labels, (3.5, 1)), labels == 2)  # half up, not to even
    assert np.array_equal(binarize_at_seed(labels, (5, 1, 0.2)), labels == 2)  # z = 0 allowed on a 2D map
    mask = binarize_at_seed(labels, (5, 1))
    assert mask.dtype == bool and mask.shape == labels.shape


def test_seed_3d() -> None:
    labels = np.zeros((4, 5, 6), np.uint16)
    labels[...] = 7
    labels[2, 3, 4] = 9
    labels[2, 3, 5] = 9
    mask = binarize_at_seed(labels, (4, 3, 2))
    assert mask.sum() == 2 and mask[2, 3, 4] and mask[2, 3, 5]
    assert binarize_at_seed(labels[:1], (1, 1)).all()  # single-slice volume takes (x, y)
    with pytest.raises(InputError, match="needs a seed"):
        binarize_at_seed(labels, (1, 1))


@pytest.mark.parametrize("seed", [(-1, 2), (8, 2), (2, 6), (7.6, 0), (2, -0.6), (1, 1, 1), (float("nan"), 1)])
def test_seed_outside_the_image(seed: tuple[float, ...]) -> None:
    with pytest.raises(InputError) as info:
        binarize_at_seed(label_map_2d(), seed)
    assert "\n" not in str(info.value)


def test_seed_on_label_zero() -> None:
    with pytest.raises(InputError, match="label 0"):
        binarize_at_seed(label_map_2d(), (0, 0))


# ------------------------------------------------------------------------------------------ hint
def test_hint_picks_most_frequent_label_under_the_truth(retina_dir: Path) -> None:
    paths = sorted((retina_dir / "label_with_GA").glob("label*.npy"))[:12]
    checked = 0
    for path in paths:
        truth = np.load(path)
        if not truth.any():
            continue
        components, n = ndi.label(truth)
        labels = components.astype(np.uint16)
        labels[truth == 0] = n + 1  # background gets its own label, so every pixel is labelled
        mask = binarize_with_hint(labels, truth)
        sizes = np.bincount(components.ravel())[1:]
        largest = int(np.argmax(sizes)) + 1
        assert np.array_equal(mask, components == largest)
        if truth.mean() < 0.5:  # a hint over the whole image is mostly background: the background label wins
            assert np.array_equal(binarize_with_hint(labels, np.ones_like(truth)), labels == n + 1)
        checked += 1
    assert checked >= 5


def test_hint_ties_go_to_first_in_raster_order() -> None:
    labels = np.array([[5, 2, 2], [5, 9, 9]], np.uint16)
    hint = np.array([[0, 1, 1], [1, 1, 1]])  # 2 and 9 twice each; 2 is met first
    assert np.array_equal(binarize_with_hint(labels, hint), labels == 2)
    hint2 = np.array([[0, 0, 0], [1, 1, 1]])  # 9 twice beats 5 once
    assert np.array_equal(binarize_with_hint(labels, hint2), labels == 9)


def test_hint_unlabelled_option() -> None:
    labels = np.array([[0, 0, 0, 4]], np.uint16)
    hint = np.ones_like(labels)
    assert np.array_equal(binarize_with_hint(labels, hint), labels == 0)  # the authors' behaviour
    assert np.array_equal(binarize_with_hint(labels, hint, include_unlabelled=False), labels == 4)


def test_hint_errors() -> None:
    labels = label_map_2d()
    with pytest.raises(InputError, match="empty"):
        binarize_with_hint(labels, np.zeros_like(labels))
    with pytest.raises(InputError):
        binarize_with_hint(labels, np.ones((3, 3)))


# ------------------------------------------------------------------------------------------ innermost
def _padded_edt(mask: np.ndarray, sampling=None) -> np.ndarray:
    return ndi.distance_transform_edt(np.pad(mask, 1), sampling=sampling)[(slice(1, -1),) * mask.ndim]


def test_innermost_point_of_a_disc_is_its_centre() -> None:
    yy, xx = np.mgrid[:50, :60]
    mask = (yy - 20) ** 2 + (xx - 35) ** 2 <= 81
    assert innermost_point(mask) == (35, 20)


def test_innermost_point_on_a_ridge_is_central() -> None:
    mask = np.zeros((20, 40), bool)
    mask[5:10, 3:34] = True  # ridge along y = 7, x = 5..31; the centroid is x = 18
    assert innermost_point(mask) == (18, 7)


def test_innermost_point_is_the_distance_transform_max(retina_dir: Path) -> None:
    paths = sorted((retina_dir / "label_with_GA").glob("label*.npy"))[:10]
    for path in paths:
        truth = np.load(path) != 0
        if not truth.any():
            continue
        x, y = innermost_point(truth)
        assert truth[y, x]
        dist = _padded_edt(truth)
        assert dist[y, x] == dist.max()


def test_innermost_point_3d_and_spacing() -> None:
    mask = np.zeros((9, 20, 30), bool)
    mask[1:8, 2:17, 4:25] = True  # extents z 7, y 15, x 21
    x, y, z = innermost_point(mask)
    assert mask[z, y, x]
    assert (x, y, z) == (14, 9, 4)
    # touching the image border: the border counts as background
    edge = np.zeros((10, 10), bool)
    edge[:, :5] = True
    x, y = innermost_point(edge)
    assert x == 2
    dist = _padded_edt(mask, sampling=(3.0, 1.0, 1.0))
    x, y, z = innermost_point(mask, spacing=(1.0, 1.0, 3.0))
    assert dist[z, y, x] == dist.max()
    with pytest.raises(InputError):
        innermost_point(np.zeros((5, 5)))
