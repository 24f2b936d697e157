"""Evaluation metrics: known values, skimage/sewar agreement, empty-mask conventions, anisotropic spacing."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.metrics import hausdorff_distance, structural_similarity

from CUTSSegmentationLib.core import distances
from CUTSSegmentationLib.core.errors import InputError
from CUTSSegmentationLib.evaluate.metrics import dice, ergas, evaluate_binary, hausdorff, rmse, ssim


def disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def blobs(shape: tuple[int, ...], seed: int, level: float = 0.52) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(rng.random(shape), 2.5) > level


def retina_masks(retina_dir: Path, n: int = 8) -> list[np.ndarray]:
    paths = sorted((retina_dir / "label_with_GA").glob("label*.npy"))[:n]
    return [np.load(p) for p in paths]


# ------------------------------------------------------------------------------------------ known values
def test_identical_masks() -> None:
    m = disc((64, 64), (30, 28), 12)
    assert dice(m, m) == 1.0
    assert rmse(m, m) == 0.0
    assert ssim(m, m) == pytest.approx(1.0)
    assert hausdorff(m, m) == 0.0
    assert ergas(m, m) == 0.0


def test_discs_offset_by_three_pixels() -> None:
    a = disc((64, 64), (32, 30), 10)
    b = disc((64, 64), (32, 33), 10)
    assert hausdorff(a, b) == pytest.approx(3.0)
    assert hausdorff(b, a) == pytest.approx(3.0)
    assert hausdorff_distance(a, b) == pytest.approx(3.0)
    expected = 2 * np.count_nonzero(a & b) / (a.sum() + b.sum())
    assert dice(a, b) == pytest.approx(expected)
    assert 0.7 < dice(a, b) < 1.0


def test_dice_and_rmse_by_hand() -> None:
    truth = np.zeros((10, 10), np.uint8)
    truth[2:6, 2:6] = 1  # 16 px
    pred = np.zeros((10, 10), bool)
    pred[2:6, 2:5] = True  # 12 px inside the truth
    assert dice(pred, truth) == pytest.approx(2 * 12 / 28)
    assert rmse(pred, truth) == pytest.approx(math.sqrt(4 / 100))
    # any nonzero value is foreground
    assert dice(pred.astype(np.uint8) * 255, truth) == pytest.approx(2 * 12 / 28)


def test_ssim_is_skimage_on_float_masks(retina_dir: Path) -> None:
    masks = retina_masks(retina_dir, 4)
    for truth, pred in zip(masks, masks[1:] + masks[:1]):
        want = structural_similarity(truth.astype(float), pred.astype(float), data_range=1.0)
        assert ssim(pred, truth) == pytest.approx(want, rel=1e-12)
    a, b = blobs((20, 24, 28), 1), blobs((20, 24, 28), 2)
    assert ssim(a, b) == pytest.approx(structural_similarity(b.astype(float), a.astype(float), data_range=1.0))
    # a single-slice volume is the 2D image
    assert ssim(a[:1], b[:1]) == pytest.approx(ssim(a[0], b[0]))


# ------------------------------------------------------------------------------------------ Hausdorff
def test_hausdorff_matches_skimage_2d_and_3d(retina_dir: Path) -> None:
    masks = [m for m in retina_masks(retina_dir, 6) if m.any()]
    for truth, pred in zip(masks, masks[1:]):
        assert hausdorff(pred, truth) == pytest.approx(hausdorff_distance(pred != 0, truth != 0), abs=1e-9)
    for seed in range(3):
        a, b = blobs((24, 30, 36), seed), blobs((24, 30, 36), seed + 10)
        assert hausdorff(a, b) == pytest.approx(hausdorff_distance(a, b), abs=1e-9)


def test_hausdorff_counts_interior_points() -> None:
    """A disc around a ring: the farthest disc point from the ring is the disc's centre, not its rim."""
    yy, xx = np.mgrid[:41, :41]
    r = np.hypot(yy - 20, xx - 20)
    big_disc = r <= 10
    ring = (r >= 5) & (r <= 6)
    assert hausdorff(big_disc, ring) == pytest.approx(hausdorff_distance(big_disc, ring))
    assert hausdorff(big_disc, ring) >= 5.0


def test_hausdorff_mm_with_anisotropic_spacing() -> None:
    # 2D: spacing (x, y) = (2.0, 0.5) mm; array axes are (Y, X)
    a = np.zeros((40, 40), bool)
    a[10:20, 10:20] = True
    shifted_x = np.roll(a, 3, axis=1)
    shifted_y = np.roll(a, 3, axis=0)
    assert hausdorff(a, shifted_x) == pytest.approx(3.0)
    assert hausdorff(a, shifted_x, spacing=(2.0, 0.5)) == pytest.approx(6.0)
    assert hausdorff(a, shifted_y, spacing=(2.0, 0.5)) == pytest.approx(1.5)
    assert hausdorff(a, shifted_y, spacing=(2.0, 0.5, 9.0)) == pytest.approx(1.5)  # z ignored in 2D
    # 3D: spacing (x, y, z) = (0.5, 0.7, 3.0) mm; array axes are (Z, Y, X)
    v = np.zeros((12, 20, 20), bool)
    v[3:7, 5:12, 5:12] = True
    assert hausdorff(v, np.roll(v, 2, axis=0), spacing=(0.5, 0.7, 3.0)) == pytest.approx(6.0)
    assert hausdorff(v, np.roll(v, 2, axis=1), spacing=(0.5, 0.7, 3.0)) == pytest.approx(1.4)
    assert hausdorff(v, np.roll(v, 2, axis=2), spacing=(0.5, 0.7, 3.0)) == pytest.approx(1.0)
    with pytest.raises(InputError):
        hausdorff(v, v, spacing=(1.0, 1.0))


