"""The peer methods' encoder objectives (boundary-aware infomax, IIC, CGC), named in `learn.objective_registry`.

The design, its sources and the choices made: docs/peer-methods.md, section `learn/peer_objectives.py`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import CUTSError
from .encoder import ClusterHead
from .gaussian_mixture import fit_gmm
from .normalization import apply_normalization
from .objective import ObjectiveTerms
from .sampling import make_generator
from .transforms import (
    local_cross_correlation,
    random_affine,
    random_gamma,
    sobel_magnitude,
    valid_mask,
    warp,
)

DEFAULT_CLUSTERS = 40
DEFAULT_ALPHA = 0.5
DEFAULT_BOUNDARY_WEIGHT = 1.0
CC_WINDOW = 9
CGC_TEMPERATURE = 0.2
CGC_POOL = 4
CGC_MAX_PATCHES = 64
_EPS = 1e-8


class _PeerObjective(nn.Module):
    """What the peer objectives share: a cluster head, the card entries, the progress line."""

    name: str
    head: ClusterHead

    @property
    def cluster_head(self) -> ClusterHead:
        return self.head

    def card_entry(self) -> dict[str, Any]:
        raise NotImplementedError

    def loss_entry(self) -> dict[str, Any]:
        return self.card_entry()

    def progress_detail(self, terms: ObjectiveTerms) -> str:
        return ", ".join(f"{k} {float(v.detach()):.3f}" for k, v in terms.parts.items())


def _entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(_EPS))).sum(dim=dim)


def mutual_information_loss(
    p_hat: torch.Tensor, p_tilde: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``H'_alpha(P) - H(marginal_hat) - H(marginal_tilde)`` for (N, K) cluster probabilities; also P.

    alpha = 0 is minus IIC's mutual information; alpha > 0 pulls P toward the uniform diagonal I/K.
    """
    k = p_hat.shape[1]
    joint = p_hat.t() @ p_tilde / p_hat.shape[0]
    joint = ((joint + joint.t()) / 2.0).clamp_min(_EPS)
    joint = joint / joint.sum()
    target = (1.0 - alpha) * joint + alpha * torch.eye(k, device=joint.device, dtype=joint.dtype) / k
    h_joint = -(target * torch.log(joint)).sum()
    h_rows = _entropy(joint.sum(dim=1), 0)
    h_cols = _entropy(joint.sum(dim=0), 0)
    return h_joint - h_rows - h_cols, joint


class InfomaxObjective(_PeerObjective):
    """Boundary-aware infomax (alpha, boundary weight) or IIC (alpha = 0, weight = 0); see the module doc."""

    def __init__(
        self,
        embed_dim: int,
        n_clusters: int = DEFAULT_CLUSTERS,
        alpha: float = DEFAULT_ALPHA,
        boundary_weight: float = DEFAULT_BOUNDARY_WEIGHT,
        seed: int = 0,
        name: str = "infomax",
    ) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise CUTSError("infomax alpha must lie in [0, 1]")
        self.name = name
        self.alpha = float(alpha)
        self.boundary_weight = float(boundary_weight)
        self.head = ClusterHead(embed_dim, n_clusters)
        self._gen = make_generator(seed)

    def card_entry(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n_clusters": self.head.n_clusters,
            "alpha": self.alpha,
            "boundary_weight": self.boundary_weight,
            "cc_window": CC_WINDOW,
            "transform": "gamma [0.5, 2] + affine (scale [0.8, 1.3], rotation +-45 deg, translation +-10 %)",
        }

    def forward(self, x: torch.Tensor, encoder: nn.Module) -> ObjectiveTerms:
        b, _, h, w = x.shape
        theta = random_affine(b, (h, w), self._gen).to(x.device)
        x_t = warp(random_gamma(x, self._gen), theta)
        z = encoder(torch.cat([x, x_t], dim=0))
        z_x, z_t = z[:b], z[b:]
        logits_x = self.head(z_x)
        p_hat = torch.softmax(self.head(z_t), dim=1)  # g(s(T(x)))
        p_tilde = torch.softmax(self.head(warp(z_x, theta)), dim=1)  # g(T(s(x)))
        mask = valid_mask(theta, x.shape, x.device)  # (B, 1, H, W)
        k = p_hat.shape[1]
        sel = mask.permute(0, 2, 3, 1).reshape(-1)
        ph = p_hat.permute(0, 2, 3, 1).reshape(-1, k)[sel]
        pt = p_tilde.permute(0, 2, 3, 1).reshape(-1, k)[sel]
        mi, _ = mutual_information_loss(ph, pt, self.alpha)
        parts = {"mi": mi}
        total = mi
        if self.boundary_weight > 0:
            entropy = _entropy(torch.softmax(logits_x, dim=1), 1)[:, None]
            cc = local_cross_correlation(sobel_magnitude(x), entropy, CC_WINDOW).mean()
            parts["cc"] = cc
            total = total - self.boundary_weight * cc
        return ObjectiveTerms(total, parts)


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.LeakyReLU(0.01),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.body(x), 0.01)


