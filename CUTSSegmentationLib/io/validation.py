"""Refuse inputs that cannot be segmented (empty, 1D, constant, NaN/Inf, bad geometry) with one clear line.

The same checks run on files, Slicer volumes and synthetic data, so every entry point refuses the same things.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import InputError
from ..core.imagedata import Geometry, ImageData
from .formats import MAX_COMPONENTS


def _name_of(image: ImageData) -> str:
    return image.source if image.source else "image"


def _check_not_empty(array: np.ndarray, name: str) -> None:
    if array.size == 0:
        raise InputError(f"{name}: image is empty (shape {tuple(array.shape)})")


def _check_spatial_dims(array: np.ndarray, name: str) -> None:
    """Refuse lines and single pixels: CUTS needs patches around every pixel, so at least a 2D plane."""
    z, y, x, _ = array.shape
    extents = [s for s in (z, y, x) if s > 1]
    if len(extents) < 2:
        raise InputError(
            f"{name}: image is 1D or a single pixel (Z, Y, X = {z}, {y}, {x}); a 2D image or 3D volume is needed"
        )


def _check_channels(array: np.ndarray, name: str) -> None:
    channels = array.shape[3]
    if channels < 1 or channels > MAX_COMPONENTS:
        raise InputError(f"{name}: {channels} channels per pixel; expected 1 (grey) or 3 (RGB)")


def _check_finite(array: np.ndarray, name: str) -> None:
    """Slice by slice so a large volume does not need a second full-size boolean array."""
    bad = 0
    for plane in array:
        bad += int(plane.size - np.count_nonzero(np.isfinite(plane)))
    if bad:
        raise InputError(f"{name}: {bad} pixel values are NaN or infinite; fix or mask them before segmenting")


def _check_not_constant(array: np.ndarray, name: str) -> None:
    low, high = float(array.min()), float(array.max())
    if low == high:
        raise InputError(f"{name}: image is constant (every pixel is {low:g}): nothing to segment")
    if high - low > float(np.finfo(np.float32).max):
        raise InputError(
            f"{name}: values span {low:g} to {high:g}, too wide for 32-bit arithmetic; rescale the image first"
        )


def check_geometry(geometry: Geometry, name: str) -> None:
    """Refuse a geometry ITK and Slicer cannot place: spacing not finite and positive, origin not finite,
    direction not finite or singular (one `InputError` line naming `name`)."""
    spacing = np.asarray(geometry.spacing, dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"{name}: invalid voxel spacing {tuple(spacing)} (must be positive)")
    direction = geometry.direction_matrix
    if not np.all(np.isfinite(direction)) or abs(np.linalg.det(direction)) < 1e-6:
        raise InputError(f"{name}: invalid orientation (direction matrix is singular)")
    if not np.all(np.isfinite(np.asarray(geometry.origin, dtype=float))):
        raise InputError(f"{name}: invalid origin {tuple(geometry.origin)} (must be finite)")


def validate_image(image: ImageData) -> ImageData:
    """Refuse an image that cannot be segmented, with one clear `InputError` line; return it unchanged.

    Runs on any `ImageData` (files, Slicer volumes, synthetic data) so every entry point refuses the same
    inputs with the same words: empty, 1D, too many channels, NaN/Inf values, constant, bad geometry.

    Parameters
    ----------
    image : ImageData
        The image to check.

    Returns
    -------
    ImageData
        `image` itself.

    Raises
    ------
    InputError
        The first problem found, in one line naming the image.

    Examples
    --------
    >>> import numpy as np
    >>> validate_image(ImageData(np.zeros((1, 8, 8, 1), np.float32), source="blank.png"))
    Traceback (most recent call last):
    ...
    CUTSSegmentationLib.core.errors.InputError: blank.png: image is constant (every pixel is 0): nothing to segment
    """
    array, name = image.array, _name_of(image)
    _check_not_empty(array, name)
    _check_spatial_dims(array, name)
    _check_channels(array, name)
    _check_finite(array, name)
    _check_not_constant(array, name)
    check_geometry(image.geometry, name)
    return image
