"""Training the CUTS encoder (paper section 3.1): contrastive + patch reconstruction, no labels, ever.

The design, its sources and the choices made: docs/architecture.md, section `learn/training.py`.
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
from ..core.errors import CUTSError, InputError
from ..core.imagedata import ImageData
from ..core.progress import CancelToken, ProgressCallback, check_cancel, no_progress
from ..io.sequences import sequence_names
from .encoder import PATCH_SIZE, CUTSEncoder
from .losses import DEFAULT_LAMBDA, DEFAULT_TEMPERATURE
from .modelfile import TrainedModel, save_model
from .normalization import apply_normalization, card_entry, choose_normalization_for, compute_params
from .objective import Objective
from .objective_registry import build_objective, check_objective
from .sampling import border_margin

PathLike = Union[str, os.PathLike]

#: Total optimiser steps the CPU default aims at (epochs = budget / steps per epoch, at most MAX_EPOCHS).
CPU_STEP_BUDGET = 400
#: The same for 3D volumes on the CPU: a volume's slices give many crops per step's worth of content, and the
#: first result should come in minutes (docs/benchmarks.md, 3D volumes: Dice and time at this budget).
CPU_VOLUME_STEP_BUDGET = 150
#: Same for CUDA/MPS; the paper's 200 epochs on the retina set are 800 steps.
GPU_STEP_BUDGET = 4000
MAX_EPOCHS = 200
CPU_CROP = 64
GPU_CROP = 128
#: Smallest crop (and image side) that still leaves room for anchors, candidates and their patches.
MIN_CROP = 24


@dataclass
class TrainConfig:
    """Training settings; None means "pick for the device" (see the module docstring).

    Examples
    --------
    >>> TrainConfig(epochs=5, objective="iic").objective
    'iic'
    """

    epochs: Optional[int] = None  #: passes over the usable slices (None: a step budget for the device)
    batch_size: int = 16  #: crops per optimiser step
    crop_size: Optional[int] = None  #: crop side in pixels (None: 64 on the CPU, 128 on an accelerator)
    lr: float = 1e-3  #: AdamW peak learning rate
    weight_decay: float = 1e-4  #: AdamW weight decay
    warmup_fraction: float = 0.05  #: share of the steps with a linear warm-up (then cosine decay to 0)
    lam: float = DEFAULT_LAMBDA  #: weight of the contrastive term (the paper's lambda)
    temperature: float = DEFAULT_TEMPERATURE  #: NT-Xent temperature
    n_anchors: int = 8  #: anchor pixels per crop for the contrastive pairs
    ssim_threshold: float = 0.5  #: a candidate positive's patch must be at least this similar (SSIM)
    max_shift: int = 5  #: positives lie within this many pixels of their anchor
    max_tries: int = 20  #: candidate draws per anchor (none accepted: a random diagonal neighbour)
    embed_dim: int = 128  #: embedding width d
    seed: int = 0  #: seeds weights, crops, flips and pair sampling
    device: str = "auto"  #: "auto" | "cpu" | "cuda" | "mps"
    flips: bool = True  #: random horizontal and vertical flips of the crops
    normalization: str = "auto"  #: "auto" | "uint8" | "percentile"
    per_image_normalization: bool = True  #: percentile bounds per image (False: one set for the training set)
    slices_per_epoch: Optional[int] = None  #: crops per epoch (None: every usable slice once)
    num_threads: Optional[int] = None  #: torch CPU threads during training (None: leave torch's setting)
    objective: str = "cuts"  #: "cuts" | "infomax" | "iic" | "cgc" (see learn.objective_registry)
    n_clusters: int = 40  #: cluster-head size K of "infomax" / "iic" (the paper's K = 40)
    infomax_alpha: float = 0.5  #: alpha of the modified MI ("iic" is alpha = 0)
    boundary_weight: float = 1.0  #: lambda of the boundary (cross-correlation) term of "infomax"
    cgc_temperature: float = 0.2  #: tau of CGC's mini-patch contrastive loss
    gmm_components: int = 3  #: components of CGC's Gaussian mixture (brightest = foreground)

    def resolved(self, device: torch.device, n_slices: int, volumes: bool = False) -> "TrainConfig":
        """A copy with epochs and crop_size filled in for this device, training-set size and kind (`volumes`)."""
        accel = is_accelerator(device)
        crop = self.crop_size or (GPU_CROP if accel else CPU_CROP)
        epochs = self.epochs
        if epochs is None:
            per_epoch = self.samples_per_epoch(n_slices)
            steps_per_epoch = max(1, math.ceil(per_epoch / self.batch_size))
            budget = GPU_STEP_BUDGET if accel else (CPU_VOLUME_STEP_BUDGET if volumes else CPU_STEP_BUDGET)
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
    check_objective(config.objective)


def usable_slices(images: Sequence[ImageData]) -> list[tuple[int, int]]:
    """(image index, slice index) of every slice that is not constant: the slices training crops come from."""
    slices = []
    for i, im in enumerate(images):
        flat = im.array.reshape(im.array.shape[0], -1)
        varying = flat.max(axis=1) > flat.min(axis=1)
        slices += [(i, int(z)) for z in np.flatnonzero(varying)]
    return slices


@dataclass(frozen=True)
class TrainingSchedule:
    """What `train_encoder` will run for a training set: its slices, the resolved settings and the crop side.

    The job plan reads the same numbers before training starts, so its estimate and the run agree.
    """

    slices: list[tuple[int, int]]
    config: TrainConfig  #: resolved: epochs and crop_size set
    crop: int  #: crop side in pixels (the configured side, capped by the smallest slice side)

    @property
    def samples_per_epoch(self) -> int:
        """Crops per epoch."""
        return self.config.samples_per_epoch(len(self.slices))

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.samples_per_epoch / self.config.batch_size)

    @property
    def steps(self) -> int:
        """Optimiser steps over the whole run."""
        return int(self.config.epochs or 0) * self.steps_per_epoch


def training_schedule(images: Sequence[ImageData], config: TrainConfig, device: torch.device) -> TrainingSchedule:
    """The schedule `train_encoder` runs `images` with under `config` on `device`.

    Raises
    ------
    InputError
        Every slice is constant (nothing to learn from).
    """
    slices = usable_slices(images)
    if not slices:
        raise InputError("every training image (slice) is constant; nothing to learn from")
    cfg = config.resolved(device, len(slices), volumes=any(not im.is_2d for im in images))
    min_side = min(min(im.array.shape[1:3]) for im in images)
    return TrainingSchedule(slices=slices, config=cfg, crop=int(min(int(cfg.crop_size or 0), min_side)))


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

    Parameters
    ----------
    images : sequence of ImageData
        Training images (2D, or volumes whose axial slices are used); all with the same channel count.
    config : TrainConfig, optional
        Settings (default: `TrainConfig()`, sized for the device).
    progress : ProgressCallback
        Called with ``("train", fraction, "epoch e/E loss L (...)")`` after every step.
    cancel : CancelToken, optional
        Checked before every step.
    checkpoint_path : str or Path, optional
        Where a complete model is saved after every epoch.

    Returns
    -------
    TrainedModel
        The encoder (in eval mode, on the training device), its card, and a cluster head for objectives
        that train one.

    Raises
    ------
    CancelledError
        When `cancel` is set (``KeyboardInterrupt`` is re-raised); the checkpoint is the last complete epoch.
    InputError, CUTSError
        Unusable images or settings, or a diverging loss.

    Examples
    --------
    >>> from CUTSSegmentationLib.evaluate.phantom import synthetic_image_2d
    >>> image, _ = synthetic_image_2d(64)
    >>> model = train_encoder([image], TrainConfig(epochs=1, batch_size=2, crop_size=32, device="cpu"))
    >>> model.card["training"]["epochs_completed"]
    1
    """
    config = config or TrainConfig()
    images = list(images)
    _validate(images, config)
    device = resolve_device(config.device)
    schedule = training_schedule(images, config, device)
    slices, cfg, crop = schedule.slices, schedule.config, schedule.crop
    if crop < max(MIN_CROP, 2 * border_margin(PATCH_SIZE, cfg.max_shift) + 3):
        raise CUTSError(f"crop size {crop} is too small (at least {MIN_CROP} px)")

    mode = choose_normalization_for(images) if cfg.normalization == "auto" else cfg.normalization
    own_params = [compute_params(im, mode) for im in images]  # None each for "uint8"
    norm_entry = card_entry(images, mode, per_image=cfg.per_image_normalization, all_params=own_params)
    if mode == "percentile" and not cfg.per_image_normalization:
        params: list[Optional[dict]] = [norm_entry["params"]] * len(images)
    else:
        params = list(own_params)

    old_threads = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    try:
        crops = _CropSampler(images, slices, params, mode, crop, cfg.flips, np.random.default_rng(cfg.seed))
        return _train(crops, schedule, norm_entry, device, progress, cancel, checkpoint_path)
    finally:
        if cfg.num_threads:
            torch.set_num_threads(old_threads)


