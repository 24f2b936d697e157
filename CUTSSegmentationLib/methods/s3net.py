"""S3-Net: per-image self-supervised clustering with large-kernel attention and a deformable convolution.

The design, its sources and the choices made: docs/peer-methods.md, section `methods/s3net.py`.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.device import resolve_device
from ..core.imagedata import ImageData
from ..core.progress import CancelToken, ProgressCallback, check_cancel, no_progress
from ..learn.sampling import make_generator
from ..learn.transforms import random_affine, sobel, valid_mask, warp
from .labels import relabel_consecutive
from .preprocessing import normalized_2d, require_2d

S3_ITERATIONS = 50
S3_LR = 0.36
S3_MOMENTUM = 0.9
S3_LAMBDAS = (1.2, 0.3, 0.3)
S3_CLUSTERS = 32
S3_WIDTH = 16
S3_BLOCKS = 2


class DeformConv2d(nn.Module):
    """3x3 deformable convolution (DCN v1) with offsets from a zero-initialised 3x3 conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.k = int(kernel_size)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, self.k * self.k))
        nn.init.kaiming_uniform_(self.weight.view(out_channels, in_channels, self.k, self.k), a=5**0.5)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.offset = nn.Conv2d(in_channels, 2 * self.k * self.k, self.k, padding=self.k // 2)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        kk = self.k * self.k
        off = self.offset(x).view(b, kk, 2, h, w)  # (dy, dx) per kernel position, in pixels
        r = torch.arange(self.k, device=x.device, dtype=x.dtype) - self.k // 2
        ky, kx = torch.meshgrid(r, r, indexing="ij")
        ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, 1, h, 1)
        xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, 1, w)
        py = ys + ky.reshape(1, kk, 1, 1) + off[:, :, 0]  # (B, kk, H, W)
        px = xs + kx.reshape(1, kk, 1, 1) + off[:, :, 1]
        grid = torch.stack([(2 * px + 1) / w - 1, (2 * py + 1) / h - 1], dim=-1)  # align_corners=False
        sampled = F.grid_sample(
            x, grid.view(b, kk * h, w, 2), mode="bilinear", padding_mode="border", align_corners=False
        ).view(b, c, kk, h, w)
        return torch.einsum("bckhw,ock->bohw", sampled, self.weight) + self.bias.view(1, -1, 1, 1)


