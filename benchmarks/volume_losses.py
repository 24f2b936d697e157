"""Why the click loses where it loses: what the whole-volume hierarchy holds under the click, level by level.

For each case where the 3D benchmark's headline click is below the case's best baseline or below 0.6 (read from
``benchmarks/results/volumes3d.json``), on the benchmark's own cached self-trained run:

- the seed's chain (the connected region under the click at every level, finest first): its voxels and its Dice
  against the reference. The chain's best member is an oracle: the most any single click on this hierarchy could
  keep without the closer look, growth or snap. Low everywhere: the hierarchy never separates the structure (the
  encoder and condensation lose it). High somewhere but not where the click took it: the level choice loses it.
- the engine's click (what ``cuts binarize --seed`` keeps) and where it came from (level, or the closer look's box).

It prints one markdown row per case and draws, per case, the axial slice through the click (reference green,
engine red, the chain's best member blue) beside the chain: Dice per level (black), member size over the
reference's (grey, log scale), the engine's Dice (red) and the best baseline's (yellow dashes).

    python benchmarks/volume_losses.py --figure docs/figures/volumes3d_losses.png
    python benchmarks/volume_losses.py sarcoma-sts001-pet lung1-001-ct-cord

Labels score; they choose nothing the engine does. Needs the benchmark's cache for the engine sources of the
checkout (else the runs are computed, minutes per volume).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from volume_cases import ALL_CASES, Case, load_reference, select_cases, volumes_dir  # noqa: E402
from volume_engine import EngineRun, benchmark_runs, engine_source_hash, innermost_point  # noqa: E402
from volume_figures import COLOURS, draw_slice  # noqa: E402
from volume_scoring import best_baseline, dice  # noqa: E402

RESULTS = HERE / "results" / "volumes3d.json"
CHAIN_COLOUR = "#1f77ff"
WEAK_DICE = 0.6


@dataclass
class Loss:
    """One case's click beside its hierarchy's chain under the click."""

    case: str
    structure_voxels: int
    engine_dice: float
    engine_origin: str
    baseline: str
    baseline_dice: float
    chain_dice: np.ndarray
    chain_voxels: np.ndarray
    image: np.ndarray
    reference: np.ndarray
    engine: np.ndarray
    best_member: np.ndarray
    seed_yx: tuple[int, int]
    aspect: float

    @property
    def best_level(self) -> int:
        return int(np.argmax(self.chain_dice))


def losing_cases(results: dict) -> list[str]:
    """Names of the cases whose headline click is below their best baseline or below `WEAK_DICE`."""
    names = []
    for row in results["cases"]:
        run = (row.get("engine") or {}).get("self-trained")
        if not run:
            continue
        click = run["clicks"][results["headline_click"]]["dice"]
        if click < WEAK_DICE or click < row["baselines"][best_baseline(row)]["dice"]:
            names.append(row["case"])
    return names


def chain_scores(
    run: EngineRun, seed_xyz: Sequence[int], truth: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dice and voxels of every member of the seed's chain (finest level first) and the best member's mask."""
    from CUTSSegmentationLib.condense.binarize import seed_to_index
    from CUTSSegmentationLib.condense.structures import chain_member, seed_chain

    levels = run.hierarchy.levels
    chain = seed_chain(levels, seed_to_index(seed_xyz, levels.shape[1:]))
    scores = np.zeros(len(chain.sizes))
    best, best_mask = -1.0, None
    for level in range(len(chain.sizes)):
        if level and chain.sizes[level] == chain.sizes[level - 1]:
            scores[level] = scores[level - 1]  # the same region as the finer level's
            continue
        member = chain_member(levels, chain, level)
        scores[level] = dice(member, truth)
        if scores[level] > best:
            best, best_mask = scores[level], member
    return scores, np.asarray(chain.sizes), best_mask


def measure(cases: Sequence[Case], results: dict) -> list[Loss]:
    from CUTSSegmentationLib import pipeline
    from CUTSSegmentationLib.io.sequences import read_sequences
    from CUTSSegmentationLib.learn.modelfile import load_model

    rows = {row["case"]: row for row in results["cases"]}
    losses = []
    for group, volume, run in benchmark_runs(cases):
        image = read_sequences(list(run.inputs))  # what `cuts binarize --seed` reads, once per volume
        model = load_model(run.model, device="cpu") if run.model is not None else None
        for case in group:
            truth = load_reference(case, volumes_dir())
            seed = innermost_point(truth, volume.spacing)
            structure = pipeline.structure_at_click(run.hierarchy, seed, image, model, device="cpu")
            chain_dice, chain_voxels, best_member = chain_scores(run, seed, truth)
            row = rows[case.name]
            baseline = best_baseline(row)
            origin = f"level {structure.level}" if structure.box_mm is None else f"{structure.box_mm:.0f} mm box"
            z = int(seed[2])
            losses.append(
                Loss(
                    case=case.name,
                    structure_voxels=int(np.count_nonzero(truth)),
                    engine_dice=dice(structure.mask, truth),
                    engine_origin=origin,
                    baseline=baseline,
                    baseline_dice=row["baselines"][baseline]["dice"],
                    chain_dice=chain_dice,
                    chain_voxels=chain_voxels,
                    image=volume.channels[case.baseline_input][z],
                    reference=truth[z],
                    engine=structure.mask[z],
                    best_member=best_member[z],
                    seed_yx=(int(seed[1]), int(seed[0])),
                    aspect=volume.spacing[1] / volume.spacing[0],
                )
            )
            print(markdown_row(losses[-1]), flush=True)
    return losses


