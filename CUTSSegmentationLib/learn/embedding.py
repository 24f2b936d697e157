"""Per-pixel embeddings from a trained encoder, slice by slice and memory-bounded.

A 3D volume is never put on the device whole: slices go through the encoder in small batches
(``batch_slices``, chosen from a pixel budget by default), and a slice larger than the budget is cut into
tiles with an 8 px halo (the encoder's receptive radius), which gives exactly the embeddings of the whole
slice (eval-mode BatchNorm is per pixel; replicate padding only matters at the real image border). Inputs
are scaled as the model card says (`normalization.params_for_inference`).

`iter_slice_embeddings` yields ``(z, (Y*X, D) array)`` per slice (float16 by default, to halve the memory of
what the caller keeps); `compute_embeddings` collects all pixels in (Z, Y, X) raster order, L2-normalised by
default as the authors feed them to diffusion condensation.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..core.device import is_accelerator, resolve_device
from ..core.errors import ResourceError
from ..core.imagedata import ImageData
from ..core.progress import CancelToken, ProgressCallback, check_cancel, no_progress
from ..io.memory import available_memory_bytes
from .encoder import RECEPTIVE_RADIUS
from .modelfile import TrainedModel, check_compatible
from .normalization import apply_normalization, params_for_inference

#: Pixels per encoder forward pass (peak activation memory is about 1.5 KB per pixel).
CPU_PIXEL_BUDGET = 1 << 18
GPU_PIXEL_BUDGET = 1 << 21


def _pixel_budget(device: torch.device) -> int:
    return GPU_PIXEL_BUDGET if is_accelerator(device) else CPU_PIXEL_BUDGET


def _model_normalization(model: TrainedModel) -> dict:
    entry = model.card.get("normalisation")
    if isinstance(entry, dict):
        return entry
    return {"mode": str(entry or "percentile"), "per_image": True}


def _embed_batch(encoder: torch.nn.Module, x: torch.Tensor, budget: int) -> torch.Tensor:
    """x (B, C, Y, X) on the device -> (B, D, Y, X); a slice larger than the pixel budget is tiled."""
    b, _, h, w = x.shape
    if h * w <= budget:
        return encoder(x)
    halo = RECEPTIVE_RADIUS
    core = max(16, int(np.sqrt(budget)) - 2 * halo)
    out = None
    for i in range(b):
        for y0 in range(0, h, core):
            for x0 in range(0, w, core):
                y1, x1 = min(h, y0 + core), min(w, x0 + core)
                ya, xa = max(0, y0 - halo), max(0, x0 - halo)
                yb, xb = min(h, y1 + halo), min(w, x1 + halo)
                tile = encoder(x[i : i + 1, :, ya:yb, xa:xb])
                if out is None:
                    out = torch.empty((b, tile.shape[1], h, w), dtype=tile.dtype, device=tile.device)
                out[i, :, y0:y1, x0:x1] = tile[0, :, y0 - ya : y1 - ya, x0 - xa : x1 - xa]
    assert out is not None
    return out


def iter_slice_embeddings(
    model: TrainedModel,
    image: ImageData,
    device: Union[str, torch.device] = "auto",
    batch_slices: Optional[int] = None,
    dtype: np.dtype = np.float16,
    progress: ProgressCallback = no_progress,
    cancel: Optional[CancelToken] = None,
    l2_normalize: bool = False,
    normalization_params: Optional[dict] = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(z, embeddings)`` for every slice z of `image`, embeddings (Y*X, D) in raster (y, x) order.

    The model's encoder is moved to `device` (in place) and run in eval mode under `torch.inference_mode`.
    `batch_slices` slices go through the encoder at once (default: as many as fit the pixel budget).
    `normalization_params` replace the ones taken from `image` (a crop is scaled as its whole volume is).
    """
    check_compatible(model, image)
    dev = resolve_device(device)
    encoder = model.encoder
    encoder.eval()
    memory_format = torch.channels_last
    encoder.to(device=dev, memory_format=memory_format)
    entry = _model_normalization(model)
    mode = entry.get("mode", "percentile")
    params = normalization_params if normalization_params is not None else params_for_inference(entry, image)
    n_z, h, w, _ = image.array.shape
    budget = _pixel_budget(dev)
    if batch_slices is None:
        batch_slices = max(1, budget // (h * w))
    batch_slices = max(1, int(batch_slices))
    out_dtype = torch.float16 if np.dtype(dtype) == np.float16 else torch.float32
    progress("embed", 0.0, f"embedding {n_z} slice(s) of {h}x{w}")
    with torch.inference_mode():
        for z0 in range(0, n_z, batch_slices):
            check_cancel(cancel)
            z1 = min(n_z, z0 + batch_slices)
            arr = apply_normalization(image.array[z0:z1], mode, params)  # (b, Y, X, C)
            x = torch.from_numpy(np.ascontiguousarray(arr)).to(dev).permute(0, 3, 1, 2)
            x = x.contiguous(memory_format=memory_format)
            emb = _embed_batch(encoder, x, budget)  # (b, D, Y, X)
            if l2_normalize:
                emb = F.normalize(emb, dim=1)
            emb = emb.permute(0, 2, 3, 1).to(out_dtype).cpu().numpy()  # (b, Y, X, D)
            if emb.dtype != np.dtype(dtype):
                emb = emb.astype(dtype)
            for k in range(z1 - z0):
                yield z0 + k, emb[k].reshape(h * w, -1)
            progress("embed", z1 / n_z, f"slice {z1}/{n_z}")


def compute_embeddings(
    model: TrainedModel,
    image: ImageData,
    device: Union[str, torch.device] = "auto",
    batch_slices: Optional[int] = None,
    l2_normalize: bool = True,
    dtype: np.dtype = np.float32,
    progress: ProgressCallback = no_progress,
    cancel: Optional[CancelToken] = None,
) -> np.ndarray:
    """All pixels' embeddings, (N, D) with N = Z*Y*X in (Z, Y, X) raster order; L2-normalized by default.

    Parameters
    ----------
    model : TrainedModel
        A trained encoder with its card (normalization).
    image : ImageData
        The image to embed, with the model's channel count.
    device : str or torch.device
        Where the encoder runs ("auto": CUDA, then MPS, then CPU).
    batch_slices : int, optional
        Slices per encoder call (default: sized for the device).
    l2_normalize : bool
        Unit-length rows, as condensation expects.
    dtype : numpy.dtype
        Type of the returned array.
    progress, cancel
        Progress callback and cancel token.

    Returns
    -------
    numpy.ndarray
        (N, D) embeddings.

    Raises
    ------
    ResourceError
        Before allocating, when the result would not fit in the available memory.

    Examples
    --------
    >>> embeddings = compute_embeddings(model, image, device="cpu")  # doctest: +SKIP
    >>> embeddings.shape == (image.n_pixels, model.embed_dim)  # doctest: +SKIP
    True
    """
    n, d = image.n_pixels, model.embed_dim
    need = n * d * np.dtype(dtype).itemsize
    avail = available_memory_bytes()
    if avail is not None and need > avail:
        raise ResourceError(
            f"embeddings of {n} pixels x {d} would need {need / 2**30:.1f} GiB but only {avail / 2**30:.1f} GiB "
            "is available; crop the image to a region of interest or downsample it"
        )
    out = np.empty((n, d), dtype=dtype)
    per_slice = n // image.array.shape[0]
    for z, emb in iter_slice_embeddings(
        model, image, device, batch_slices, dtype=dtype, progress=progress, cancel=cancel, l2_normalize=l2_normalize
    ):
        out[z * per_slice : (z + 1) * per_slice] = emb
    return out


def embed_box(
    model: TrainedModel,
    image: ImageData,
    box: tuple[slice, slice, slice],
    device: Union[str, torch.device] = "auto",
    dtype: np.dtype = np.float16,
) -> np.ndarray:
    """The embeddings of the voxels in `box` (z, y, x slices of a volume), (n, D) raster order, L2-normalised.

    Equal to the rows of `compute_embeddings(model, image)` that fall in the box, at the cost of the box plus
    the encoder's receptive radius around it in-plane (the encoder works slice by slice), scaled with the whole
    image's intensity statistics.

    Examples
    --------
    >>> box = (slice(10, 20), slice(40, 90), slice(40, 90))
    >>> embed_box(model, volume, box, device="cpu").shape == (10 * 50 * 50, model.embed_dim)  # doctest: +SKIP
    True
    """
    z, y, x = box
    halo = RECEPTIVE_RADIUS
    _, h, w, _ = image.array.shape
    ya, yb = max(0, y.start - halo), min(h, y.stop + halo)
    xa, xb = max(0, x.start - halo), min(w, x.stop + halo)
    crop = replace(image, array=np.ascontiguousarray(image.array[z, ya:yb, xa:xb]))
    params = params_for_inference(_model_normalization(model), image)
    rows = [
        emb.reshape(yb - ya, xb - xa, -1)[y.start - ya : y.stop - ya, x.start - xa : x.stop - xa]
        for _, emb in iter_slice_embeddings(
            model, crop, device, dtype=dtype, l2_normalize=True, normalization_params=params
        )
    ]
    return np.ascontiguousarray(np.stack(rows)).reshape(-1, rows[0].shape[-1])
