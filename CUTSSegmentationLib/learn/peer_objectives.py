"""Alternative encoder objectives for `training.train_encoder`: boundary-aware infomax, IIC, and CGC.

``TrainConfig.objective`` picks one; ``"cuts"`` (the default) is the paper's own loss and never reaches this
module. The others train the *same* CUTS encoder (4 x 5x5 conv, d = 128, no pooling) on the same random
crops, so their per-pixel embeddings go through the same condensation and give a multigranular hierarchy;
each also trains a `common.ClusterHead` whose argmax is a single-granularity map (`cluster_head_map`).

``"infomax"`` - boundary-aware information maximisation (shared/seeds/boundary-aware-infomax.txt):

- Two views of each crop x: ``p_hat = g(s(T(x)))`` (random gamma, then a random affine warp, then the
  encoder) and ``p_tilde = g(T(s(x)))`` (the encoder on x, its embeddings warped by the *same* affine map),
  g = 1x1 conv + K-way softmax (K = 40 as in the paper). T: gamma in [0.5, 2], scale [0.8, 1.3], rotation
  [-45, 45] deg, translation [-10 %, 10 %] (the paper's appendix; see `transforms`).
- ``L_MI = H'_alpha(P) - H(p_hat) - H(p_tilde)`` (eq. 6-7), P the K x K joint over the pixels of the batch,
  ``H'_alpha(P) = -sum ((1 - alpha) P + alpha I/K) log P``, alpha = 0.5.
- ``L_CC``: local cross-correlation (eq. 9, 9x9 window) between the Sobel edge map of x and the per-pixel
  entropy of the cluster distribution g(s(x)); the loss is ``-mean CC`` (eq. 9 is a correlation to be
  *maximised*; the paper writes it without the sign). Total ``L_MI + lambda L_CC``, lambda = 1 (the paper).

``"iic"`` - the same with alpha = 0 and no boundary term: IIC's mutual information.

``"cgc"`` - CGC's pseudo-label-guided objective (shared/seeds/CGC-cross-grained-contrastive.txt):
``L_bce + L_bce^cg + L_cl^fg`` (eq. 8, lambda_cg = lambda_fg = 1):

- P: the foreground posterior of a Gaussian mixture fitted (once, before training, detached) to the
  normalised intensities of the training set (`cgc.fit_gmm`, brightest of 3 components).
- L_bce: soft binary cross-entropy between a 2-way pixel head on the embeddings (the cluster head, K = 2:
  background, foreground) and P.
- Coarse path: embeddings average-pooled 4x4 -> residual block -> 1x1 conv -> 2-way, BCE to P pooled the
  same way.
- Fine path: the pooled 4x4 "mini-patch" embeddings; lesion patches (pooled P > 0.5) are each other's
  positives, every other patch of the same image a negative; supervised-contrastive loss (eq. 6) with cosine
  similarity and tau = 0.2 (the paper's best, Table 3).

Choices where the papers are silent, and why:

- Infomax: the paper's network is a U-Net and its dense features the last decoder layer; here they are the
  CUTS encoder's embeddings (the issue asks for the same embeddings to go through condensation). The paper's
  third loss (a *global* contrastive loss with meta-labels such as slice position) is left out: it needs
  meta-labels and a global bottleneck the CUTS encoder does not have. The joint P is symmetrised
  ((P + P^T) / 2) and floored at 1e-8 before the logs, as IIC's reference code does. Pixels whose warped
  source falls outside the crop are left out of P (no zero-padded pixels). The entropy map uses the
  unwarped view g(s(x)), which is aligned with x's Sobel edges. Optimiser: the engine's AdamW schedule
  (lr 1e-3, warm-up then cosine), not the paper's 50 x 200 iterations at lr 2e-4 for a U-Net.
- CGC: the paper's bottleneck z is 8x downsampled; the CUTS encoder keeps full resolution, so the coarse and
  fine paths pool 4x4 and the pixel head is the "decoder". One mixture for the whole training set rather than
  one per image: the training loop sees random crops, and a per-pixel posterior needs only the pixel value,
  so a shared mixture gives every crop its P without tracking where it came from (for one image this is
  exactly the per-image mixture). Eq. 7's similarity ``x y^T / (|x| + |y|)`` is read as the cosine
  similarity (a typo for the product). At most 64 mini-patches per image enter the contrastive loss
  (random, seeded), which bounds its cost. Eq. 8 writes the third term as a BCE; eq. 6 defines it as the
  contrastive loss, which is what we use.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import CUTSError
from ..learn.encoder import ClusterHead
from .transforms import (
    local_cross_correlation,
    make_generator,
    random_affine,
    random_gamma,
    sobel_magnitude,
    valid_mask,
    warp,
)

OBJECTIVES = ("cuts", "infomax", "iic", "cgc")
DEFAULT_CLUSTERS = 40
DEFAULT_ALPHA = 0.5
DEFAULT_BOUNDARY_WEIGHT = 1.0
CC_WINDOW = 9
CGC_TEMPERATURE = 0.2
CGC_POOL = 4
CGC_MAX_PATCHES = 64
_EPS = 1e-8


class ObjectiveTerms(NamedTuple):
    total: torch.Tensor
    parts: dict[str, torch.Tensor]


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


class InfomaxObjective(nn.Module):
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

    @property
    def cluster_head(self) -> ClusterHead:
        return self.head

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


def patch_contrastive_loss(
    v: torch.Tensor, fg: torch.Tensor, temperature: float = CGC_TEMPERATURE
) -> torch.Tensor:
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


class CGCObjective(nn.Module):
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

    @property
    def cluster_head(self) -> ClusterHead:
        return self.head

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
            pick = torch.stack(
                [torch.randperm(m, generator=self._gen)[:CGC_MAX_PATCHES] for _ in range(b)]
            ).to(v.device)
            v = torch.gather(v, 1, pick[..., None].expand(b, CGC_MAX_PATCHES, d))
            fg = torch.gather(fg, 1, pick)
        fine = patch_contrastive_loss(v, fg, self.temperature)
        total = bce + coarse + fine
        return ObjectiveTerms(total, {"bce": bce, "coarse": coarse, "fine": fine})


def sample_training_pixels(
    images: Sequence[Any], mode: str, params: Sequence[Optional[dict]], n: int = 50_000, seed: int = 0
) -> np.ndarray:
    """Up to `n` normalised pixels (N, C) drawn evenly from the training images (their usable slices)."""
    from ..learn.normalization import apply_normalisation

    rng = np.random.default_rng(seed)
    per_image = max(1, n // max(1, len(images)))
    chunks = []
    for image, prm in zip(images, params):
        flat = image.array.reshape(-1, image.array.shape[-1])
        take = rng.choice(len(flat), min(per_image, len(flat)), replace=False)
        chunks.append(apply_normalisation(flat[np.sort(take)], mode, prm))
    return np.concatenate(chunks, axis=0)


def build_objective(
    cfg, channels: int, images: Sequence[Any], mode: str, params: Sequence[Optional[dict]]
) -> nn.Module:
    """The objective module for ``cfg.objective`` (not "cuts"); call it under the training's seeded RNG."""
    name = cfg.objective
    if name == "infomax":
        return InfomaxObjective(cfg.embed_dim, cfg.n_clusters, cfg.infomax_alpha, cfg.boundary_weight, cfg.seed + 2)
    if name == "iic":
        return InfomaxObjective(cfg.embed_dim, cfg.n_clusters, 0.0, 0.0, cfg.seed + 2, name="iic")
    if name == "cgc":
        from .gmm import fit_gmm

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
    raise CUTSError(f"unknown objective {name!r} (use one of {', '.join(OBJECTIVES)})")
