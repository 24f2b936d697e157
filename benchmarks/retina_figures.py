"""Figures of the retina Table 1 benchmark (called by retina_table1.py; matplotlib from the `bench` extra).

- retina-levels.png: the multigranular levels of a few images, finest to coarsest, and the persistent map
  (as the paper's Fig. 3A; colours follow cluster ids, which persist across levels);
- retina-masks.png: every method's label-hint mask against the expert mask (as the paper's Fig. 3B), for
  images at several quantiles of CUTS persistent Dice (good, typical and failure cases);
- retina-dice.png: Dice per method, ours (label hint and seed point, mean ± SE) beside the paper's value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _palette(ids: np.ndarray) -> np.ndarray:
    """A fixed colour per label id (golden-ratio hues), black for 0."""
    import colorsys

    ids = np.asarray(ids, dtype=np.int64)
    top = int(ids.max()) + 1
    table = np.zeros((top, 3))
    for i in range(1, top):
        h = (i * 0.618033988749895) % 1.0
        table[i] = colorsys.hsv_to_rgb(h, 0.55 + 0.45 * ((i * 7) % 3) / 2, 0.65 + 0.35 * ((i * 5) % 2))
    return table[ids]


def _contour(ax, mask: np.ndarray, color: str, lw: float = 1.0) -> None:
    if mask.any() and not mask.all():
        ax.contour(mask.astype(float), levels=[0.5], colors=color, linewidths=lw)


def _off(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def draw_levels(samples, maps, path: Path, n_images: int = 3, n_levels: int = 7) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [s for s in samples if s.name in maps][:: max(1, len([s for s in samples if s.name in maps]) // n_images)]
    chosen = chosen[:n_images]
    cols = n_levels + 2
    fig, axes = plt.subplots(len(chosen), cols, figsize=(1.6 * cols, 1.75 * len(chosen)), squeeze=False)
    for r, s in enumerate(chosen):
        m = maps[s.name]
        levels, counts = m["cuts_levels"], m["cuts_n_clusters"]
        pick = np.unique(np.linspace(0, len(levels) - 1, min(n_levels, len(levels))).round().astype(int))
        axes[r, 0].imshow(s.rgb)
        _contour(axes[r, 0], s.truth, "lime")
        axes[r, 0].set_title(f"{s.name} + GA", fontsize=7)
        for c in range(1, cols):
            _off(axes[r, c])
        for c, li in enumerate(pick, start=1):
            axes[r, c].imshow(_palette(levels[li]))
            axes[r, c].set_title(f"level {li}: {int(counts[li])} cl.", fontsize=7)
        axes[r, cols - 1].imshow(_palette(m["cuts_persistent"]))
        axes[r, cols - 1].set_title("persistent", fontsize=7)
        _off(axes[r, 0])
    fig.suptitle("CUTS multigranular levels (finest to coarsest) and persistent structures, seed 0", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


MASK_METHODS = [
    ("random", "Random"),
    ("watershed", "Watershed"),
    ("felzenszwalb", "Felzenszwalb"),
    ("slic", "SLIC"),
    ("pixel_kmeans", "k-means pixels"),
    ("pixel_persistent", "Pixels+diff. P"),
    ("cuts_spectral", "CUTS+spectral"),
    ("cuts_persistent", "CUTS+diff. P"),
    ("cuts_best", "CUTS best level"),
    # peer methods (drawn when they ran)
    ("gmm", "GMM thr. (CGC)"),
    ("s3net", "S3-Net"),
    ("infomax_persistent", "Infomax+diff. P"),
    ("iic_persistent", "IIC+diff. P"),
    ("atlas", "Atlas (1 mask)"),
]


def draw_masks(samples, maps, path: Path, n_images: int = 4) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from CUTSSegmentationLib.condense.binarize import binarize_with_hint
    from CUTSSegmentationLib.evaluate.metrics import dice

    have = [s for s in samples if s.name in maps]

    def mask_of(s, key):
        m = maps[s.name]
        if key == "cuts_best":
            cands = [binarize_with_hint(level, s.truth) for level in m["cuts_levels"]]
            return max(cands, key=lambda c: dice(c, s.truth))
        return binarize_with_hint(m[key], s.truth)

    scored = sorted(have, key=lambda s: dice(mask_of(s, "cuts_persistent"), s.truth))
    picks = [scored[int(round(q * (len(scored) - 1)))] for q in np.linspace(0.1, 0.95, n_images)]
    picks = list({s.name: s for s in picks}.values())
    present = set().union(*(maps[s.name].keys() for s in have)) | {"cuts_best"}
    methods = [(k, n) for k, n in MASK_METHODS if k in present]
    cols = len(methods) + 1
    fig, axes = plt.subplots(len(picks), cols, figsize=(1.45 * cols, 1.6 * len(picks)), squeeze=False)
    for r, s in enumerate(picks):
        axes[r, 0].imshow(s.rgb)
        _contour(axes[r, 0], s.truth, "lime")
        axes[r, 0].set_title(f"{s.name}", fontsize=7)
        _off(axes[r, 0])
        for c, (key, name) in enumerate(methods, start=1):
            ax = axes[r, c]
            _off(ax)
            if key not in maps[s.name] and key != "cuts_best":
                continue
            mask = mask_of(s, key)
            overlay = s.rgb.astype(float) / 255.0 * 0.6
            overlay[mask] = overlay[mask] * 0.4 + np.array([1.0, 0.15, 0.15]) * 0.6
            ax.imshow(overlay)
            _contour(ax, s.truth, "lime", 0.8)
            ax.set_title(f"{name}\nDice {dice(mask, s.truth):.2f}", fontsize=6)
    fig.suptitle("Label-hint masks (red) against the expert GA mask (green), seed 0", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_dice(res, path: Path, paper: dict, methods) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [m for m in methods if m.key in res.values or m.paper]
    y = np.arange(len(rows))[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.38 * len(rows) + 1.0))
    for yi, m in zip(y, rows):
        if m.key in res.values:
            hint, hse = res.summary(m.key, "hint", "dice")
            seed, sse = res.summary(m.key, "seed", "dice")
            color = "#2a6fb0" if m.key.startswith("cuts") else ("#d08a2a" if m.group == "peer" else "#8a8a8a")
            ax.barh(
                yi + 0.18,
                hint,
                0.34,
                xerr=hse,
                color=color,
                ecolor="black",
                capsize=2,
                label="ours, label hint" if yi == y[0] or m is rows[0] else None,
            )
            ax.barh(yi - 0.18, seed, 0.34, xerr=sse, color=color, alpha=0.45, ecolor="black", capsize=2)
            ax.text(hint + hse + 0.01, yi + 0.18, f"{hint:.3f}", va="center", fontsize=7)
        if m.paper:
            ax.plot(m.paper[0], yi + 0.18, "kD", ms=4.5)
    ax.set_yticks(y)
    ax.set_yticklabels([m.name for m in rows], fontsize=7.5)
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("Dice (mean ± SE over images, mean over seeds)")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    ax.legend(
        handles=[
            Patch(color="#2a6fb0", label="ours, label hint"),
            Patch(color="#d08a2a", label="peer methods (label hint)"),
            Patch(color="#2a6fb0", alpha=0.45, label="ours, seed point (innermost pixel)"),
            Line2D([], [], color="k", marker="D", ls="", ms=4.5, label="paper, Table 1"),
        ],
        fontsize=7,
        loc="lower right",
    )
    ax.set_title("Retina GA, Dice per method: ours vs the CUTS paper", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_all(res, maps, samples, outdir: Path, paper: dict, methods) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    paths = [outdir / "retina-levels.png", outdir / "retina-masks.png", outdir / "retina-dice.png"]
    draw_levels(samples, maps, paths[0])
    draw_masks(samples, maps, paths[1])
    draw_dice(res, paths[2], paper, methods)
    return paths
