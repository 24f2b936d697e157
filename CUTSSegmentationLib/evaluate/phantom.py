"""Synthetic images with known structures, for tests, benchmarks and the demo.

Real data says whether CUTS is useful; synthetic data says whether the code is right. Each generator returns
an `ImageData` plus its ground-truth label map (uint16, label 1 = background, one label per structure, no 0),
so a test can measure how well a segmentation recovers structures that are there by construction. The
structures differ by mean intensity and by texture (smooth field, stripes, flat), which is what the CUTS
encoder must learn to tell apart. Everything is deterministic for a given seed; the seed jitters positions,
sizes, orientations, textures and noise.

The 3D phantom has anisotropic spacing, a non-zero origin and (optionally) an oblique direction, so geometry
handling (writers, seeds in RAS, Slicer overlays) is exercised by the same data.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from ..core.imagedata import Geometry, ImageData

#: Ground-truth labels of `synthetic_image_2d`.
LABELS_2D = {1: "background", 2: "disc", 3: "ring", 4: "bright blob", 5: "dark ellipse"}
#: Ground-truth labels of `synthetic_phantom_3d`.
LABELS_3D = {1: "air", 2: "skull", 3: "brain", 4: "ventricles", 5: "tumour"}

#: Grey level (0..1) and RGB colour of each 2D structure; means are far apart so structures are separable.
_GREY_2D = {1: 0.35, 2: 0.75, 3: 0.55, 4: 0.95, 5: 0.08}
_RGB_2D = {
    1: (0.60, 0.35, 0.20),  # fundus-like orange-brown background
    2: (0.90, 0.80, 0.30),
    3: (0.30, 0.65, 0.35),
    4: (1.00, 0.97, 0.92),
    5: (0.12, 0.05, 0.15),
}
#: Stored intensity (CT-like int16 units) of each 3D structure.
_VALUES_3D = {1: 0.0, 2: 900.0, 3: 300.0, 4: 60.0, 5: 560.0}

DEFAULT_SPACING_3D = (0.9, 0.9, 2.5)
DEFAULT_ORIGIN_3D = (-40.0, -45.0, 12.5)


# -------------------------------------------------------------------------------------------- helpers


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x) in [0, 1) so shapes scale with `size`."""
    coords = (np.arange(size, dtype=np.float64) + 0.5) / size
    return np.meshgrid(coords, coords, indexing="ij")


def _smooth_field(rng: np.random.Generator, shape: Sequence[int], sigma: Sequence[float]) -> np.ndarray:
    """Zero-mean smooth random texture scaled to [-1, 1] (tissue-like low-frequency variation)."""
    field = ndimage.gaussian_filter(rng.standard_normal(tuple(shape)), sigma=sigma, mode="wrap")
    field -= field.mean()
    peak = np.abs(field).max()
    return field / peak if peak > 0 else field


def _jitter(rng: np.random.Generator, value: float, spread: float) -> float:
    return float(value + rng.uniform(-spread, spread))


def _disc(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, radius: float) -> np.ndarray:
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2


def _blob(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, radius: float, phase: float) -> np.ndarray:
    """A disc whose radius wobbles with angle: an irregular but compact bright lesion."""
    angle = np.arctan2(yy - cy, xx - cx)
    wobble = radius * (1.0 + 0.25 * np.sin(3.0 * angle + phase))
    return np.hypot(yy - cy, xx - cx) <= wobble


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ay: float, ax: float, theta: float) -> np.ndarray:
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    return (u / ax) ** 2 + (v / ay) ** 2 <= 1.0


# ------------------------------------------------------------------------------------------------- 2D