def test_hausdorff_large_volume_fast_path_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    """Crops above the threshold use SimpleITK's Maurer map; it must agree with scipy's EDT."""
    a, b = blobs((48, 64, 72), 5, 0.51), blobs((48, 64, 72), 6, 0.51)
    assert a.size > distances.SITK_MIN_VOXELS
    fast_px = hausdorff(a, b)
    fast_mm = hausdorff(a, b, spacing=(0.8, 0.6, 2.5))
    monkeypatch.setattr(distances, "SITK_MIN_VOXELS", 10**12)
    assert fast_px == hausdorff(a, b)  # integer squared distances: exact
    assert fast_mm == pytest.approx(hausdorff(a, b, spacing=(0.8, 0.6, 2.5)), rel=1e-6)
    assert fast_px == pytest.approx(hausdorff_distance(a, b))


def test_empty_mask_conventions() -> None:
    empty = np.zeros((30, 40), bool)
    full = disc((30, 40), (15, 20), 5)
    diag = math.sqrt(30**2 + 40**2)
    assert hausdorff(empty, full) == pytest.approx(diag)
    assert hausdorff(full, empty) == pytest.approx(diag)
    assert hausdorff(empty, empty) == pytest.approx(diag)
    assert hausdorff(empty, full, spacing=(0.5, 2.0)) == pytest.approx(math.hypot(40 * 0.5, 30 * 2.0))
    assert hausdorff(np.zeros((4, 30, 40)), np.zeros((4, 30, 40)), spacing=(1, 1, 3)) == pytest.approx(
        math.sqrt(12**2 + 30**2 + 40**2)
    )
    assert dice(empty, empty) == 1.0
    assert dice(empty, full) == 0.0
    assert rmse(empty, empty) == 0.0
    assert ergas(full, empty) == 0.0  # no truth anywhere: every window is skipped (sewar 0.4.5)


# ------------------------------------------------------------------------------------------ ERGAS
def test_ergas_by_hand() -> None:
    ones = np.ones((16, 16), np.uint8)
    zeros = np.zeros((16, 16), np.uint8)
    # local rmse 1, local mean 1/64 (the 0.4.5 double division): 100 * 4 * 64
    assert ergas(zeros, ones) == pytest.approx(25600.0)
    assert ergas(ones, ones) == 0.0
    # half the truth missed, evenly: a checkerboard error with truth all ones -> local mse 1/2
    checker = (np.indices((16, 16)).sum(axis=0) % 2).astype(np.uint8)
    assert ergas(checker, ones) == pytest.approx(25600.0 * math.sqrt(0.5))
    assert ergas(zeros, ones, ratio=2.0) == pytest.approx(12800.0)


def test_ergas_3d_is_mean_of_axial_slices() -> None:
    a, b = blobs((5, 32, 40), 3), blobs((5, 32, 40), 4)
    assert ergas(a, b) == pytest.approx(np.mean([ergas(a[z], b[z]) for z in range(5)]))
    with pytest.raises(InputError):
        ergas(np.ones((8, 8)), np.ones((8, 8)))


def test_ergas_matches_sewar_045(retina_dir: Path) -> None:
    pytest.importorskip("sewar")
    from importlib.metadata import version

    if version("sewar") != "0.4.5":
        pytest.skip(f"sewar {version('sewar')} installed; the paper's ERGAS is sewar 0.4.5's")
    from sewar.full_ref import ergas as sewar_ergas
    from sewar.full_ref import rmse as sewar_rmse

    rng = np.random.default_rng(0)
    pairs = []
    masks = retina_masks(retina_dir, 10)
    for i, truth in enumerate(masks):
        pairs.append((masks[(i + 1) % len(masks)], truth))
        pairs.append((np.roll(truth, 4, axis=1), truth))
        pairs.append(((rng.random(truth.shape) < 0.3).astype(np.uint8), truth))
    pairs.append((blobs((50, 70), 1).astype(np.uint8), blobs((50, 70), 2).astype(np.uint8)))
    pairs.append(((rng.random((33, 47)) < 0.5).astype(np.uint8), (rng.random((33, 47)) < 0.05).astype(np.uint8)))
    for pred, truth in pairs:
        want = sewar_ergas(truth.astype(np.uint8), pred.astype(np.uint8))  # GT first, as the authors call it
        assert ergas(pred, truth) == pytest.approx(want, rel=1e-6, abs=1e-9)
        assert rmse(pred, truth) == pytest.approx(sewar_rmse(truth.astype(np.uint8), pred.astype(np.uint8)))


# ------------------------------------------------------------------------------------------ all at once
def test_evaluate_binary(retina_dir: Path) -> None:
    truth = retina_masks(retina_dir, 1)[0]
    pred = np.roll(truth, 2, axis=0)
    out = evaluate_binary(pred, truth)
    assert set(out) == {"dice", "hausdorff", "ssim", "ergas", "rmse"}
    assert out["dice"] == dice(pred, truth)
    assert out["ergas"] == ergas(pred, truth)
    with_mm = evaluate_binary(pred, truth, spacing=(0.5, 0.5))
    assert with_mm["hausdorff_mm"] == pytest.approx(0.5 * out["hausdorff"])
    with pytest.raises(InputError):
        evaluate_binary(pred, truth[:-1])