@dataclass
class _CropSampler:
    """Random crops (with random flips) of the usable slices, normalized as the model will see its inputs."""

    images: list[ImageData]
    slices: list[tuple[int, int]]
    params: list[Optional[dict]]
    mode: str
    crop: int
    flips: bool
    rng: np.random.Generator

    @property
    def channels(self) -> int:
        return self.images[0].channels

    def epoch_order(self, per_epoch: int) -> np.ndarray:
        """Every slice once in random order; fewer slices than a batch (one image) repeat with other crops."""
        repeats = math.ceil(per_epoch / len(self.slices))
        return np.concatenate([self.rng.permutation(len(self.slices)) for _ in range(repeats)])[:per_epoch]

    def batch(self, indices: np.ndarray) -> np.ndarray:
        """(B, C, crop, crop) float32 crops of the slices `indices` points to."""
        crop, rng = self.crop, self.rng
        batch = np.empty((len(indices), self.channels, crop, crop), dtype=np.float32)
        for j, k in enumerate(indices):
            i, z = self.slices[int(k)]
            arr = self.images[i].array
            y0 = int(rng.integers(0, arr.shape[1] - crop + 1))
            x0 = int(rng.integers(0, arr.shape[2] - crop + 1))
            patch = apply_normalization(arr[z, y0 : y0 + crop, x0 : x0 + crop], self.mode, self.params[i])
            if self.flips:
                if rng.random() < 0.5:
                    patch = patch[::-1]
                if rng.random() < 0.5:
                    patch = patch[:, ::-1]
            batch[j] = np.moveaxis(patch, -1, 0)
        return batch


