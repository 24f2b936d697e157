"""S3-Net (per-image network) and CGC's GMM-with-threshold baseline: they learn, and beat a random labeler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from CUTSSegmentationLib.condense.binarize import binarize_with_hint
from CUTSSegmentationLib.core.errors import InputError
from CUTSSegmentationLib.evaluate.metrics import dice
from CUTSSegmentationLib.evaluate.phantom import synthetic_image_2d, synthetic_phantom_3d
from CUTSSegmentationLib.learn.gaussian_mixture import fit_gmm
from CUTSSegmentationLib.methods.gmm import foreground_probability, segment_image_gmm
from CUTSSegmentationLib.methods.s3net import DeformConv2d, segment_image_s3net, spatial_consistency_loss

STRUCTURES = (2, 3, 4, 5)


def hint_dice(labels: np.ndarray, mask: np.ndarray) -> float:
    return float(dice(binarize_with_hint(labels, mask), mask))


def random_hint_dice(n_labels: int, mask: np.ndarray) -> float:
    return max(
        hint_dice(np.random.default_rng(s).integers(1, max(2, n_labels) + 1, mask.shape), mask) for s in range(3)
    )


# ---------------------------------------------------------------------------------------------- S3-Net
def test_deformable_conv_with_zero_offsets_is_a_convolution() -> None:
    torch.manual_seed(0)
    conv = DeformConv2d(3, 4)
    x = torch.randn(2, 3, 9, 11)
    expected = torch.nn.functional.conv2d(
        torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), conv.weight.view(4, 3, 3, 3), conv.bias
    )
    assert torch.allclose(conv(x), expected, atol=1e-5)


def test_spatial_loss_is_zero_on_constant_maps() -> None:
    flat = torch.ones(1, 3, 8, 8)
    noisy = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert float(spatial_consistency_loss(flat)) == 0.0 < float(spatial_consistency_loss(noisy))


def test_s3net_loss_falls_and_beats_random() -> None:
    image, truth = synthetic_image_2d(64, seed=0)
    history: list[float] = []
    labels = segment_image_s3net(image, seed=0, history=history)
    assert len(history) == 50  # the paper's 50 iterations
    assert np.mean(history[-5:]) < 0.5 * np.mean(history[:5]), history
    assert labels.shape == truth.shape and labels.dtype == np.uint16 and labels.min() == 1
    n = int(labels.max())
    assert 2 <= n <= 32 and len(np.unique(labels)) == n  # consecutive labels 1..n
    gains = [hint_dice(labels, truth == s) - random_hint_dice(n, truth == s) for s in STRUCTURES]
    assert np.mean(gains) > 0.2 and max(gains) > 0.4, gains
    again = segment_image_s3net(image, seed=0, iterations=3)
    assert np.array_equal(again, segment_image_s3net(image, seed=0, iterations=3))  # seeded


def test_s3net_refuses_volumes() -> None:
    volume, _ = synthetic_phantom_3d((4, 24, 24))
    with pytest.raises(InputError, match="2D"):
        segment_image_s3net(volume, iterations=1)


# ------------------------------------------------------------------------------------------------- GMM
def test_em_recovers_a_known_mixture() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-0.6, 0.05, 3000), rng.normal(0.0, 0.1, 5000), rng.normal(0.7, 0.05, 2000)])
    gmm = fit_gmm(x, 3, seed=0)
    assert np.allclose(gmm.means.ravel(), [-0.6, 0.0, 0.7], atol=0.02)
    assert np.allclose(gmm.weights, [0.3, 0.5, 0.2], atol=0.02)
    assert np.allclose(np.sqrt(gmm.covariances.ravel()), [0.05, 0.1, 0.05], atol=0.01)
    post = gmm.posteriors(np.array([[-0.6], [0.7]]))
    assert post[0, 0] > 0.99 and post[1, 2] > 0.99
    with pytest.raises(InputError, match="constant"):
        fit_gmm(np.zeros(100), 2)


def test_gmm_threshold_baseline_finds_the_bright_structures() -> None:
    image, truth = synthetic_image_2d(128, seed=0)
    labels = segment_image_gmm(image)
    assert labels.dtype == np.uint16 and set(np.unique(labels)) == {1, 2}
    bright = (truth == 2) | (truth == 4)  # disc (0.75) and blob (0.95): the brightest component
    d = float(dice(labels == 2, bright))
    assert d > 0.7 and d > random_hint_dice(2, bright) + 0.4, d
    dark = segment_image_gmm(image, component="darkest")
    assert dice(dark == 2, truth == 5) > 0.8  # the dark ellipse
    p = foreground_probability(image)
    assert p.shape == truth.shape and 0.0 <= p.min() and p.max() <= 1.0
    rgb, truth_rgb = synthetic_image_2d(64, seed=1, rgb=True)  # a 3-D mixture on RGB works the same way
    assert dice(segment_image_gmm(rgb) == 2, (truth_rgb == 2) | (truth_rgb == 4)) > 0.6