class TorchGMMPosterior:
    """The chosen component's posterior of a fitted `cgc.GaussianMixture`, evaluated on (B, C, H, W)."""

    def __init__(self, gmm, component: int) -> None:
        self.gmm = gmm
        self.component = int(component)
        self.prec_chol = [np.linalg.inv(np.linalg.cholesky(c)) for c in gmm.covariances]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        flat = x.detach().permute(0, 2, 3, 1).reshape(-1, c).to(torch.float64)
        logs = []
        for k in range(self.gmm.n_components):
            pc = torch.as_tensor(self.prec_chol[k], dtype=torch.float64, device=x.device)
            mu = torch.as_tensor(self.gmm.means[k], dtype=torch.float64, device=x.device)
            d = (flat - mu) @ pc.t()
            log_det = float(np.log(np.diag(np.linalg.cholesky(self.gmm.covariances[k]))).sum())
            logs.append(float(np.log(self.gmm.weights[k])) - log_det - 0.5 * (d * d).sum(dim=1))
        post = torch.softmax(torch.stack(logs, dim=1), dim=1)[:, self.component]
        return post.reshape(b, h, w, 1).permute(0, 3, 1, 2).to(x.dtype)


def _soft_bce(logits: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Soft cross-entropy of 2-way logits (B, 2, H, W) to foreground probabilities p (B, 1, H, W)."""
    log_q = torch.log_softmax(logits, dim=1)
    return -((1.0 - p) * log_q[:, :1] + p * log_q[:, 1:]).mean()


def patch_contrastive_loss(v: torch.Tensor, fg: torch.Tensor, temperature: float = CGC_TEMPERATURE) -> torch.Tensor:
    """CGC eq. 6 per image: v (B, M, D) L2-normalised patch embeddings, fg (B, M) bool lesion patches.

    Every lesion patch is an anchor; the other lesion patches of its image are its positives, all other
    patches of the image (but itself) form the denominator. Images with fewer than two lesion patches add
    nothing; returns 0 when no image has any pair.
    """
    b, m, _ = v.shape
    sim = torch.bmm(v, v.transpose(1, 2)) / temperature  # (B, M, M)
    eye = torch.eye(m, dtype=torch.bool, device=v.device)[None]
    sim = sim.masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=2, keepdim=True)
    pos = fg[:, :, None] & fg[:, None, :] & ~eye
    n_pos = pos.sum(dim=2)
    anchors = fg & (n_pos > 0)
    if not bool(anchors.any()):
        return v.sum() * 0.0
    per_anchor = -(log_prob.masked_fill(~pos, 0.0)).sum(dim=2) / n_pos.clamp_min(1)
    return per_anchor[anchors].mean()


class CGCObjective(_PeerObjective):
    """CGC's pseudo-label-guided objective (pixel BCE + coarse BCE + fine mini-patch contrastive)."""

    def __init__(
        self,
        embed_dim: int,
        posterior: Callable[[torch.Tensor], torch.Tensor],
        temperature: float = CGC_TEMPERATURE,
        seed: int = 0,
        gmm_summary: Optional[dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        self.name = "cgc"
        self.head = ClusterHead(embed_dim, 2)
        self.coarse = nn.Sequential(_ResidualBlock(embed_dim), nn.Conv2d(embed_dim, 2, 1))
        self.temperature = float(temperature)
        self.posterior = posterior
        self.gmm_summary = dict(gmm_summary or {})
        self._gen = make_generator(seed)

    def card_entry(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n_clusters": 2,
            "temperature": self.temperature,
            "lambda_cg": 1.0,
            "lambda_fg": 1.0,
            "pool": CGC_POOL,
            "max_patches": CGC_MAX_PATCHES,
            "gmm": self.gmm_summary,
        }

    def forward(self, x: torch.Tensor, encoder: nn.Module) -> ObjectiveTerms:
        with torch.no_grad():
            p = self.posterior(x)  # (B, 1, H, W), detached as in the paper
        z = encoder(x)
        bce = _soft_bce(self.head(z), p)
        zc = F.avg_pool2d(z, CGC_POOL, ceil_mode=True)
        pc = F.avg_pool2d(p, CGC_POOL, ceil_mode=True)
        coarse = _soft_bce(self.coarse(zc), pc)
        b, d = zc.shape[:2]
        v = F.normalize(zc.flatten(2).transpose(1, 2), dim=-1)  # (B, M, D)
        fg = pc.flatten(1) > 0.5
        m = v.shape[1]
        if m > CGC_MAX_PATCHES:
            pick = torch.stack([torch.randperm(m, generator=self._gen)[:CGC_MAX_PATCHES] for _ in range(b)]).to(
                v.device
            )
            v = torch.gather(v, 1, pick[..., None].expand(b, CGC_MAX_PATCHES, d))
            fg = torch.gather(fg, 1, pick)
        fine = patch_contrastive_loss(v, fg, self.temperature)
        total = bce + coarse + fine
        return ObjectiveTerms(total, {"bce": bce, "coarse": coarse, "fine": fine})


def sample_training_pixels(
    images: Sequence[Any], mode: str, params: Sequence[Optional[dict]], n: int = 50_000, seed: int = 0
) -> np.ndarray:
    """Up to `n` normalised pixels (N, C) drawn evenly from the training images (their usable slices)."""
    rng = np.random.default_rng(seed)
    per_image = max(1, n // max(1, len(images)))
    chunks = []
    for image, prm in zip(images, params):
        flat = image.array.reshape(-1, image.array.shape[-1])
        take = rng.choice(len(flat), min(per_image, len(flat)), replace=False)
        chunks.append(apply_normalization(flat[np.sort(take)], mode, prm))
    return np.concatenate(chunks, axis=0)


def infomax_objective(cfg: Any, images: Sequence[Any], mode: str, params: Sequence[Optional[dict]]) -> InfomaxObjective:
    """Boundary-aware infomax with the ``TrainConfig`` settings (K, alpha, boundary weight, seed)."""
    return InfomaxObjective(cfg.embed_dim, cfg.n_clusters, cfg.infomax_alpha, cfg.boundary_weight, cfg.seed + 2)


def iic_objective(cfg: Any, images: Sequence[Any], mode: str, params: Sequence[Optional[dict]]) -> InfomaxObjective:
    """IIC: infomax with alpha = 0 and no boundary term."""
    return InfomaxObjective(cfg.embed_dim, cfg.n_clusters, 0.0, 0.0, cfg.seed + 2, name="iic")


def cgc_objective(cfg: Any, images: Sequence[Any], mode: str, params: Sequence[Optional[dict]]) -> CGCObjective:
    """CGC with a Gaussian mixture fitted to the normalized training pixels (brightest component = foreground)."""
    pixels = sample_training_pixels(images, mode, params, seed=cfg.seed + 3)
    gmm = fit_gmm(pixels, cfg.gmm_components, seed=cfg.seed + 3)
    k = gmm.component_index("brightest")
    summary = {
        "n_components": gmm.n_components,
        "component": "brightest",
        "means": gmm.means.round(4).tolist(),
        "weights": gmm.weights.round(4).tolist(),
    }
    return CGCObjective(cfg.embed_dim, TorchGMMPosterior(gmm, k), cfg.cgc_temperature, cfg.seed + 2, summary)
