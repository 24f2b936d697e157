"""Positive-pair mining for the intra-image contrastive loss (paper section 3.1.1, Fig. 1C), vectorised.

The design, its sources and the choices made: docs/architecture.md, section `learn/sampling.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

#: SSIM constants, as skimage.metrics.structural_similarity (K1, K2).
_K1, _K2 = 0.01, 0.03
#: Smallest data range used for the SSIM constants, so a flat anchor patch does not divide by zero.
_MIN_RANGE = 1e-6
_DIAGONALS = torch.tensor([[-1, -1], [-1, 1], [1, -1], [1, 1]], dtype=torch.long)


@dataclass
class PairBatch:
    """Mined pairs for a batch: pixel coordinates (y, x) and whether SSIM accepted each positive."""

    anchors: torch.Tensor  #: (B, S, 2) long
    positives: torch.Tensor  #: (B, S, 2) long
    accepted: torch.Tensor  #: (B, S) bool; False where the diagonal-neighbour fallback was used

    def coords(self) -> torch.Tensor:
        """(B, 2S, 2): anchors then positives, the order the loss expects."""
        return torch.cat([self.anchors, self.positives], dim=1)


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator for the sampler; create it once per training run and keep passing the same one."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    return gen


def border_margin(patch_size: int = 5, max_shift: int = 5) -> int:
    """Pixels from the border an anchor keeps so every candidate's patch fits in the image."""
    return patch_size // 2 + max_shift


def extract_patches(images: torch.Tensor, coords: torch.Tensor, patch_size: int = 5) -> torch.Tensor:
    """images (B, C, H, W), coords (B, K, 2) (y, x) -> (B, K, C, p, p) patches centred on the coords.

    Coordinates must be at least p//2 px from the border (the sampler guarantees it).
    """
    b, c, _, _ = images.shape
    k = coords.shape[1]
    half = patch_size // 2
    offs = torch.arange(-half, half + 1, device=coords.device)
    ys = coords[..., 0, None] + offs  # (B, K, p)
    xs = coords[..., 1, None] + offs
    bidx = torch.arange(b, device=coords.device)[:, None, None, None]
    chan = images.permute(0, 2, 3, 1)  # (B, H, W, C) view
    patches = chan[bidx, ys[..., :, None], xs[..., None, :]]  # (B, K, p, p, C)
    return patches.permute(0, 1, 4, 2, 3).reshape(b, k, c, patch_size, patch_size)


def gather_pixels(features: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """features (B, D, H, W), coords (B, K, 2) (y, x) -> (B, K, D): the feature vector at each pixel."""
    b, d, h, w = features.shape
    flat = features.reshape(b, d, h * w)
    index = (coords[..., 0] * w + coords[..., 1]).to(features.device)  # (B, K)
    out = torch.gather(flat, 2, index[:, None, :].expand(b, d, index.shape[1]))  # (B, D, K)
    return out.transpose(1, 2)


def patch_ssim(anchor: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
    """SSIM of same-size patches (..., C, p, p), one number per pair, as skimage computes it for one window.

    Equals ``skimage.metrics.structural_similarity(a, b, win_size=p, data_range=R, channel_axis=...)`` on a
    p x p patch (sample covariance, K1 = 0.01, K2 = 0.03, mean over channels), with R = the anchor patch's
    max - min over all its channels.
    """
    work = torch.float32 if anchor.device.type == "mps" else torch.float64  # MPS has no float64
    a = anchor.to(work).flatten(-2)  # (..., C, n)
    c = candidate.to(work).flatten(-2)
    n = a.shape[-1]
    rng = (anchor.flatten(-3).amax(-1) - anchor.flatten(-3).amin(-1)).to(work).clamp_min(_MIN_RANGE)
    c1 = ((_K1 * rng) ** 2)[..., None]
    c2 = ((_K2 * rng) ** 2)[..., None]
    mu_a, mu_c = a.mean(-1), c.mean(-1)
    norm = n / (n - 1)
    var_a = norm * ((a * a).mean(-1) - mu_a**2)
    var_c = norm * ((c * c).mean(-1) - mu_c**2)
    cov = norm * ((a * c).mean(-1) - mu_a * mu_c)
    s = ((2 * mu_a * mu_c + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_c**2 + c1) * (var_a + var_c + c2))
    return s.mean(-1).to(anchor.dtype)


def sample_pairs(
    images: torch.Tensor,
    n_anchors: int = 8,
    generator: Optional[torch.Generator] = None,
    *,
    patch_size: int = 5,
    max_shift: int = 5,
    ssim_threshold: float = 0.5,
    max_tries: int = 20,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> PairBatch:
    """Anchors and SSIM-screened positives for a batch of (already normalised) images (B, C, H, W).

    `value_range` is the range the images were normalised to; SSIM is computed on ``images - value_range[0]``.
    Random numbers come from `generator` (a CPU `torch.Generator`, see `make_generator`); pass the same one
    on every call so successive batches get fresh anchors. Coordinates are returned on the images' device.
    """
    if generator is None:
        generator = torch.default_generator
    b, _, h, w = images.shape
    margin = border_margin(patch_size, max_shift)
    inner_h, inner_w = h - 2 * margin, w - 2 * margin
    if inner_h < 1 or inner_w < 1:
        raise ValueError(f"image {h}x{w} too small for pair mining (needs > {2 * margin} px per side)")
    n_valid = inner_h * inner_w
    if n_anchors > n_valid:
        raise ValueError(f"{n_anchors} anchors do not fit in a {h}x{w} image")

    # Distinct anchors per image, uniform over the inner region.
    weights = torch.ones(b, n_valid)
    flat = torch.multinomial(weights, n_anchors, replacement=False, generator=generator)  # (B, S)
    anchors = torch.stack([flat // inner_w + margin, flat % inner_w + margin], dim=-1)  # (B, S, 2)

    # Candidates: uniform over the (2m+1)^2 - 1 offsets of the box without (0, 0).
    side = 2 * max_shift + 1
    n_offsets = side * side - 1
    pick = torch.randint(0, n_offsets, (b, n_anchors, max_tries), generator=generator)
    pick = pick + (pick >= n_offsets // 2).long()  # skip the centre index
    offsets = torch.stack([pick // side - max_shift, pick % side - max_shift], dim=-1)  # (B, S, T, 2)
    fallback = _DIAGONALS[torch.randint(0, 4, (b, n_anchors), generator=generator)]  # (B, S, 2)

    device = images.device
    anchors = anchors.to(device)
    candidates = (anchors[:, :, None, :] + offsets.to(device)).reshape(b, n_anchors * max_tries, 2)
    shifted = images - value_range[0]
    anchor_patches = extract_patches(shifted, anchors, patch_size)  # (B, S, C, p, p)
    cand_patches = extract_patches(shifted, candidates, patch_size).reshape(
        b, n_anchors, max_tries, *anchor_patches.shape[2:]
    )
    ssim = patch_ssim(anchor_patches[:, :, None].expand_as(cand_patches), cand_patches)  # (B, S, T)
    ok = ssim > ssim_threshold
    accepted = ok.any(dim=-1)
    first = ok.to(torch.int8).argmax(dim=-1)  # index of the first accepted try (0 if none)
    chosen = torch.gather(
        candidates.reshape(b, n_anchors, max_tries, 2), 2, first[:, :, None, None].expand(b, n_anchors, 1, 2)
    )[:, :, 0]
    positives = torch.where(accepted[..., None], chosen, anchors + fallback.to(device))
    return PairBatch(anchors=anchors, positives=positives, accepted=accepted)
