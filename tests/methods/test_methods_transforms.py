"""Shared pieces of the peer methods: affine views, gamma, Sobel, local cross-correlation, one-level hierarchy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from CUTSSegmentationLib.condense.hierarchy import Hierarchy
from CUTSSegmentationLib.core.errors import InputError
from CUTSSegmentationLib.evaluate.phantom import synthetic_image_2d
from CUTSSegmentationLib.learn.sampling import make_generator
from CUTSSegmentationLib.learn.transforms import (
    local_cross_correlation,
    random_affine,
    random_gamma,
    sobel,
    sobel_magnitude,
    valid_mask,
    warp,
)
from CUTSSegmentationLib.methods.labels import relabel_consecutive, single_level_hierarchy


def _invert(theta: torch.Tensor) -> torch.Tensor:
    full = torch.cat([theta, torch.tensor([[[0.0, 0.0, 1.0]]]).expand(len(theta), 1, 3)], dim=1)
    return torch.linalg.inv(full)[:, :2]


def test_affine_is_rigid_on_non_square_images_and_invertible() -> None:
    gen = make_generator(0)
    theta = random_affine(3, (40, 80), gen, scale_range=(1.0, 1.0), max_translation=0.0)
    # In pixel units (x scaled by W/2, y by H/2) the matrix must be a pure rotation.
    s = torch.diag(torch.tensor([40.0, 20.0]))
    pixel = s @ theta[:, :, :2] @ torch.linalg.inv(s)
    eye = torch.eye(2).expand(3, 2, 2)
    assert torch.allclose(pixel @ pixel.transpose(1, 2), eye, atol=1e-5)
    # Warping a smooth image forth and back gives it back inside the region both views see.
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 40), torch.linspace(-1, 1, 80), indexing="ij")
    img = torch.sin(3 * xx + 2 * yy)[None, None].expand(3, 1, 40, 80).contiguous()
    theta = random_affine(3, (40, 80), gen)
    back = warp(warp(img, theta), _invert(theta))
    inside = valid_mask(theta, img.shape) & valid_mask(_invert(theta), img.shape)
    inner = torch.zeros_like(inside)
    inner[..., 4:-4, 4:-4] = True
    sel = inside & inner
    assert sel.sum() > 500
    assert (back - img)[sel].abs().max() < 0.1


def test_random_affine_ranges_and_reproducibility() -> None:
    a = random_affine(200, (64, 64), make_generator(5))
    b = random_affine(200, (64, 64), make_generator(5))
    assert torch.equal(a, b)
    scale = 1.0 / torch.sqrt(a[:, 0, 0] ** 2 + a[:, 1, 0] ** 2)
    angle = torch.atan2(a[:, 1, 0], a[:, 0, 0]) * 180 / math.pi
    assert 0.8 <= float(scale.min()) and float(scale.max()) <= 1.3
    assert float(angle.abs().max()) <= 45.0 + 1e-3 and float(angle.abs().max()) > 30.0
    assert float(a[:, :, 2].abs().max()) <= 0.2 + 1e-6


def test_gamma_keeps_range_and_order() -> None:
    x = torch.linspace(-1, 1, 101).view(1, 1, 1, 101).expand(16, 1, 1, 101).contiguous()
    y = random_gamma(x, make_generator(1))
    assert float(y.min()) >= -1.0 - 1e-6 and float(y.max()) <= 1.0 + 1e-6
    assert torch.all(torch.diff(y, dim=-1) >= 0)  # monotone: gamma never reorders intensities
    assert not torch.allclose(y, x)


def test_sobel_finds_edges_and_cross_correlation() -> None:
    step = torch.zeros(1, 1, 16, 16)
    step[..., 8:] = 1.0
    gx, gy, gd = sobel(step, "xyd")
    assert float(gx.abs().max()) == pytest.approx(0.5) and float(gy.abs().max()) == 0.0
    assert float(gd.abs().max()) > 0
    mag = sobel_magnitude(step)
    assert mag[0, 0, 4, 7] > 0.4 and mag[0, 0, 4, 2] < 1e-5
    noise = torch.rand(1, 1, 32, 32, generator=make_generator(0))
    same = local_cross_correlation(noise, 2 * noise + 1).mean()
    other = local_cross_correlation(noise, torch.rand(1, 1, 32, 32, generator=make_generator(1))).mean()
    assert float(same) > 0.99 and float(other) < 0.3


def test_single_level_hierarchy_round_trip(tmp_path) -> None:
    image, truth = synthetic_image_2d(32, seed=0)
    h = single_level_hierarchy(truth, image, {"method": "test"})
    assert h.n_levels == 1 and np.array_equal(h.levels[0], truth) and np.array_equal(h.persistent, truth)
    assert np.array_equal(h.step_map(0), truth)
    loaded = Hierarchy.load(h.save(tmp_path / "hierarchy.npz"))
    assert np.array_equal(loaded.levels[0], truth) and loaded.info["method"] == "test"
    assert list(loaded.n_clusters) == [5]
    with pytest.raises(InputError):
        single_level_hierarchy(truth.astype(np.int64) - 1, image)
    assert relabel_consecutive(np.array([[7, 3], [3, 9]])).tolist() == [[2, 1], [1, 3]]