def _times(ratio: float) -> str:
    """A size ratio as the table writes it: two significant digits, whole numbers from 10 on."""
    return f"{ratio:,.0f} x" if ratio >= 10 else f"{ratio:.2g} x"


def markdown_row(loss: Loss) -> str:
    finest = loss.chain_voxels[0] / loss.structure_voxels
    best = loss.best_level
    return (
        f"| {loss.case} | {loss.structure_voxels:,} | {loss.engine_dice:.2f} ({loss.engine_origin}) "
        f"| {loss.baseline_dice:.2f} ({loss.baseline}) | {_times(finest)} "
        f"| {loss.chain_dice[best]:.2f} (level {best}, {_times(loss.chain_voxels[best] / loss.structure_voxels)}) |"
    )


TABLE_HEADER = (
    "| case | reference voxels | engine click (from) | best baseline | finest region under the click "
    "(x reference) | chain's best member (oracle; x reference) |\n|---|---|---|---|---|---|"
)


def draw(losses: Sequence[Loss], path: Path, per_row: int = 2) -> Path:
    """Per case: the slice through the click, and the chain's Dice and size per level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator, NullFormatter

    rows = math.ceil(len(losses) / per_row)
    fig, axes = plt.subplots(rows, 2 * per_row, figsize=(4.8 * per_row, 2.4 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, loss in enumerate(losses):
        ax_slice, ax_chain = axes[i // per_row, 2 * (i % per_row)], axes[i // per_row, 2 * (i % per_row) + 1]
        outlines = [
            (loss.reference, COLOURS["reference"]),
            (loss.engine, COLOURS["engine"]),
            (loss.best_member, CHAIN_COLOUR),
        ]
        draw_slice(ax_slice, loss.image, outlines, loss.seed_yx, loss.aspect, loss.reference | loss.engine)
        ax_slice.set_title(loss.case, fontsize=7)

        ax_chain.axis("on")
        levels = np.arange(len(loss.chain_dice))
        ax_chain.plot(levels, loss.chain_dice, "-o", color="black", ms=2.5, lw=1)
        ax_chain.axhline(loss.engine_dice, color=COLOURS["engine"], lw=1)
        ax_chain.axhline(loss.baseline_dice, color="#d4b000", lw=1, ls="--")
        ax_chain.set_ylim(0, 1)
        ax_chain.set_xlabel("level (finest first)", fontsize=6)
        ax_chain.set_ylabel("Dice", fontsize=6)
        ax_chain.tick_params(labelsize=5.5)
        ax_chain.xaxis.set_major_locator(MaxNLocator(integer=True))
        sizes = ax_chain.twinx()
        sizes.semilogy(levels, loss.chain_voxels / loss.structure_voxels, color="grey", lw=1)
        sizes.axhline(1.0, color="grey", lw=0.5, ls=":")
        sizes.tick_params(labelsize=5.5)
        sizes.yaxis.set_minor_formatter(NullFormatter())
        sizes.set_ylabel("region / reference", fontsize=6)
        ax_chain.set_title(
            f"engine {loss.engine_dice:.2f} ({loss.engine_origin}), chain best {loss.chain_dice[loss.best_level]:.2f}",
            fontsize=6.5,
        )
    handles = [
        Line2D([0], [0], color=COLOURS["reference"], lw=1.5),
        Line2D([0], [0], color=COLOURS["engine"], lw=1.5),
        Line2D([0], [0], color=CHAIN_COLOUR, lw=1.5),
        Line2D([0], [0], color="black", lw=1.5),
        Line2D([0], [0], color="grey", lw=1.5),
        Line2D([0], [0], color="#d4b000", lw=1.5, ls="--"),
    ]
    labels = [
        "reference",
        "engine (click)",
        "chain's best member (oracle)",
        "chain member's Dice",
        "chain member's size / reference's",
        "best baseline's Dice",
    ]
    fig.legend(handles, labels, loc="lower center", ncol=6, fontsize=6.5, frameon=False)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", help="case name patterns (default: the benchmark's losing cases)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the 3D benchmark's results JSON")
    parser.add_argument("--figure", type=Path, help="write the figure here")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    names = args.cases or losing_cases(results)
    cases = [c for c in select_cases(names, ALL_CASES) if c.name in {r["case"] for r in results["cases"]}]
    if not cases:
        parser.error("no case of the results matches")
    if results["engine_source_hash"] != engine_source_hash():
        print(
            f"warning: the results are of engine sources {results['engine_source_hash']}, this checkout's are "
            f"{engine_source_hash()}: its runs are computed anew and the baselines' Dice may not match them"
        )
    print(f"engine sources {engine_source_hash()}\n{TABLE_HEADER}", flush=True)
    losses = measure(cases, results)
    if args.figure:
        print(f"figure: {draw(losses, args.figure)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