class ILKA(nn.Module):
    """Inception large-kernel attention (eq. 1-3): (1x1 conv F) -> sum of DW convs -> DW dilated -> 1x1."""

    def __init__(
        self, channels: int, kernels: tuple[int, ...] = (3, 5, 7), dilated: int = 7, dilation: int = 3
    ) -> None:
        super().__init__()
        self.f = nn.Conv2d(channels, channels, 1)
        self.inception = nn.ModuleList(
            nn.Conv2d(channels, channels, k, padding=k // 2, groups=channels) for k in kernels
        )
        pad = dilation * (dilated // 2)
        self.dw_dilated = nn.Conv2d(channels, channels, dilated, padding=pad, dilation=dilation, groups=channels)
        self.pw = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.f(x)
        inc = sum(conv(f) for conv in self.inception)
        return self.pw(self.dw_dilated(inc)) * f


class S3Block(nn.Module):
    """x -> 1x1 conv(x + I-LKA(x)) -> BatchNorm -> ReLU (skip path, then a 1x1 conv, section 3.1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.attn = ILKA(channels)
        self.proj = nn.Conv2d(channels, channels, 1)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.proj(x + self.attn(x))))


class S3Net(nn.Module):
    """Stem, I-LKA blocks, deformable head (score map S) and the affine-path head."""

    def __init__(
        self, in_channels: int, width: int = S3_WIDTH, n_clusters: int = S3_CLUSTERS, blocks: int = S3_BLOCKS
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(*(S3Block(width) for _ in range(blocks)))
        self.head = nn.Sequential(DeformConv2d(width, n_clusters), nn.BatchNorm2d(n_clusters))
        self.affine_head = nn.Sequential(nn.Conv2d(width, n_clusters, 1), nn.BatchNorm2d(n_clusters))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def spatial_consistency_loss(scores: torch.Tensor) -> torch.Tensor:
    """Eq. 5: mean of |S_x - S_y| + |S_x - S_xy| + |S_y - S_xy| over the Sobel responses of the score map."""
    sx, sy, sd = sobel(scores, "xyd")
    return ((sx - sy).abs() + (sx - sd).abs() + (sy - sd).abs()).mean()


def s3net_losses(
    net: S3Net, x: torch.Tensor, generator: torch.Generator, lambdas=S3_LAMBDAS
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """One training step's losses; also the argmax map of the main path (B, H, W)."""
    feats = net.features(x)
    scores = net.head(feats)
    target = scores.argmax(dim=1)
    l_ce = F.cross_entropy(scores, target)
    b, _, h, w = x.shape
    theta = random_affine(b, (h, w), generator).to(x.device)
    scores_a = net.affine_head(warp(feats, theta))
    target_a = warp(target[:, None].to(x.dtype), theta, mode="nearest")[:, 0].round().long()
    inside = valid_mask(theta, x.shape, x.device)[:, 0]
    l_at = F.cross_entropy(scores_a, target_a.masked_fill(~inside, -100), ignore_index=-100)
    l_s = spatial_consistency_loss(scores)
    total = lambdas[0] * l_ce + lambdas[1] * l_at + lambdas[2] * l_s
    return total, {"ce": l_ce, "affine": l_at, "spatial": l_s}, target


def segment_image_s3net(
    image: ImageData,
    *,
    iterations: int = S3_ITERATIONS,
    lr: float = S3_LR,
    n_clusters: int = S3_CLUSTERS,
    width: int = S3_WIDTH,
    seed: int = 0,
    device: str = "cpu",
    progress: ProgressCallback = no_progress,
    cancel: Optional[CancelToken] = None,
    history: Optional[list] = None,
) -> np.ndarray:
    """S3-Net on one 2D image: uint16 label map (1..n, `image.spatial_shape`); see the module docstring.

    `history`, if given, receives the total loss of every iteration (for tests and benchmarks).
    """
    require_2d(image, "s3net")
    dev = resolve_device(device)
    x = normalized_2d(image).to(dev)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = S3Net(x.shape[1], width, n_clusters).to(dev)
    if dev.type == "cpu":  # depth-wise convolutions are about twice as fast channels-last on the CPU
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    gen = make_generator(seed + 1)
    optimiser = torch.optim.SGD(net.parameters(), lr=lr, momentum=S3_MOMENTUM)
    net.train()
    t0 = time.perf_counter()
    progress("s3net", 0.0, f"S3-Net: {iterations} iterations on {x.shape[2]}x{x.shape[3]}")
    for it in range(iterations):
        check_cancel(cancel)
        total, parts, _ = s3net_losses(net, x, gen)
        optimiser.zero_grad(set_to_none=True)
        total.backward()
        optimiser.step()
        if history is not None:
            history.append(float(total.detach()))
        progress("s3net", (it + 1) / iterations, f"iteration {it + 1}/{iterations} loss {float(total.detach()):.4f}")
    with torch.no_grad():
        labels = net(x).argmax(dim=1)[0].cpu().numpy()
    progress("s3net", 1.0, f"done in {time.perf_counter() - t0:.1f} s")
    return relabel_consecutive(labels).reshape(image.spatial_shape)


def describe() -> dict[str, Any]:
    """The settings a run records (hierarchy info)."""
    return {
        "method": "s3net",
        "iterations": S3_ITERATIONS,
        "lr": S3_LR,
        "momentum": S3_MOMENTUM,
        "lambdas": list(S3_LAMBDAS),
        "n_clusters": S3_CLUSTERS,
        "width": S3_WIDTH,
        "blocks": S3_BLOCKS,
    }
