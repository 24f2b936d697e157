"""The encoder objectives by name (``TrainConfig.objective``, ``--objective``): CUTS and the peer methods'.

See docs/architecture.md (learning) and docs/peer-methods.md.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from ..core.errors import CUTSError
from ..core.imagedata import ImageData
from .objective import CUTSObjective, Objective
from .peer_objectives import cgc_objective, iic_objective, infomax_objective

#: (config, images, normalization mode, per-image normalization parameters) -> the objective.
ObjectiveBuilder = Callable[[Any, Sequence[ImageData], str, Sequence[Optional[dict]]], Objective]

PEER_OBJECTIVES: dict[str, ObjectiveBuilder] = {
    "infomax": infomax_objective,
    "iic": iic_objective,
    "cgc": cgc_objective,
}
#: Every objective name, CUTS first.
OBJECTIVES: tuple[str, ...] = ("cuts", *PEER_OBJECTIVES)


def check_objective(name: str) -> None:
    """Raise `CUTSError` for a name that is not in `OBJECTIVES`."""
    if name not in OBJECTIVES:
        raise CUTSError(f"unknown objective {name!r} (use one of {', '.join(OBJECTIVES)})")


def build_objective(
    cfg: Any, channels: int, images: Sequence[ImageData], mode: str, params: Sequence[Optional[dict]]
) -> Objective:
    """The objective ``cfg.objective`` names, built under the training's seeded RNG.

    Parameters
    ----------
    cfg : TrainConfig
        Resolved training settings (objective name, sizes, seed).
    channels : int
        Image channels.
    images : sequence of ImageData
        The training images (CGC fits its Gaussian mixture to their pixels).
    mode : str
        Normalization mode of the training run.
    params : sequence of dict or None
        Per-image normalization parameters.

    Returns
    -------
    Objective
        A module the training loop calls once per step.

    Examples
    --------
    >>> from CUTSSegmentationLib.learn.training import TrainConfig
    >>> build_objective(TrainConfig(), 1, [], "uint8", []).name
    'cuts'
    """
    check_objective(cfg.objective)
    # The reconstruction head is drawn first whatever the objective, so a seed starts every objective's own
    # layers from the same point of the RNG stream.
    cuts = CUTSObjective(
        channels,
        cfg.embed_dim,
        n_anchors=cfg.n_anchors,
        max_shift=cfg.max_shift,
        ssim_threshold=cfg.ssim_threshold,
        max_tries=cfg.max_tries,
        lam=cfg.lam,
        temperature=cfg.temperature,
        seed=cfg.seed + 1,
    )
    builder = PEER_OBJECTIVES.get(cfg.objective)
    return cuts if builder is None else builder(cfg, images, mode, params)
