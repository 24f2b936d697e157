"""The CUTS encoder (paper supplement A, Table S1) and its patch reconstruction head.

`CUTSEncoder`: 4 x [Conv2d 5x5 'same' with replicate padding, BatchNorm2d, LeakyReLU(0.01)], channels
C -> 16 -> 32 -> 64 -> d (d = 128), no pooling, so every pixel gets one d-dimensional embedding of the
"pixel-centred patch" around it. The receptive field is 17 x 17 (4 layers x 2 px radius = 8 px each side).

`PatchReconHead`: MLP d -> C*25 -> C*25 (LeakyReLU between), reshaped to the C x 5 x 5 patch around the pixel;
it only exists during training (the reconstruction objective), the saved model keeps the encoder alone.

`ClusterHead`: a 1x1 convolution from the embeddings to K cluster logits (softmax outside), the "g" of the
boundary-aware infomax objective and the pixel classifier of CGC; a model trained with such an objective
keeps it (`TrainedModel.cluster_head`, saved in the same safetensors file).
"""

from __future__ import annotations

import torch
from torch import nn

#: Channel widths of the four convolution blocks before the final embedding width (Table S1).
HIDDEN_CHANNELS = (16, 32, 64)
KERNEL_SIZE = 5
#: Pixels each side of a pixel that can influence its embedding: 4 layers x (5 // 2).
RECEPTIVE_RADIUS = 4 * (KERNEL_SIZE // 2)
#: Side of the reconstructed patch (the paper's p for the reconstruction target).
PATCH_SIZE = 5


class CUTSEncoder(nn.Module):
    """(B, C, H, W) -> (B, embed_dim, H, W): one embedding per pixel, no pooling."""

    def __init__(self, in_channels: int, embed_dim: int = 128) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError("in_channels must be >= 1")
        self.in_channels = int(in_channels)
        self.embed_dim = int(embed_dim)
        widths = (self.in_channels, *HIDDEN_CHANNELS, self.embed_dim)
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [
                nn.Conv2d(c_in, c_out, KERNEL_SIZE, padding=KERNEL_SIZE // 2, padding_mode="replicate"),
                nn.BatchNorm2d(c_out),
                nn.LeakyReLU(0.01),
            ]
        self.layers = nn.Sequential(*layers)

    @property
    def receptive_field(self) -> int:
        return 2 * RECEPTIVE_RADIUS + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class PatchReconHead(nn.Module):
    """(N, embed_dim) -> (N, C, 5, 5): the patch around a pixel, reconstructed from its embedding."""

    def __init__(self, in_channels: int, embed_dim: int = 128, patch_size: int = PATCH_SIZE) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        self.patch_size = int(patch_size)
        width = self.in_channels * self.patch_size**2
        self.mlp = nn.Sequential(nn.Linear(embed_dim, width), nn.LeakyReLU(0.01), nn.Linear(width, width))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.mlp(z)
        return out.reshape(*z.shape[:-1], self.in_channels, self.patch_size, self.patch_size)


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