def _labels_2d(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth with one structure per quadrant (jittered, never touching); also the grid."""
    yy, xx = _grid(size)
    labels = np.ones((size, size), dtype=np.uint16)
    labels[_disc(yy, xx, _jitter(rng, 0.28, 0.03), _jitter(rng, 0.28, 0.03), _jitter(rng, 0.15, 0.02))] = 2
    cy, cx, outer = _jitter(rng, 0.28, 0.03), _jitter(rng, 0.72, 0.03), _jitter(rng, 0.17, 0.015)
    ring = _disc(yy, xx, cy, cx, outer) & ~_disc(yy, xx, cy, cx, outer * 0.6)
    labels[ring] = 3
    labels[_blob(yy, xx, _jitter(rng, 0.72, 0.03), _jitter(rng, 0.28, 0.03), 0.1, rng.uniform(0, 2 * np.pi))] = 4
    theta = rng.uniform(0, np.pi)
    labels[_ellipse(yy, xx, _jitter(rng, 0.72, 0.03), _jitter(rng, 0.72, 0.03), 0.09, 0.16, theta)] = 5
    return labels, yy, xx


def _texture_2d(labels: np.ndarray, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative texture: smooth field on the background, stripes on the ring, flat elsewhere."""
    size = labels.shape[0]
    texture = np.zeros(labels.shape, dtype=np.float64)
    background = _smooth_field(rng, labels.shape, sigma=size / 24.0)
    texture[labels == 1] = 0.22 * background[labels == 1]
    stripes = np.sin(2 * np.pi * (xx + yy) * size / rng.uniform(6.0, 9.0))
    texture[labels == 3] = 0.15 * stripes[labels == 3]
    return texture


def synthetic_image_2d(
    size: int = 128, seed: int = 0, noise: float = 0.04, rgb: bool = False
) -> tuple[ImageData, np.ndarray]:
    """A 2D image with five known structures and its ground truth (uint16 (Y, X), labels in `LABELS_2D`).

    Background (smooth texture), a disc, a striped ring (with background inside it), an irregular bright
    blob and a dark rotated ellipse, plus Gaussian noise of std `noise` (fraction of full range). Pixels
    are uint8 values stored as float32 with `source_dtype="uint8"`, exactly like a PNG read from disk.
    """
    if size < 16:
        raise ValueError("size must be at least 16 pixels for the structures to exist")
    rng = np.random.default_rng(seed)
    labels, yy, xx = _labels_2d(size, rng)
    texture = _texture_2d(labels, yy, xx, rng)
    table = _RGB_2D if rgb else {k: (v,) for k, v in _GREY_2D.items()}
    colours = np.zeros((int(labels.max()) + 1, len(table[1])), dtype=np.float64)
    for label, colour in table.items():
        colours[label] = colour
    values = colours[labels] * (1.0 + texture[..., np.newaxis])
    values += rng.normal(0.0, noise, size=values.shape)
    pixels = np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.float32)
    image = ImageData(array=pixels[np.newaxis], is_2d=True, source=f"synthetic-2d(seed={seed})", source_dtype="uint8")
    return image, labels


# ------------------------------------------------------------------------------------------------- 3D


def _physical_grid(shape_zyx: Sequence[int], spacing_xyz: Sequence[float]) -> tuple[np.ndarray, ...]:
    """Voxel centres in millimetres relative to the volume centre, as (z, y, x) arrays."""
    axes = []
    for n, s in zip(shape_zyx, (spacing_xyz[2], spacing_xyz[1], spacing_xyz[0])):
        axes.append((np.arange(n, dtype=np.float64) - (n - 1) / 2.0) * s)
    return tuple(np.meshgrid(*axes, indexing="ij"))


def _ellipsoid(grid: tuple[np.ndarray, ...], centre_zyx: Sequence[float], semi_zyx: Sequence[float]) -> np.ndarray:
    total = np.zeros(grid[0].shape, dtype=np.float64)
    for coord, c, a in zip(grid, centre_zyx, semi_zyx):
        total += ((coord - c) / a) ** 2
    return total <= 1.0


