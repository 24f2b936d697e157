"""Binarize a label map the paper's two ways (label hint, seed point), score it, and collect the scores."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from retina_data import Sample

from CUTSSegmentationLib.condense.binarize import binarize_at_seed, binarize_with_hint
from CUTSSegmentationLib.core.errors import InputError
from CUTSSegmentationLib.evaluate.metrics import evaluate_binary

METRICS = ("dice", "hausdorff", "ssim", "ergas", "rmse")


HIGHER_IS_BETTER = {"dice": True, "hausdorff": False, "ssim": True, "ergas": False, "rmse": False}


BINARIZATIONS = ("hint", "seed")


def binarize(labels: np.ndarray, sample: Sample, how: str, zero_is_label: bool = True) -> np.ndarray:
    """Label-hint or seed-point mask. `zero_is_label`: 0 is an ordinary label (baselines, levels); False for a
    persistent map, where 0 means unpainted and a seed there selects nothing."""

    if how == "hint":
        return binarize_with_hint(labels, sample.truth)
    if zero_is_label:
        labels = labels.astype(np.int64) + 1
    try:
        return binarize_at_seed(labels, sample.seed_xy)
    except InputError:  # the seed fell on label 0 (unpainted in a persistent map): nothing is selected
        return np.zeros(labels.shape, dtype=bool)


def score(mask: np.ndarray, truth: np.ndarray) -> dict[str, float]:

    return evaluate_binary(mask, truth)


def score_levels(levels: np.ndarray, sample: Sample, how: str) -> tuple[dict[str, float], int]:
    """The authors' "best one": every metric at its own best level (an oracle), and the Dice-best level."""
    per_level = [score(binarize(level, sample, how), sample.truth) for level in levels]
    best = {}
    for m in METRICS:
        values = [s[m] for s in per_level]
        best[m] = float(max(values) if HIGHER_IS_BETTER[m] else min(values))
    return best, int(np.argmax([s["dice"] for s in per_level]))


@dataclass
class Results:
    seeds: list[int]
    names: list[str]
    # values[method][binarisation][metric] -> (n_seeds, n_images)
    values: dict = field(default_factory=dict)
    best_level: dict = field(default_factory=dict)  # method -> (n_seeds, n_images) Dice-best level index
    n_levels: dict = field(default_factory=dict)  # method -> (n_seeds, n_images)
    timings: dict = field(default_factory=dict)
    sweep: list = field(default_factory=list)
    variants: dict = field(default_factory=dict)  # persistent-map variants (analysis only)

    def put(self, method: str, how: str, si: int, ii: int, metrics: dict[str, float]) -> None:
        table = self.values.setdefault(method, {}).setdefault(how, {})
        for m in METRICS:
            arr = table.setdefault(m, np.full((len(self.seeds), len(self.names)), np.nan))
            arr[si, ii] = metrics[m]

    def put_variant(self, key: str, how: str, si: int, ii: int, metrics: dict[str, float]) -> None:
        table = self.variants.setdefault(key, {}).setdefault(how, {})
        for m in METRICS:
            arr = table.setdefault(m, np.full((len(self.seeds), len(self.names)), np.nan))
            arr[si, ii] = metrics[m]

    def summary(self, method: str, how: str, metric: str) -> tuple[float, float]:
        """Mean over seeds of (mean over images, standard error over images)."""
        source = self.values if method in self.values else self.variants
        arr = source[method][how][metric]
        arr = arr[np.isfinite(arr).any(axis=1)]  # seeds this method ran with (peers: --peer-seeds)
        if arr.size == 0:
            return float("nan"), float("nan")
        means = np.nanmean(arr, axis=1)
        ses = np.nanstd(arr, axis=1) / np.sqrt(np.sum(~np.isnan(arr), axis=1))
        return float(np.mean(means)), float(np.mean(ses))

    def n_seeds(self, method: str) -> int:
        arr = self.values[method]["hint"]["dice"]
        return int(np.isfinite(arr).any(axis=1).sum())
