"""Shared pieces of the peer methods: random gamma + affine views, warping, Sobel edges, local correlation.

The design, its sources and the choices made: docs/peer-methods.md, section `learn/transforms.py`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

GAMMA_RANGE = (0.5, 2.0)
SCALE_RANGE = (0.8, 1.3)
MAX_ROTATION_DEG = 45.0
MAX_TRANSLATION = 0.1

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
_SOBEL_Y = _SOBEL_X.t().contiguous()
#: The diagonal ("XY") Sobel kernel, responding to edges at 45 degrees (used by S3-Net's spatial loss).
_SOBEL_XY = torch.tensor([[-2.0, -1.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 1.0, 2.0]]) / 8.0


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def random_affine(
    n: int,
    size: Sequence[int],
    generator: torch.Generator,
    *,
    max_rotation_deg: float = MAX_ROTATION_DEG,
    scale_range: Sequence[float] = SCALE_RANGE,
    max_translation: float = MAX_TRANSLATION,
    flip: bool = False,
) -> torch.Tensor:
    """(n, 2, 3) float32 ``theta`` for `affine_grid`: random rotation, isotropic scale, translation[, flip].

    `size` is (H, W). Scale > 1 zooms in (structures look larger in the warped view). With ``flip`` a
    random horizontal flip is composed in (CLMorph's augmentation flips one axis).
    """
    h, w = int(size[0]), int(size[1])
    angle = _uniform(n, -max_rotation_deg, max_rotation_deg, generator) * math.pi / 180.0
    scale = _uniform(n, float(scale_range[0]), float(scale_range[1]), generator)
    tx = _uniform(n, -max_translation, max_translation, generator) * 2.0  # fraction of side -> normalised units
    ty = _uniform(n, -max_translation, max_translation, generator) * 2.0
    sign = torch.ones(n, dtype=torch.float64)
    if flip:
        sign = torch.where(torch.rand(n, generator=generator, dtype=torch.float64) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # Pixel-space matrix (output -> input) M = R(angle) / scale, in normalised coordinates S^-1 M S with
    # S = diag(W/2, H/2), which keeps rotations rigid on non-square images.
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = cos * sign
    theta[:, 0, 1] = -sin * (h / w)
    theta[:, 1, 0] = sin * (w / h) * sign
    theta[:, 1, 1] = cos
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    return theta.to(torch.float32)


def identity_theta(n: int) -> torch.Tensor:
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    return theta


def warp(x: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear", padding_mode: str = "zeros") -> torch.Tensor:
    """x (B, C, H, W) seen through the affine ``theta`` (B, 2, 3) (output -> input), same size out."""
    grid = F.affine_grid(theta.to(device=x.device, dtype=x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


def valid_mask(theta: torch.Tensor, shape: Sequence[int], device: Optional[torch.device] = None) -> torch.Tensor:
    """(B, 1, H, W) bool: output pixels whose source lies inside the input (no zero padding involved)."""
    b, _, h, w = (int(s) for s in shape)
    ones = torch.ones(b, 1, h, w, device=device)
    return warp(ones, theta) > 0.999


def random_gamma(
    x: torch.Tensor,
    generator: torch.Generator,
    gamma_range: Sequence[float] = GAMMA_RANGE,
    value_range: Sequence[float] = (-1.0, 1.0),
) -> torch.Tensor:
    """Gamma correction per image, gamma log-uniform in `gamma_range`, on intensities seen as [0, 1]."""
    lo, hi = float(value_range[0]), float(value_range[1])
    log_g = _uniform(x.shape[0], math.log(gamma_range[0]), math.log(gamma_range[1]), generator)
    gamma = torch.exp(log_g).to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.ndim - 1)))
    unit = ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
    # The small floor keeps the gradient of u**gamma finite at 0 (the input needs no gradient, but be safe).
    return unit.clamp_min(1e-6).pow(gamma) * (hi - lo) + lo


def _depthwise(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    weight = kernel.to(device=x.device, dtype=x.dtype).expand(c, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, groups=c)


def sobel(x: torch.Tensor, directions: str = "xy") -> list[torch.Tensor]:
    """Sobel responses of every channel, one (B, C, H, W) tensor per letter of `directions`.

    ``"x"``: horizontal gradient, ``"y"``: vertical, ``"d"``: the diagonal (XY) kernel. Replicate padding,
    kernels scaled by 1/8 so a unit step gives a response of 1/2 per pixel.
    """
    kernels = {"x": _SOBEL_X, "y": _SOBEL_Y, "d": _SOBEL_XY}
    return [_depthwise(x, kernels[d]) for d in directions]


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) edge strength: Sobel gradient magnitude averaged over channels."""
    gx, gy = sobel(x, "xy")
    return torch.sqrt(gx * gx + gy * gy + 1e-12).mean(dim=1, keepdim=True)


def local_cross_correlation(a: torch.Tensor, b: torch.Tensor, window: int = 9, eps: float = 1e-5) -> torch.Tensor:
    """Squared local normalised cross-correlation of two (B, 1, H, W) maps, one value per pixel.

    ``CC(i) = (sum_j (a_j - mean_a)(b_j - mean_b))^2 / (sum_j (a_j - mean_a)^2 * sum_j (b_j - mean_b)^2)``
    over the `window` x `window` neighbourhood N(i): equation (9) of the boundary-aware infomax paper, as
    VoxelMorph computes it (box sums, ``eps`` in the denominator). Values lie in [0, 1].
    """
    pad = window // 2
    ones = torch.ones(1, 1, window, window, device=a.device, dtype=a.dtype)

    def box(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (pad, pad, pad, pad), mode="replicate"), ones)

    n = float(window * window)
    sa, sb = box(a), box(b)
    saa, sbb, sab = box(a * a), box(b * b), box(a * b)
    cross = sab - sa * sb / n
    var_a = (saa - sa * sa / n).clamp_min(0.0)
    var_b = (sbb - sb * sb / n).clamp_min(0.0)
    return cross * cross / (var_a * var_b + eps)
