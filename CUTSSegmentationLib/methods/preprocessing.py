"""What every per-image method does to its input first: check it is 2D, scale it the engine's way."""

from __future__ import annotations

import numpy as np
import torch

from ..core.errors import InputError
from ..core.imagedata import ImageData
from ..learn.normalization import choose_normalization, normalize


def normalized_2d(image: ImageData, z: int = 0, gray: bool = False) -> torch.Tensor:
    """Slice `z` of `image` scaled to [-1, 1] as the engine does (uint8: x/255*2-1, else percentiles),
    as a (1, C, H, W) float32 tensor; ``gray=True`` averages the channels to one."""
    mode = choose_normalization(image)
    arr = normalize(image, mode)[z]  # (H, W, C)
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(arr, -1, 0)))[None].float()
    return x.mean(dim=1, keepdim=True) if gray else x


def require_2d(image: ImageData, method: str) -> None:
    if not image.is_2d and image.array.shape[0] != 1:
        n = image.array.shape[0]
        raise InputError(f"--method {method} works on 2D images; this input is a volume of {n} slices")
