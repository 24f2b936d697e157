"""The single-granularity label map of a model with a cluster head (objectives infomax, IIC, CGC).

It uses the same slice-wise embeddings as condensation (same normalisation, tiling), so the map and the
hierarchy of one model describe the same pixels.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch

from ..core.errors import InputError
from ..core.imagedata import ImageData
from ..core.label_dtypes import smallest_uint
from .embedding import iter_slice_embeddings


def cluster_head_map(model, image: ImageData, device: Union[str, torch.device] = "cpu") -> np.ndarray:
    """The model's cluster-head segmentation of `image`: argmax cluster + 1, uint16, `image.spatial_shape`.

    Raises `InputError` when the model has no cluster head (a CUTS-objective model).
    """
    head = getattr(model, "cluster_head", None)
    if head is None:
        raise InputError("this model has no cluster head (it was trained with the CUTS objective)")
    weight = head.conv.weight.detach().to("cpu", torch.float32).reshape(head.n_clusters, -1).numpy()
    bias = head.conv.bias.detach().to("cpu", torch.float32).numpy()
    n_z, h, w, _ = image.array.shape
    out = np.empty((n_z, h * w), dtype=smallest_uint(head.n_clusters))
    for z, emb in iter_slice_embeddings(model, image, device=device, dtype=np.float32, l2_normalize=False):
        out[z] = (emb @ weight.T + bias).argmax(axis=1) + 1
    return out.reshape(image.spatial_shape)