def _labels_3d(shape: Sequence[int], spacing: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Air, skull shell, brain, two ventricle-like ellipsoids (one label) and a tumour sphere, in mm."""
    grid = _physical_grid(shape, spacing)
    extent = [n * s for n, s in zip(shape, (spacing[2], spacing[1], spacing[0]))]
    head = [0.42 * extent[0], 0.46 * extent[1], 0.42 * extent[2]]
    labels = np.ones(tuple(shape), dtype=np.uint16)
    labels[_ellipsoid(grid, (0, 0, 0), head)] = 2
    brain = [0.86 * a for a in head]
    labels[_ellipsoid(grid, (0, 0, 0), brain)] = 3
    vent = [0.30 * brain[0], 0.32 * brain[1], 0.10 * brain[2]]
    for side in (-1.0, 1.0):
        centre = (
            _jitter(rng, 0.0, 0.05 * brain[0]),
            _jitter(rng, -0.05 * brain[1], 0.04 * brain[1]),
            side * 0.2 * brain[2],
        )
        labels[_ellipsoid(grid, centre, vent)] = 4
    radius = 0.2 * min(brain[1], brain[2])
    side = 1.0 if rng.uniform() < 0.5 else -1.0
    tumour_centre = (
        _jitter(rng, 0.1 * brain[0], 0.05 * brain[0]),
        _jitter(rng, 0.5 * brain[1], 0.05 * brain[1]),
        side * _jitter(rng, 0.35 * brain[2], 0.05 * brain[2]),
    )
    labels[_ellipsoid(grid, tumour_centre, (radius, radius, radius))] = 5
    return labels


def synthetic_phantom_3d(
    shape: Sequence[int] = (32, 96, 96),
    seed: int = 0,
    spacing: Sequence[float] = DEFAULT_SPACING_3D,
    origin: Sequence[float] = DEFAULT_ORIGIN_3D,
    direction: Optional[Sequence[float]] = None,
    noise: float = 15.0,
) -> tuple[ImageData, np.ndarray]:
    """A head-like CT phantom `(Z, Y, X)` and its ground truth (uint16, labels in `LABELS_3D`).

    Shapes are built in millimetres, so they stay round with anisotropic `spacing` (x, y, z). Intensities
    are CT-like integers (`source_dtype="int16"`): air 0, skull 900, textured brain ~300, dark ventricles
    60, bright tumour 560, plus Gaussian noise of std `noise`. `direction` (row-major 3x3, LPS) defaults
    to identity; pass an oblique one to exercise rotated geometry.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 4:
        raise ValueError(f"shape must be (Z, Y, X) with every size >= 4, got {shape}")
    rng = np.random.default_rng(seed)
    labels = _labels_3d(shape, spacing, rng)
    values = np.zeros(shape, dtype=np.float64)
    for label, value in _VALUES_3D.items():
        values[labels == label] = value
    brain_texture = _smooth_field(rng, shape, sigma=(1.0, 4.0, 4.0))
    values[labels == 3] += 40.0 * brain_texture[labels == 3]
    values += rng.normal(0.0, noise, size=shape)
    pixels = np.round(np.clip(values, -1024, 3071)).astype(np.float32)
    geometry = Geometry(
        spacing=tuple(float(s) for s in spacing),
        origin=tuple(float(o) for o in origin),
        direction=tuple(float(d) for d in (direction if direction is not None else np.eye(3).reshape(-1))),
    )
    image = ImageData(
        array=pixels[..., np.newaxis],
        geometry=geometry,
        is_2d=False,
        source=f"synthetic-3d(seed={seed})",
        source_dtype="int16",
    )
    return image, labels


def oblique_direction(angle_degrees: float = 20.0) -> tuple[float, ...]:
    """Row-major 3x3 rotation about the z axis then x axis: a convenient oblique `direction` for tests."""
    a = np.deg2rad(angle_degrees)
    rz = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a / 2), -np.sin(a / 2)], [0.0, np.sin(a / 2), np.cos(a / 2)]])
    return tuple(float(v) for v in (rx @ rz).reshape(-1))
