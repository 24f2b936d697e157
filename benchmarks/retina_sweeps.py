"""Analysis rows: other persistent-map rules on the same CUTS levels, and the classical baselines' parameters."""

from __future__ import annotations

import baselines
import numpy as np
from retina_data import Sample
from retina_scoring import binarize, score

from CUTSSegmentationLib.condense.persistence import persistent_level_indices, persistent_structures


def _persistent(levels: np.ndarray, **kwargs) -> np.ndarray:

    if len(levels) == 0:
        return np.zeros(levels.shape[1:], dtype=np.uint16)
    return persistent_structures(levels, **kwargs)


#: Other single maps built from the same CUTS levels without labels: what was tried to close the gap between
#: the persistent map and the best-level oracle. Analysis rows only: the choices were compared on these labels.
def _levels_upto(L: np.ndarray, nc: np.ndarray, k: int) -> np.ndarray:

    return L[persistent_level_indices(nc, k)]


PERSISTENT_VARIANTS = [
    ("the authors' rule on ALL levels (up to 64 clusters)", lambda L, nc: _persistent(L)),
    (
        "engine levels (<= 24 clusters), coarsest level ignored (the authors' loop)",
        lambda L, nc: _persistent(_levels_upto(L, nc, 24), skip_coarsest=True),
    ),
    ("engine levels, persistence >= 3 levels", lambda L, nc: _persistent(_levels_upto(L, nc, 24), min_persistence=3)),
    ("engine levels, min area 2%", lambda L, nc: _persistent(_levels_upto(L, nc, 24), min_area_fraction=0.02)),
    ("the authors' rule on levels with <= 16 clusters", lambda L, nc: _persistent(_levels_upto(L, nc, 16))),
    ("the authors' rule on levels with <= 32 clusters", lambda L, nc: _persistent(_levels_upto(L, nc, 32))),
    ("the authors' rule on levels with <= 40 clusters", lambda L, nc: _persistent(_levels_upto(L, nc, 40))),
    ("the level nearest 10 clusters", lambda L, nc: L[int(np.argmin(np.abs(nc - 10)))]),
]


SWEEP = [
    (
        "Felzenszwalb scale=1, sigma=0.8, min_size=20 (scikit-image defaults)",
        lambda rgb: baselines.felzenszwalb(rgb, 1, 0.8, 20),
    ),
    (
        "Felzenszwalb scale=1500, sigma=0.8, min_size=20 (authors' code, 2023)",
        lambda rgb: baselines.felzenszwalb(rgb, 1500, 0.8, 20),
    ),
    ("Felzenszwalb scale=500, sigma=1.0, min_size=10", lambda rgb: baselines.felzenszwalb(rgb, 500, 1.0, 10)),
    (
        "Felzenszwalb scale=200, sigma=1.0, min_size=10 (authors' code, 2024)",
        lambda rgb: baselines.felzenszwalb(rgb, 200, 1.0, 10),
    ),
    ("Felzenszwalb scale=100, sigma=0.8, min_size=10", lambda rgb: baselines.felzenszwalb(rgb, 100, 0.8, 10)),
    ("SLIC n_segments=10 (authors)", lambda rgb: baselines.slic(rgb, 10)),
    ("SLIC n_segments=20", lambda rgb: baselines.slic(rgb, 20)),
    ("SLIC n_segments=50", lambda rgb: baselines.slic(rgb, 50)),
]


def baseline_sweep(chosen: list[Sample]) -> list[dict]:
    """How the classical baselines' Dice moves with their parameters (label hint rewards more segments)."""
    rows = []
    for name, fn in SWEEP:
        segs, hint, seed = [], [], []
        for s in chosen:
            labels = fn(s.rgb)
            segs.append(len(np.unique(labels)))
            hint.append(score(binarize(labels, s, "hint"), s.truth))
            seed.append(score(binarize(labels, s, "seed"), s.truth)["dice"])
        dice_hint = [h["dice"] for h in hint]
        rows.append(
            {
                "setting": name,
                "segments_median": float(np.median(segs)),
                "dice_hint": float(np.mean(dice_hint)),
                "dice_hint_se": float(np.std(dice_hint) / np.sqrt(len(hint))),
                "hausdorff_hint": float(np.mean([h["hausdorff"] for h in hint])),
                "ssim_hint": float(np.mean([h["ssim"] for h in hint])),
                "rmse_hint": float(np.mean([h["rmse"] for h in hint])),
                "dice_seed": float(np.mean(seed)),
            }
        )
    return rows


def sweep_markdown(rows: list[dict]) -> str:
    lines = [
        "| baseline setting | segments (median) | Dice, label hint | Hausdorff | SSIM | RMSE | Dice, seed point |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['segments_median']:.0f} | {r['dice_hint']:.3f} ± {r['dice_hint_se']:.3f} "
            f"| {r['hausdorff_hint']:.2f} | {r['ssim_hint']:.3f} | {r['rmse_hint']:.3f} | {r['dice_seed']:.3f} |"
        )
    return "\n".join(lines)
