"""How long each stage of a job should take, known before it runs: the stages' shares of the whole job.

A job's progress arrives per stage ("train" 0.3, then "embed" 0.5, ...); the whole job's fraction needs each
stage's weight in advance. A small cost model gives it: seconds per training step (scaled by batch x crop^2)
and, for the other stages, fixed seconds plus seconds per million voxels, per kind of device. The same
estimate is the first guess of the time left, before the observed rate takes over
(`core.overall_progress`). The constants live in `STAGE_COSTS`; `benchmarks/bench_progress_plan.py`
measures them and prints a new row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

#: The stages of `pipeline.segment`, in the order they run ("write": the caller's output files).
STAGE_ORDER = ("train", "embed", "condense", "levels", "write")

#: Crops per training step the step costs were measured with (`TrainConfig.batch_size`'s default).
REFERENCE_BATCH = 16


@dataclass(frozen=True)
class StageCosts:
    """Seconds of each stage on one kind of device: fixed + per million voxels; training per step."""

    train_step_s: float  #: one optimiser step of REFERENCE_BATCH crops of `train_crop` px
    train_crop: int  #: crop side the step time was measured at (a step scales with crop^2)
    embed_fixed_s: float
    embed_s_per_mvox: float  #: working-grid voxels
    condense_fixed_s: float  #: the atoms' potential and condensation (independent of the voxel count)
    condense_s_per_mvox: float  #: projection and pre-aggregation k-means (working-grid voxels)
    levels_fixed_s: float
    levels_s_per_mvox: float  #: label maps of the kept levels (the image's voxels)
    write_fixed_s: float
    write_s_per_mvox: float  #: hierarchy.npz, persistent.nrrd, segmentation.seg.nrrd, levels.png


#: CPU row: 2 cores of an x86-64 Linux machine (Intel Xeon with AVX-512, virtualised; torch 2.13 CPU, two torch
#: threads), 2026-12-03, from one run of `benchmarks/bench_progress_plan.py` (benchmarks/results/
#: progress_plan.json): the training step, then embed, condensation, levels and writing fitted over the spine T2
#: and two FLAIR crops. On a glioma's 8.9 M working voxels that predicts embeddings 44 s and condensation 27 s
#: (measured with a cached encoder on glioma pat0001: 40-43 s and 19 s). No accelerator was at hand: the
#: "accelerator" row is the CPU row scaled by rough factors (training x1/20 per step at the same crop, embed
#: x1/30, condensation x1/5, levels and writing unchanged); run the script on a GPU machine to replace it.
STAGE_COSTS: dict[str, StageCosts] = {
    "cpu": StageCosts(
        train_step_s=0.87,
        train_crop=64,
        embed_fixed_s=0.14,
        embed_s_per_mvox=4.9,
        condense_fixed_s=0.67,
        condense_s_per_mvox=2.9,
        levels_fixed_s=0.03,
        levels_s_per_mvox=0.13,
        write_fixed_s=0.14,
        write_s_per_mvox=0.19,
    ),
}
STAGE_COSTS["accelerator"] = StageCosts(
    train_step_s=STAGE_COSTS["cpu"].train_step_s / 20,
    train_crop=STAGE_COSTS["cpu"].train_crop,
    embed_fixed_s=STAGE_COSTS["cpu"].embed_fixed_s,
    embed_s_per_mvox=STAGE_COSTS["cpu"].embed_s_per_mvox / 30,
    condense_fixed_s=STAGE_COSTS["cpu"].condense_fixed_s / 5,
    condense_s_per_mvox=STAGE_COSTS["cpu"].condense_s_per_mvox / 5,
    levels_fixed_s=STAGE_COSTS["cpu"].levels_fixed_s,
    levels_s_per_mvox=STAGE_COSTS["cpu"].levels_s_per_mvox,
    write_fixed_s=STAGE_COSTS["cpu"].write_fixed_s,
    write_s_per_mvox=STAGE_COSTS["cpu"].write_s_per_mvox,
)


@dataclass(frozen=True)
class JobPlan:
    """The stages of one job in the order they run, each with its estimated seconds.

    Examples
    --------
    >>> plan = JobPlan((("embed", 3.0), ("condense", 1.0)))
    >>> plan.start("condense"), plan.share("condense"), plan.total_s
    (0.75, 0.25, 4.0)
    """

    stages: tuple[tuple[str, float], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.stages)

    @property
    def total_s(self) -> float:
        return float(sum(seconds for _, seconds in self.stages))

    def __contains__(self, stage: object) -> bool:
        return stage in self.names

    def shares(self) -> dict[str, float]:
        """Each stage's fraction of the whole job (they sum to 1)."""
        total = self.total_s
        if total <= 0:
            return {name: 1.0 / len(self.stages) for name in self.names} if self.stages else {}
        return {name: seconds / total for name, seconds in self.stages}

    def share(self, stage: str) -> float:
        return self.shares()[stage]

    def start(self, stage: str) -> float:
        """The whole job's fraction when `stage` begins (the shares of the stages before it)."""
        shares = self.shares()
        done = 0.0
        for name in self.names:
            if name == stage:
                return done
            done += shares[name]
        raise KeyError(stage)

    def without(self, names: Iterable[str]) -> "JobPlan":
        """The same plan less some stages (the others keep their seconds, so their shares grow)."""
        dropped = set(names)
        return JobPlan(tuple(item for item in self.stages if item[0] not in dropped))


