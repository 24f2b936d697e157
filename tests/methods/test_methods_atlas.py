"""Atlas transfer (CLMorph, 2D): the registration learns, beats copying the atlas labels, and needs an atlas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from CUTSSegmentationLib.core.errors import InputError
from CUTSSegmentationLib.core.imagedata import ImageData
from CUTSSegmentationLib.evaluate.metrics import dice
from CUTSSegmentationLib.evaluate.phantom import synthetic_image_2d
from CUTSSegmentationLib.learn.transforms import warp
from CUTSSegmentationLib.methods.atlas import (
    integrate_velocity,
    parse_atlas_argument,
    segment_image_atlas,
    train_atlas_registration,
    warp_by_displacement,
)

STRUCTURES = (2, 3, 4, 5)


def moved_atlas(image: ImageData, truth: np.ndarray, degrees: float = 8.0) -> tuple[ImageData, np.ndarray]:
    """The image and its labels rotated and shifted by a known amount: an atlas that needs registering."""
    a = math.radians(degrees)
    theta = torch.tensor([[[math.cos(a), -math.sin(a), 0.08], [math.sin(a), math.cos(a), -0.06]]])
    pixels = torch.from_numpy(image.array[0]).permute(2, 0, 1)[None]
    moved = warp(pixels, theta, padding_mode="border")[0].permute(1, 2, 0).numpy().round()
    labels = warp(torch.from_numpy(truth.astype(np.float32))[None, None], theta, mode="nearest", padding_mode="border")
    atlas = ImageData(moved[None].astype(np.float32), is_2d=True, source="atlas", source_dtype="uint8")
    return atlas, labels[0, 0].numpy().astype(np.uint16)


def test_velocity_integration_of_a_constant_field_is_a_shift() -> None:
    v = torch.zeros(1, 2, 16, 16)
    v[:, 1] = 2.0  # 2 px in x
    disp = integrate_velocity(v)
    assert torch.allclose(disp[..., 4:-4, 4:-4], v[..., 4:-4, 4:-4], atol=1e-4)
    img = torch.arange(16.0).view(1, 1, 1, 16).expand(1, 1, 16, 16)
    assert torch.allclose(warp_by_displacement(img, disp)[..., 4:-4, 4:-4], img[..., 4:-4, 6:-2], atol=1e-4)


def test_registration_learns_and_beats_copying_the_atlas() -> None:
    image, truth = synthetic_image_2d(64, seed=0)
    atlas, atlas_labels = moved_atlas(image, truth)
    reg = train_atlas_registration([image], atlas, iterations=60, seed=0)
    h = reg.loss_history
    assert len(h) == 60 and np.mean(h[-10:]) < 0.8 * np.mean(h[:10]), h
    labels = segment_image_atlas(image, atlas, atlas_labels, registration=reg)
    assert labels.shape == truth.shape and labels.dtype == np.uint16
    values = np.unique(atlas_labels)  # atlas label v -> 1 + its index among the atlas's values
    assert set(np.unique(labels)) <= set(range(1, len(values) + 1))
    transferred = [dice(labels == np.searchsorted(values, s) + 1, truth == s) for s in STRUCTURES]
    copied = [dice(atlas_labels == s, truth == s) for s in STRUCTURES]
    assert np.mean(transferred) > np.mean(copied) + 0.1, (transferred, copied)
    rng = np.random.default_rng(0)
    noise = rng.integers(1, len(values) + 1, truth.shape)
    chance = [dice(noise == np.searchsorted(values, s) + 1, truth == s) for s in STRUCTURES]
    assert np.mean(transferred) > np.mean(chance) + 0.5


def test_atlas_argument_parsing(tmp_path) -> None:
    from CUTSSegmentationLib.io.writing import write_png

    image, truth = synthetic_image_2d(32, seed=2)
    write_png(image.array[0].astype(np.uint8), tmp_path / "atlas.png")
    np.save(tmp_path / "atlas.npy", truth)
    atlas, labels = parse_atlas_argument(f"{tmp_path / 'atlas.png'},{tmp_path / 'atlas.npy'}")
    assert atlas.array.shape[1:3] == (32, 32) and np.array_equal(labels, truth)
    with pytest.raises(InputError, match="needs one labelled reference"):
        parse_atlas_argument(None)
    with pytest.raises(InputError, match="IMAGE,LABELS"):
        parse_atlas_argument(str(tmp_path / "atlas.png"))
    np.save(tmp_path / "small.npy", truth[:16])
    with pytest.raises(InputError, match="atlas labels"):
        parse_atlas_argument(f"{tmp_path / 'atlas.png'},{tmp_path / 'small.npy'}")
    with pytest.raises(InputError, match="not found"):
        parse_atlas_argument(f"{tmp_path / 'atlas.png'},{tmp_path / 'missing.npy'}")
