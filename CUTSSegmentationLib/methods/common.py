"""What the peer methods share with the engine: the cluster head, its map, one-level hierarchies, scaling.

- `ClusterHead`: a 1x1 convolution from the per-pixel embeddings to K cluster logits (softmax outside), the
  "g" of the boundary-aware infomax paper and the pixel classifier of CGC. A model trained with such an
  objective keeps it (`TrainedModel.cluster_head`, saved in the same safetensors file).
- `cluster_head_map`: the single-granularity label map it gives (argmax cluster + 1, uint16), computed from
  the same slice-wise embeddings `embedding.iter_slice_embeddings` produces (same normalisation, tiling).
- `single_level_hierarchy`: a label map from a per-image method (S3-Net, atlas transfer, GMM) as a
  `Hierarchy` with one level, so `cli.write_segmentation_outputs` writes the same files for every method:
  ``hierarchy.npz`` (one level; ``atom_map`` = the labels - 1, a one-row ``merge_tree``), ``persistent.nrrd``
  (= the map), ``segmentation.seg.nrrd`` and ``levels.png``.
- `normalised_2d`: an `ImageData` slice scaled to [-1, 1] the engine's way, as a (1, C, H, W) tensor.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..hierarchy import Hierarchy, smallest_uint
from ..imagedata import ImageData
from ..normalization import choose_normalisation, normalise


class ClusterHead(nn.Module):
    """(B, D, H, W) embeddings -> (B, K, H, W) cluster logits: one 1x1 convolution."""

    def __init__(self, embed_dim: int, n_clusters: int) -> None:
        super().__init__()
        if n_clusters < 2:
            raise ValueError("a cluster head needs at least 2 clusters")
        self.embed_dim = int(embed_dim)
        self.n_clusters = int(n_clusters)
        self.conv = nn.Conv2d(self.embed_dim, self.n_clusters, kernel_size=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv(z)


def cluster_head_map(model, image: ImageData, device: Union[str, torch.device] = "cpu") -> np.ndarray:
    """The model's cluster-head segmentation of `image`: argmax cluster + 1, uint16, `image.spatial_shape`.

    Raises `InputError` when the model has no cluster head (a CUTS-objective model).
    """
    from ..embedding import iter_slice_embeddings

    head = getattr(model, "cluster_head", None)
    if head is None:
        raise InputError("this model has no cluster head (it was trained with the CUTS objective)")
    weight = head.conv.weight.detach().to("cpu", torch.float32).reshape(head.n_clusters, -1).numpy()
    bias = head.conv.bias.detach().to("cpu", torch.float32).numpy()
    n_z, h, w, _ = image.array.shape
    out = np.empty((n_z, h * w), dtype=smallest_uint(head.n_clusters))
    for z, emb in iter_slice_embeddings(model, image, device=device, dtype=np.float32, l2_normalise=False):
        out[z] = (emb @ weight.T + bias).argmax(axis=1) + 1
    return out.reshape(image.spatial_shape)


def relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..n in increasing order of their old values (uint16)."""
    values, inverse = np.unique(np.asarray(labels), return_inverse=True)
    return (inverse.reshape(np.shape(labels)) + 1).astype(smallest_uint(len(values)))


def single_level_hierarchy(
    labels: np.ndarray, image: ImageData, info: Optional[dict[str, Any]] = None
) -> Hierarchy:
    """A label map (values >= 1, `image.spatial_shape`) as a one-level hierarchy; see the module docstring."""
    labels = np.asarray(labels)
    if labels.shape != tuple(image.spatial_shape):
        raise InputError(f"label map shape {labels.shape} differs from the image's {tuple(image.spatial_shape)}")
    if labels.size and labels.min() < 1:
        raise InputError("a one-level hierarchy needs labels >= 1 (0 means 'no label')")
    top = int(labels.max()) if labels.size else 1
    dtype = smallest_uint(top)
    levels = labels.astype(dtype)[None]
    atom_map = (labels.astype(np.int64) - 1).astype(smallest_uint(max(top - 1, 0)))
    merge_tree = np.arange(top, dtype=np.int64)[None]
    n_present = int(len(np.unique(labels)))
    return Hierarchy(
        levels=levels,
        n_clusters=np.asarray([n_present]),
        level_steps=np.asarray([0]),
        atom_map=atom_map,
        merge_tree=merge_tree,
        persistent=levels[0].copy(),
        geometry=image.geometry,
        is_2d=image.is_2d,
        info=dict(info or {}),
    )


def normalised_2d(image: ImageData, z: int = 0, grey: bool = False) -> torch.Tensor:
    """Slice `z` of `image` scaled to [-1, 1] as the engine does (uint8: x/255*2-1, else percentiles),
    as a (1, C, H, W) float32 tensor; ``grey=True`` averages the channels to one."""
    mode = choose_normalisation(image)
    arr = normalise(image, mode)[z]  # (H, W, C)
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(arr, -1, 0)))[None].float()
    return x.mean(dim=1, keepdim=True) if grey else x


def require_2d(image: ImageData, method: str) -> None:
    if not image.is_2d and image.array.shape[0] != 1:
        n = image.array.shape[0]
        raise InputError(f"--method {method} works on 2D images; this input is a volume of {n} slices")