#: Model cards are a file format: these settings keep the names existing model files carry.
_CARD_FIELD_NAMES = {"normalization": "normalisation", "per_image_normalization": "per_image_normalisation"}


def _model_card(
    cfg: TrainConfig,
    crops: _CropSampler,
    encoder: CUTSEncoder,
    objective: Objective,
    norm_entry: dict[str, Any],
    device: torch.device,
    schedule: dict[str, int],
) -> dict[str, Any]:
    """The model card as training starts (`training` is updated after every epoch)."""
    card: dict[str, Any] = {
        "library_version": __version__,
        "channels": crops.channels,
        # The first case's sequence names in channel order: which sequences, in which order, a user gives.
        "sequences": list(sequence_names(crops.images[0])),
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
        "loss": objective.loss_entry(),
        "objective": objective.card_entry(),
        "training": {
            **{_CARD_FIELD_NAMES.get(k, k): v for k, v in asdict(cfg).items() if k not in ("device",)},
            "crop_size": crops.crop,
            **schedule,
            "device": describe_device(device),
            "epochs_completed": 0,
            "complete": False,
            "loss_history": [],
        },
        "data": _data_summary(crops.images, len(crops.slices)),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
    if objective.cluster_head is not None:
        card["cluster_head"] = {"n_clusters": objective.cluster_head.n_clusters}
    return card


def _train(
    crops: _CropSampler,
    schedule: TrainingSchedule,
    norm_entry: dict[str, Any],
    device: torch.device,
    progress: ProgressCallback,
    cancel: Optional[CancelToken],
    checkpoint_path: Optional[PathLike],
) -> TrainedModel:
    """The optimisation loop: one objective step per batch, a checkpoint per epoch, the card kept current."""
    cfg = schedule.config
    assert cfg.epochs is not None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        encoder = CUTSEncoder(crops.channels, cfg.embed_dim)
        objective = build_objective(cfg, crops.channels, crops.images, crops.mode, crops.params)
    memory_format = torch.channels_last
    encoder.to(device=device, memory_format=memory_format)
    objective.to(device)
    optimiser = torch.optim.AdamW(
        list(encoder.parameters()) + list(objective.parameters()), lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    per_epoch, steps_per_epoch, total_steps = schedule.samples_per_epoch, schedule.steps_per_epoch, schedule.steps
    warmup = max(1, int(round(cfg.warmup_fraction * total_steps))) if cfg.warmup_fraction > 0 else 0
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, _lr_lambda(total_steps, warmup))
    card_schedule = {"steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "warmup_steps": warmup}
    card = _model_card(cfg, crops, encoder, objective, norm_entry, device, card_schedule)

    step = 0
    t0 = time.perf_counter()
    progress("train", 0.0, f"training on {describe_device(device)}: {cfg.epochs} epochs x {steps_per_epoch} steps")
    for epoch in range(cfg.epochs):
        encoder.train()
        objective.train()
        order = crops.epoch_order(per_epoch)
        epoch_loss = 0.0
        for start in range(0, per_epoch, cfg.batch_size):
            check_cancel(cancel)
            batch = crops.batch(order[start : start + cfg.batch_size])
            x = torch.from_numpy(batch).to(device).contiguous(memory_format=memory_format)
            terms = objective(x, encoder)
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
                f"epoch {epoch + 1}/{cfg.epochs} loss {loss_value:.4f} ({objective.progress_detail(terms)})",
            )
        mean_loss = epoch_loss / per_epoch
        card["training"]["loss_history"].append(round(mean_loss, 6))
        card["training"]["epochs_completed"] = epoch + 1
        card["training"]["final_loss"] = mean_loss
        card["training"]["seconds"] = round(time.perf_counter() - t0, 2)
        if checkpoint_path is not None:
            card["training"]["complete"] = epoch + 1 == cfg.epochs
            snapshot = TrainedModel(copy.deepcopy(encoder), copy.deepcopy(card), copy.deepcopy(objective.cluster_head))
            progress("checkpoint", (epoch + 1) / cfg.epochs, f"saving epoch {epoch + 1}")
            save_model(snapshot, checkpoint_path)
    encoder.eval()
    encoder.to(memory_format=torch.contiguous_format)
    card["training"]["complete"] = True
    final = card["training"].get("final_loss", float("nan"))
    progress("train", 1.0, f"done in {time.perf_counter() - t0:.0f} s, loss {final:.4f}")
    return TrainedModel(encoder, card, objective.cluster_head)
