"""Training the CUTS encoder (paper section 3.1): contrastive + patch reconstruction, no labels, ever.

`train_encoder(images, config)` takes `ImageData` only (there is no label argument: the method is
unsupervised). 2D images are trained on directly; 3D volumes contribute their 2D axial slices (Z index), one
random crop of a random slice per sample, so a volume is never put on the device whole. Constant slices
(e.g. padding) are skipped.

One epoch = one pass over every usable 2D slice of the training set in a random order (or
``slices_per_epoch`` random ones), in batches of ``batch_size`` random ``crop_size`` crops with random flips;
an epoch always holds at least one full batch, so training on a single image draws ``batch_size`` different
random crops of it per step.
Optimiser AdamW (lr 1e-3, weight decay 1e-4), linear warm-up over the first ``warmup_fraction`` of the steps
(the authors: 10 of 200 epochs) then cosine decay to 0, updated every step.

Defaults depend on the device (``epochs=None``, ``crop_size=None``):

- CPU: 64 px crops and about ``CPU_STEP_BUDGET`` optimiser steps in all (at most 200 epochs): the 56 retina
  images (4 steps per epoch) then train for 100 epochs, a few minutes on 2 cores.
- CUDA / MPS: 128 px crops (whole 128 x 128 images, as the paper) and the paper's 200 epochs, capped at about
  ``GPU_STEP_BUDGET`` steps for large training sets.

Reproducible: the same seed, data and config on the CPU give identical weights (weights are initialised from
a private copy of torch's RNG seeded with ``seed``; crops and flips come from a `numpy.random.Generator`; the
pair sampler from its own `torch.Generator`; none is reseeded during training).

Objective: ``TrainConfig.objective`` is ``"cuts"`` (the paper's loss, above) or one of the peer methods'
objectives in `methods.objectives` (``"infomax"``, ``"iic"``, ``"cgc"``): the same encoder, crops, schedule and
checkpoints, another per-step loss, plus a cluster head that the returned model keeps
(`TrainedModel.cluster_head`). The CUTS path does not touch that module.

Interruption: the cancel token is checked before every step (`CancelledError`). With ``checkpoint_path``,
a complete model is saved atomically (`modelfile.save_model`) at the end of every epoch; Ctrl-C
(`KeyboardInterrupt`) or a cancel during training leaves the last complete epoch's model on disk and the
exception is re-raised (callers that want to go on with the checkpoint load it with `load_model`).
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from .. import __version__
from ..core.device import describe_device, is_accelerator, resolve_device
from .encoder import PATCH_SIZE, CUTSEncoder, PatchReconHead
from ..core.errors import CUTSError, InputError
from ..core.imagedata import ImageData
from .losses import DEFAULT_LAMBDA, DEFAULT_TEMPERATURE, cuts_loss
from .modelfile import TrainedModel, save_model
from .normalization import apply_normalisation, card_entry, choose_normalisation_for, compute_params
from ..core.progress import CancelToken, ProgressCallback, check_cancel, no_progress
from .sampling import border_margin, extract_patches, gather_pixels, make_generator, sample_pairs

PathLike = Union[str, os.PathLike]

#: Total optimiser steps the CPU default aims at (epochs = budget / steps per epoch, at most MAX_EPOCHS).
CPU_STEP_BUDGET = 400
#: Same for CUDA/MPS; the paper's 200 epochs on the retina set are 800 steps.
GPU_STEP_BUDGET = 4000
MAX_EPOCHS = 200
CPU_CROP = 64
GPU_CROP = 128
#: Smallest crop (and image side) that still leaves room for anchors, candidates and their patches.
MIN_CROP = 24


@dataclass
class TrainConfig:
    """Training settings; None means "pick for the device" (see the module docstring)."""

    epochs: Optional[int] = None
    batch_size: int = 16
    crop_size: Optional[int] = None
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    lam: float = DEFAULT_LAMBDA  #: weight of the contrastive term (the paper's lambda)
    temperature: float = DEFAULT_TEMPERATURE
    n_anchors: int = 8
    ssim_threshold: float = 0.5
    max_shift: int = 5
    max_tries: int = 20
    embed_dim: int = 128
    seed: int = 0
    device: str = "auto"
    flips: bool = True
    normalisation: str = "auto"  #: "auto" | "uint8" | "percentile"
    per_image_normalisation: bool = True
    slices_per_epoch: Optional[int] = None
    num_threads: Optional[int] = None  #: torch CPU threads during training (None: leave torch's setting)
    objective: str = "cuts"  #: "cuts" | "infomax" | "iic" | "cgc" (see methods.objectives)
    n_clusters: int = 40  #: cluster-head size K of "infomax" / "iic" (the paper's K = 40)
    infomax_alpha: float = 0.5  #: alpha of the modified MI ("iic" is alpha = 0)
    boundary_weight: float = 1.0  #: lambda of the boundary (cross-correlation) term of "infomax"
    cgc_temperature: float = 0.2  #: tau of CGC's mini-patch contrastive loss
    gmm_components: int = 3  #: components of CGC's Gaussian mixture (brightest = foreground)

    def resolved(self, device: torch.device, n_slices: int) -> "TrainConfig":
        """A copy with epochs and crop_size filled in for this device and training-set size."""
        accel = is_accelerator(device)
        crop = self.crop_size or (GPU_CROP if accel else CPU_CROP)
        epochs = self.epochs
        if epochs is None:
            per_epoch = self.samples_per_epoch(n_slices)
            steps_per_epoch = max(1, math.ceil(per_epoch / self.batch_size))
            budget = GPU_STEP_BUDGET if accel else CPU_STEP_BUDGET
            epochs = int(min(MAX_EPOCHS, max(1, round(budget / steps_per_epoch))))
        return replace(self, epochs=int(epochs), crop_size=int(crop))

    def samples_per_epoch(self, n_slices: int) -> int:
        """Crops per epoch: every usable slice once (or `slices_per_epoch`), and at least one full batch."""
        return max(self.batch_size, int(self.slices_per_epoch or n_slices))


def _validate(images: Sequence[ImageData], config: TrainConfig) -> None:
    if len(images) == 0:
        raise InputError("no training images given")
    channels = {im.channels for im in images}
    if len(channels) != 1:
        raise InputError(f"training images must all have the same number of channels, got {sorted(channels)}")
    for im in images:
        _, y, x, _ = im.array.shape
        if min(y, x) < MIN_CROP:
            name = im.source or "an image"
            raise InputError(f"{name} is {y}x{x} px per slice; training needs at least {MIN_CROP}x{MIN_CROP}")
    if config.batch_size < 1 or config.n_anchors < 2:
        raise CUTSError("batch_size must be >= 1 and n_anchors >= 2")
    if not 0.0 <= config.lam <= 1.0:
        raise CUTSError("lambda (lam) must lie in [0, 1]")
    if config.temperature <= 0:
        raise CUTSError("temperature must be > 0")
    from ..methods.objectives import OBJECTIVES

    if config.objective not in OBJECTIVES:
        raise CUTSError(f"unknown objective {config.objective!r} (use one of {', '.join(OBJECTIVES)})")


def _usable_slices(images: Sequence[ImageData]) -> list[tuple[int, int]]:
    slices = []
    for i, im in enumerate(images):
        flat = im.array.reshape(im.array.shape[0], -1)
        varying = flat.max(axis=1) > flat.min(axis=1)
        slices += [(i, int(z)) for z in np.flatnonzero(varying)]
    return slices


def _lr_lambda(total_steps: int, warmup_steps: int):
    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))

    return f


def _data_summary(images: Sequence[ImageData], n_slices: int) -> dict[str, Any]:
    shapes = [list(im.spatial_shape) + [im.channels] for im in images]
    return {
        "n_images": len(images),
        "n_slices": n_slices,
        "shapes": shapes[:100],
        "shapes_truncated": len(shapes) > 100,
        "source_dtypes": sorted({str(im.source_dtype) for im in images}),
        "is_2d": sorted({bool(im.is_2d) for im in images}),
    }


def train_encoder(
    images: Sequence[ImageData],
    config: Optional[TrainConfig] = None,
    progress: ProgressCallback = no_progress,
    cancel: Optional[CancelToken] = None,
    checkpoint_path: Optional[PathLike] = None,
) -> TrainedModel:
    """Train a CUTS encoder on `images` (no labels) and return it in eval mode, with its model card.

    Progress goes to `progress("train", fraction, "epoch e/E loss L")` after every step. Raises
    `CancelledError` when `cancel` is set, re-raises `KeyboardInterrupt`; in both cases the checkpoint at
    `checkpoint_path` (if given) is the last complete epoch. The returned encoder stays on the training device.
    """
    config = config or TrainConfig()
    images = list(images)
    _validate(images, config)
    device = resolve_device(config.device)
    slices = _usable_slices(images)
    if not slices:
        raise InputError("every training image (slice) is constant; nothing to learn from")
    cfg = config.resolved(device, len(slices))
    assert cfg.epochs is not None and cfg.crop_size is not None
    min_side = min(min(im.array.shape[1:3]) for im in images)
    crop = int(min(cfg.crop_size, min_side))
    if crop < max(MIN_CROP, 2 * border_margin(PATCH_SIZE, cfg.max_shift) + 3):
        raise CUTSError(f"crop size {crop} is too small (at least {MIN_CROP} px)")

    channels = images[0].channels
    mode = choose_normalisation_for(images) if cfg.normalisation == "auto" else cfg.normalisation
    own_params = [compute_params(im, mode) for im in images]  # None each for "uint8"
    norm_entry = card_entry(images, mode, per_image=cfg.per_image_normalisation, all_params=own_params)
    if mode == "percentile" and not cfg.per_image_normalisation:
        params: list[Optional[dict]] = [norm_entry["params"]] * len(images)
    else:
        params = list(own_params)

    old_threads = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    try:
        return _train(
            images, slices, params, cfg, crop, channels, mode, norm_entry, device, progress, cancel, checkpoint_path
        )
    finally:
        if cfg.num_threads:
            torch.set_num_threads(old_threads)


def _train(
    images: list[ImageData],
    slices: list[tuple[int, int]],
    params: list[Optional[dict]],
    cfg: TrainConfig,
    crop: int,
    channels: int,
    mode: str,
    norm_entry: dict[str, Any],
    device: torch.device,
    progress: ProgressCallback,
    cancel: Optional[CancelToken],
    checkpoint_path: Optional[PathLike],
) -> TrainedModel:
    assert cfg.epochs is not None
    rng = np.random.default_rng(cfg.seed)
    pair_gen = make_generator(cfg.seed + 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        encoder = CUTSEncoder(channels, cfg.embed_dim)
        head = PatchReconHead(channels, cfg.embed_dim, PATCH_SIZE)
        objective = None
        if cfg.objective != "cuts":
            from ..methods.objectives import build_objective

            objective = build_objective(cfg, channels, images, mode, params)
    memory_format = torch.channels_last
    encoder.to(device=device, memory_format=memory_format)
    head.to(device)
    trained_heads = head if objective is None else objective.to(device)
    optimiser = torch.optim.AdamW(
        list(encoder.parameters()) + list(trained_heads.parameters()), lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    per_epoch = cfg.samples_per_epoch(len(slices))
    steps_per_epoch = math.ceil(per_epoch / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = max(1, int(round(cfg.warmup_fraction * total_steps))) if cfg.warmup_fraction > 0 else 0
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, _lr_lambda(total_steps, warmup))

    card: dict[str, Any] = {
        "library_version": __version__,
        "channels": channels,
        "embed_dim": cfg.embed_dim,
        "receptive_field": encoder.receptive_field,
        "normalisation": norm_entry,
        "patch": {
            "patch_size": PATCH_SIZE,
            "max_shift": cfg.max_shift,
            "n_anchors": cfg.n_anchors,
            "ssim_threshold": cfg.ssim_threshold,
            "max_tries": cfg.max_tries,
        },
        "loss": {"lambda": cfg.lam, "temperature": cfg.temperature},
        "objective": {"name": "cuts"} if objective is None else objective.card_entry(),
        "training": {
            **{k: v for k, v in asdict(cfg).items() if k not in ("device",)},
            "crop_size": crop,
            "steps_per_epoch": steps_per_epoch,
            "total_steps": total_steps,
            "warmup_steps": warmup,
            "device": describe_device(device),
            "epochs_completed": 0,
            "complete": False,
            "loss_history": [],
        },
        "data": _data_summary(images, len(slices)),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
    if objective is not None:
        card["loss"] = objective.card_entry()
        card["cluster_head"] = {"n_clusters": objective.cluster_head.n_clusters}

    def make_batch(indices: np.ndarray) -> torch.Tensor:
        batch = np.empty((len(indices), channels, crop, crop), dtype=np.float32)
        for j, k in enumerate(indices):
            i, z = slices[int(k)]
            arr = images[i].array
            y0 = int(rng.integers(0, arr.shape[1] - crop + 1))
            x0 = int(rng.integers(0, arr.shape[2] - crop + 1))
            patch = apply_normalisation(arr[z, y0 : y0 + crop, x0 : x0 + crop], mode, params[i])
            if cfg.flips:
                if rng.random() < 0.5:
                    patch = patch[::-1]
                if rng.random() < 0.5:
                    patch = patch[:, ::-1]
            batch[j] = np.moveaxis(patch, -1, 0)
        return torch.from_numpy(batch).to(device).contiguous(memory_format=memory_format)

    step = 0
    t0 = time.perf_counter()
    s = cfg.n_anchors
    progress("train", 0.0, f"training on {describe_device(device)}: {cfg.epochs} epochs x {steps_per_epoch} steps")
    for epoch in range(cfg.epochs):
        encoder.train()
        trained_heads.train()
        # Every slice once in random order; fewer slices than a batch (one image) repeat with other crops.
        repeats = math.ceil(per_epoch / len(slices))
        order = np.concatenate([rng.permutation(len(slices)) for _ in range(repeats)])[:per_epoch]
        epoch_loss = 0.0
        for start in range(0, per_epoch, cfg.batch_size):
            check_cancel(cancel)
            x = make_batch(order[start : start + cfg.batch_size])
            if objective is not None:
                terms = objective(x, encoder)
                detail = ", ".join(f"{k} {float(v.detach()):.3f}" for k, v in terms.parts.items())
            else:
                z = encoder(x)
                pairs = sample_pairs(
                    x,
                    cfg.n_anchors,
                    pair_gen,
                    patch_size=PATCH_SIZE,
                    max_shift=cfg.max_shift,
                    ssim_threshold=cfg.ssim_threshold,
                    max_tries=cfg.max_tries,
                )
                coords = pairs.coords()
                zc = gather_pixels(z, coords)  # (B, 2S, D)
                target = extract_patches(x, coords, PATCH_SIZE)
                terms = cuts_loss(zc[:, :s], zc[:, s:], head(zc), target, cfg.lam, cfg.temperature)
                detail = (
                    f"contrastive {float(terms.contrastive.detach()):.3f}, "
                    f"recon {float(terms.reconstruction.detach()):.4f}"
                )
            loss_value = float(terms.total.detach())
            if not math.isfinite(loss_value):
                raise CUTSError(
                    f"training diverged at epoch {epoch + 1} (loss is {loss_value}); try a lower learning rate"
                )
            optimiser.zero_grad(set_to_none=True)
            terms.total.backward()
            optimiser.step()
            scheduler.step()
            step += 1
            epoch_loss += loss_value * x.shape[0]
            progress(
                "train",
                step / total_steps,
                f"epoch {epoch + 1}/{cfg.epochs} loss {loss_value:.4f} ({detail})",
            )
        mean_loss = epoch_loss / per_epoch
        card["training"]["loss_history"].append(round(mean_loss, 6))
        card["training"]["epochs_completed"] = epoch + 1
        card["training"]["final_loss"] = mean_loss
        card["training"]["seconds"] = round(time.perf_counter() - t0, 2)
        if checkpoint_path is not None:
            card["training"]["complete"] = epoch + 1 == cfg.epochs
            snapshot = TrainedModel(copy.deepcopy(encoder), copy.deepcopy(card), _head_copy(objective))
            save_model(snapshot, checkpoint_path)
    encoder.eval()
    encoder.to(memory_format=torch.contiguous_format)
    card["training"]["complete"] = True
    final = card["training"].get("final_loss", float("nan"))
    progress("train", 1.0, f"done in {time.perf_counter() - t0:.0f} s, loss {final:.4f}")
    return TrainedModel(encoder, card, None if objective is None else objective.cluster_head)


def _head_copy(objective: Any) -> Any:
    return None if objective is None else copy.deepcopy(objective.cluster_head)
