"""The CUTS objective (paper section 3.1): intra-image NT-Xent plus local patch reconstruction.

``loss = lambda * contrastive + (1 - lambda) * recon`` with lambda = 0.01 (paper, supplement B).

Contrastive: NT-Xent (SimCLR) computed per image over its 2S L2-normalised embeddings (S anchors, S
positives): for each of the 2S vectors its partner is the positive, the other 2S - 2 vectors of the same
image are the negatives. The temperature defaults to 0.1 as in the authors' code (the paper's text says 0.5);
it is a parameter.

Reconstruction: mean squared error between the 5x5 patch reconstructed from a pixel's embedding and the real
(normalised) patch. We reconstruct at the anchors and at the positives (2S pixels per image).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

DEFAULT_TEMPERATURE = 0.1
DEFAULT_LAMBDA = 0.01


def contrastive_loss(
    z_anchor: torch.Tensor, z_positive: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE
) -> torch.Tensor:
    """NT-Xent per image. z_anchor, z_positive: (B, S, D) -> scalar (mean over the 2S vectors of B images)."""
    if z_anchor.shape != z_positive.shape or z_anchor.ndim != 3:
        raise ValueError(f"expected two (B, S, D) tensors, got {tuple(z_anchor.shape)} and {tuple(z_positive.shape)}")
    b, s, _ = z_anchor.shape
    z = F.normalize(torch.cat([z_anchor, z_positive], dim=1), dim=-1)  # (B, 2S, D)
    logits = torch.bmm(z, z.transpose(1, 2)) / temperature  # (B, 2S, 2S)
    eye = torch.eye(2 * s, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    target = torch.cat([torch.arange(s, 2 * s), torch.arange(0, s)]).to(z.device)
    return F.cross_entropy(logits.reshape(b * 2 * s, 2 * s), target.repeat(b))


def reconstruction_loss(reconstructed: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE between reconstructed and real patches (any matching shapes, e.g. (B, K, C, 5, 5))."""
    return F.mse_loss(reconstructed, target)


class LossTerms(NamedTuple):
    total: torch.Tensor
    contrastive: torch.Tensor
    reconstruction: torch.Tensor


def cuts_loss(
    z_anchor: torch.Tensor,
    z_positive: torch.Tensor,
    reconstructed: torch.Tensor,
    target_patches: torch.Tensor,
    lam: float = DEFAULT_LAMBDA,
    temperature: float = DEFAULT_TEMPERATURE,
) -> LossTerms:
    """lambda * NT-Xent + (1 - lambda) * patch MSE, with both terms returned for logging."""
    con = contrastive_loss(z_anchor, z_positive, temperature)
    rec = reconstruction_loss(reconstructed, target_patches)
    return LossTerms(lam * con + (1.0 - lam) * rec, con, rec)