def _costs(device_kind: str) -> StageCosts:
    if device_kind not in STAGE_COSTS:
        raise ValueError(f"unknown device kind {device_kind!r} (use one of {sorted(STAGE_COSTS)})")
    return STAGE_COSTS[device_kind]


def training_seconds(steps: int, crop_size: int, batch_size: int = REFERENCE_BATCH, device_kind: str = "cpu") -> float:
    """Estimated seconds of `steps` optimiser steps of `batch_size` crops of `crop_size` px."""
    costs = _costs(device_kind)
    scale = (batch_size / REFERENCE_BATCH) * (crop_size / costs.train_crop) ** 2
    return max(0, int(steps)) * costs.train_step_s * scale


def plan_train(steps: int, crop_size: int, batch_size: int = REFERENCE_BATCH, device_kind: str = "cpu") -> JobPlan:
    """The plan of `pipeline.train`: one stage.

    Examples
    --------
    >>> plan_train(150, 64).names
    ('train',)
    """
    return JobPlan((("train", training_seconds(steps, crop_size, batch_size, device_kind)),))


def plan_segment(
    working_voxels: int,
    *,
    image_voxels: Optional[int] = None,
    train_steps: int = 0,
    crop_size: int = 64,
    batch_size: int = REFERENCE_BATCH,
    device_kind: str = "cpu",
) -> JobPlan:
    """The plan of `pipeline.segment` and of writing its files: train (when `train_steps`), embed, condense,
    levels, write.

    Parameters
    ----------
    working_voxels : int
        Voxels of the grid the encoder and condensation work on (`core.working_grid`).
    image_voxels : int, optional
        Voxels of the image the levels and files have (default: `working_voxels`).
    train_steps, crop_size, batch_size
        The self-training's optimiser steps (0: a model is given), crop side and crops per step.
    device_kind : str
        "cpu" or "accelerator".

    Examples
    --------
    >>> plan = plan_segment(2_000_000, train_steps=150)
    >>> plan.names
    ('train', 'embed', 'condense', 'levels', 'write')
    >>> round(sum(plan.shares().values()), 6)
    1.0
    """
    costs = _costs(device_kind)
    work = working_voxels / 1e6
    full = (image_voxels if image_voxels is not None else working_voxels) / 1e6
    stages = []
    if train_steps > 0:
        stages.append(("train", training_seconds(train_steps, crop_size, batch_size, device_kind)))
    stages += [
        ("embed", costs.embed_fixed_s + costs.embed_s_per_mvox * work),
        ("condense", costs.condense_fixed_s + costs.condense_s_per_mvox * work),
        ("levels", costs.levels_fixed_s + costs.levels_s_per_mvox * full),
        ("write", costs.write_fixed_s + costs.write_s_per_mvox * full),
    ]
    return JobPlan(tuple(stages))
