"""What an encoder objective is (`Objective`), and the paper's own: contrastive + patch reconstruction.

The training loop calls one `Objective` per step and does not know which one it runs; the objectives are
named in `learn.objective_registry`. See docs/architecture.md (learning).
"""

from __future__ import annotations

from typing import Any, Iterator, NamedTuple, Optional, Protocol

import torch
from torch import nn

from .encoder import PATCH_SIZE, ClusterHead, PatchReconHead
from .losses import DEFAULT_LAMBDA, DEFAULT_TEMPERATURE, cuts_loss
from .sampling import extract_patches, gather_pixels, make_generator, sample_pairs


class ObjectiveTerms(NamedTuple):
    """One step's loss: the total to minimise and its named parts (for progress lines)."""

    total: torch.Tensor
    parts: dict[str, torch.Tensor]


class Objective(Protocol):
    """An encoder objective: the layers it trains beside the encoder, and its loss on a batch of crops.

    Every objective trains the same CUTS encoder on the same crops and schedule, so its embeddings go through
    the same condensation. Objectives are `torch.nn.Module` s; the loop uses `parameters`, `train` and `to`.
    """

    name: str

    def __call__(self, x: torch.Tensor, encoder: nn.Module) -> ObjectiveTerms:
        """Loss on a (B, C, H, W) batch of normalized crops, computed through `encoder`."""
        ...

    @property
    def cluster_head(self) -> Optional[ClusterHead]:
        """The cluster head the trained model keeps (a single-granularity map), or None."""
        ...

    def card_entry(self) -> dict[str, Any]:
        """The model card's ``objective`` entry."""
        ...

    def loss_entry(self) -> dict[str, Any]:
        """The model card's ``loss`` entry."""
        ...

    def progress_detail(self, terms: ObjectiveTerms) -> str:
        """The loss parts as shown in progress lines."""
        ...

    def parameters(self) -> Iterator[nn.Parameter]: ...

    def train(self, mode: bool = True) -> Any: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...


class CUTSObjective(nn.Module):
    """The CUTS loss: NT-Xent over SSIM-screened pixel pairs plus patch reconstruction (paper section 3.1).

    Parameters
    ----------
    channels : int
        Image channels (the reconstruction target's depth).
    embed_dim : int
        Embedding width of the encoder.
    n_anchors, max_shift, ssim_threshold, max_tries : int, int, float, int
        Pair sampling (`learn.sampling.sample_pairs`).
    lam : float
        Weight of the contrastive term (the paper's lambda).
    temperature : float
        NT-Xent temperature.
    seed : int
        Seed of the pair sampler's own generator.

    Examples
    --------
    >>> objective = CUTSObjective(channels=1, embed_dim=128)
    >>> objective.card_entry()
    {'name': 'cuts'}
    """

    name = "cuts"

    def __init__(
        self,
        channels: int,
        embed_dim: int,
        n_anchors: int = 8,
        max_shift: int = 5,
        ssim_threshold: float = 0.5,
        max_tries: int = 20,
        lam: float = DEFAULT_LAMBDA,
        temperature: float = DEFAULT_TEMPERATURE,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.head = PatchReconHead(channels, embed_dim, PATCH_SIZE)
        self.n_anchors = int(n_anchors)
        self.max_shift = int(max_shift)
        self.ssim_threshold = float(ssim_threshold)
        self.max_tries = int(max_tries)
        self.lam = float(lam)
        self.temperature = float(temperature)
        self._pairs = make_generator(seed)

    @property
    def cluster_head(self) -> Optional[ClusterHead]:
        return None

    def card_entry(self) -> dict[str, Any]:
        return {"name": self.name}

    def loss_entry(self) -> dict[str, Any]:
        return {"lambda": self.lam, "temperature": self.temperature}

    def progress_detail(self, terms: ObjectiveTerms) -> str:
        return (
            f"contrastive {float(terms.parts['contrastive'].detach()):.3f}, "
            f"recon {float(terms.parts['recon'].detach()):.4f}"
        )

    def forward(self, x: torch.Tensor, encoder: nn.Module) -> ObjectiveTerms:
        z = encoder(x)
        pairs = sample_pairs(
            x,
            self.n_anchors,
            self._pairs,
            patch_size=PATCH_SIZE,
            max_shift=self.max_shift,
            ssim_threshold=self.ssim_threshold,
            max_tries=self.max_tries,
        )
        coords = pairs.coords()
        zc = gather_pixels(z, coords)  # (B, 2S, D)
        target = extract_patches(x, coords, PATCH_SIZE)
        s = self.n_anchors
        terms = cuts_loss(zc[:, :s], zc[:, s:], self.head(zc), target, self.lam, self.temperature)
        return ObjectiveTerms(terms.total, {"contrastive": terms.contrastive, "recon": terms.reconstruction})
