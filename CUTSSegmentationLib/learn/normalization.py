"""Scaling image intensities to the encoder's input range [-1, 1].

The design, its sources and the choices made: docs/architecture.md, section `learn/normalization.py`.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from ..core.errors import InputError
from ..core.imagedata import ImageData

MODES = ("uint8", "percentile")
LOW_PERCENTILE = 0.5
HIGH_PERCENTILE = 99.5
#: Percentiles of very large volumes are estimated from a strided subsample of about this many values.
_PERCENTILE_SAMPLE = 4_000_000


def choose_normalization(image: ImageData) -> str:
    """ "uint8" for pixels stored as 8-bit (the paper's x/255*2-1), "percentile" for everything else."""
    return "uint8" if (image.source_dtype or "").lower() == "uint8" else "percentile"


def choose_normalization_for(images: Sequence[ImageData]) -> str:
    """One mode for a training set: "uint8" only if every image is 8-bit, else "percentile"."""
    modes = {choose_normalization(im) for im in images}
    return "uint8" if modes == {"uint8"} else "percentile"


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InputError(f"unknown normalisation {mode!r} (use one of {', '.join(MODES)})")
    return mode


def compute_params(image: ImageData, mode: str) -> Optional[dict[str, list[float]]]:
    """The numbers `normalize` needs for this image: None for "uint8", per-channel low/high for "percentile"."""
    if _check_mode(mode) == "uint8":
        return None
    arr = image.array
    channels = arr.shape[-1]
    flat = arr.reshape(-1, channels)
    if flat.shape[0] > _PERCENTILE_SAMPLE:
        flat = flat[:: int(np.ceil(flat.shape[0] / _PERCENTILE_SAMPLE))]
    low, high = np.percentile(flat, [LOW_PERCENTILE, HIGH_PERCENTILE], axis=0)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        name = image.source or "the image"
        raise InputError(f"{name} contains NaN or infinite values; cannot normalize it")
    return {"low": [float(v) for v in low], "high": [float(v) for v in high]}


def apply_normalization(array: np.ndarray, mode: str, params: Optional[dict[str, Any]]) -> np.ndarray:
    """Scale any (..., C) array (a whole volume, a slice, a crop) with precomputed params; float32 out."""
    if _check_mode(mode) == "uint8":
        return (np.asarray(array, dtype=np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)).astype(
            np.float32, copy=False
        )
    if params is None:
        raise ValueError("percentile normalisation needs params (compute_params)")
    low = np.asarray(params["low"], dtype=np.float32)
    high = np.asarray(params["high"], dtype=np.float32)
    if low.shape[0] != array.shape[-1]:
        raise InputError(f"normalisation parameters are for {low.shape[0]} channel(s), the image has {array.shape[-1]}")
    span = high - low
    flat = span <= 1e-12 * np.maximum(1.0, np.abs(high))
    scale = np.where(flat, np.float32(0.0), np.float32(2.0) / np.where(flat, np.float32(1.0), span))
    # A constant channel maps to 0 (the middle of the range) rather than dividing by zero.
    offset = np.where(flat, np.float32(0.0), np.float32(-1.0))
    out = (np.asarray(array, dtype=np.float32) - low) * scale + offset
    np.clip(out, -1.0, 1.0, out=out)
    return out.astype(np.float32, copy=False)


def normalize(image: ImageData, mode: str, params: Optional[dict[str, Any]] = None) -> np.ndarray:
    """The whole image scaled for the encoder: (Z, Y, X, C) float32 in [-1, 1] ("uint8" mode: 0..255 -> -1..1).

    For "percentile", ``params=None`` computes this image's own percentiles (the default, see the module
    docstring); pass a model card's ``params`` to use the training set's fixed scaling instead.
    """
    if _check_mode(mode) == "percentile" and params is None:
        params = compute_params(image, mode)
    return apply_normalization(image.array, mode, params)


def card_entry(
    images: Sequence[ImageData],
    mode: str,
    per_image: bool = True,
    all_params: Optional[Sequence[Optional[dict[str, list[float]]]]] = None,
) -> dict[str, Any]:
    """What training records in the model card: mode, percentiles, per-image flag, training-set params.

    `all_params` are the images' own `compute_params` results when the caller already has them.
    """
    entry: dict[str, Any] = {"mode": _check_mode(mode), "per_image": bool(per_image)}
    if mode == "percentile":
        if all_params is None:
            all_params = [compute_params(im, mode) for im in images]
        entry["low_percentile"] = LOW_PERCENTILE
        entry["high_percentile"] = HIGH_PERCENTILE
        entry["params"] = {
            "low": [float(v) for v in np.median([p["low"] for p in all_params], axis=0)],  # type: ignore[index]
            "high": [float(v) for v in np.median([p["high"] for p in all_params], axis=0)],  # type: ignore[index]
        }
    return entry


def params_for_inference(entry: dict[str, Any], image: ImageData) -> Optional[dict[str, Any]]:
    """Params to scale `image` the way the model was trained: its own percentiles, or the card's fixed ones."""
    mode = _check_mode(entry.get("mode", ""))
    if mode == "uint8":
        return None
    if entry.get("per_image", True) or "params" not in entry:
        return compute_params(image, mode)
    return entry["params"]
