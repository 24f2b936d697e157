"""The growth to the image's edge (`condense/edge_growth.py`), case by case, on the 3D benchmark's own runs.

For every case: the headline click (`volume_engine.CLICKS["engine"]`, what `cuts binarize --seed` keeps: grown,
then snapped to the edge) and the same click without the growth and the snap (the hierarchy's member, or the
closer look's, as the click chose it), with their Dice and how far the structure grew; then the growth with
other windows and settling fractions on the same members, and grown again from each kept growth (rules not
kept); the kept structure with its enclosed holes filled (in 3D, or in the slices of every orientation) and with
its boundary moved to the intensity midpoint between its inside and its shell (steps not kept); and a figure:
the axial slice through the click of each case the growth changed, with the reference, the member and the grown
structure outlined.

    python benchmarks/volume_growth.py [CASES ...] [--figure docs/figures/edge_growth.png]

Runs are the benchmark's (self-trained, defaults, cached under benchmarks/.cache/volumes3d; one that is
missing is computed as the benchmark computes it). Labels score; they never choose anything.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Optional
from unittest import mock

import numpy as np
from scipy import ndimage as ndi

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import volume_engine as engine  # noqa: E402
from volume_cases import CASES, Case, load_reference, select_cases, volumes_dir  # noqa: E402
from volume_figures import click_panel, draw_cases  # noqa: E402
from volume_scoring import dice  # noqa: E402

from CUTSSegmentationLib import pipeline  # noqa: E402
from CUTSSegmentationLib.condense import structures  # noqa: E402
from CUTSSegmentationLib.condense.boundary import shell_around  # noqa: E402
from CUTSSegmentationLib.condense.edge_growth import grow_to_edge  # noqa: E402
from CUTSSegmentationLib.condense.edge_snap import snap_outward  # noqa: E402

#: (window in robust spreads, settling fraction) of the rules measured beside the engine's.
VARIANTS: tuple[tuple[float, float], ...] = ((2.5, 0.05), (3.0, 0.05), (2.0, 0.03), (2.0, 0.10))


@contextlib.contextmanager
def _growth_recorded() -> Iterator[list[tuple[np.ndarray, np.ndarray, Any]]]:
    """Within: every growth the click asks for is recorded (region, image, spacing) and not applied, nor the
    snap to the edge after it (`condense/edge_snap.py`, measured by volume_snap.py)."""
    seen: list[tuple[np.ndarray, np.ndarray, Any]] = []

    def record(region, image, spacing_xyz=None, **_):
        seen.append((region, image, spacing_xyz))
        return region, None

    def unsnapped(region, image, spacing_xyz=None, **_):
        return region

    with contextlib.ExitStack() as patches:
        for module in (structures, pipeline):
            patches.enter_context(mock.patch.object(module, "grow_to_edge", record))
            patches.enter_context(mock.patch.object(module, "snap_outward", unsnapped))
        yield seen


def _iterated(
    grown: np.ndarray, reach: Optional[float], image: np.ndarray, spacing: Any, rounds: int = 3
) -> np.ndarray:
    """`grown` grown again from its own intensities while each growth is kept, at most `rounds` more times."""
    for _ in range(rounds):
        if reach is None:
            break
        grown, reach = grow_to_edge(grown, image, spacing)
    return grown


def _holes_filled_in_slices(mask: np.ndarray) -> np.ndarray:
    """`mask` with every hole enclosed in one of its axial, coronal or sagittal slices (or in 3D) filled: the
    engine's own filling (`structures.fill_enclosed`, 3D then slice by slice) with the slices taken along each
    axis in turn."""
    out = mask.copy()
    for axis in range(mask.ndim):
        out |= np.moveaxis(structures.fill_enclosed(np.moveaxis(mask, axis, 0)), 0, axis)
    return out


def _midpoint_rim(mask: np.ndarray, image: np.ndarray, steps: int = 1) -> np.ndarray:
    """`mask` grown by up to `steps` face-neighbour layers of voxels nearer its inside's median than its
    2-voxel shell's (the boundary at the half-way intensity, where a partial-volume rim is split; channel 0)."""
    values = image[..., 0] if image.ndim == mask.ndim + 1 else image
    shell = shell_around(mask, 2)
    inside, outside = float(np.median(values[mask])), float(np.median(values[shell]))
    nearer = np.abs(values - inside) < np.abs(values - outside)
    out = mask.copy()
    for _ in range(steps):
        out |= ndi.binary_dilation(out) & nearer
    return out


#: Steps after the growth measured beside the engine's structure (not kept): name -> f(structure, image).
AFTER_GROWTH = {
    "holes filled (3D)": lambda kept, image: ndi.binary_fill_holes(kept),
    "holes filled (slices)": lambda kept, image: _holes_filled_in_slices(kept),
    "midpoint rim 1": lambda kept, image: _midpoint_rim(kept, image, 1),
    "midpoint rim 2": lambda kept, image: _midpoint_rim(kept, image, 2),
}


def probe_growth(cases: Sequence[Case], figure: Optional[Path]) -> None:
    root = volumes_dir()
    totals: dict[str, list[float]] = {"member": [], "engine": [], **{f"{k:g}/{s:g}": [] for k, s in VARIANTS}}
    totals["iterated"] = []
    totals.update({name: [] for name in AFTER_GROWTH})
    panels: list[dict[str, Any]] = []
    for group, volume, run in engine.benchmark_runs(cases):
        for case in group:
            truth = load_reference(case, root).astype(bool)
            seed = engine.innermost_point(truth, volume.spacing)
            kept = engine.CLICKS["engine"](run, seed, volume.spacing)
            with _growth_recorded() as seen:
                member = engine.CLICKS["engine"](run, seed, volume.spacing)
            # the kept structure's growth: a click in a volume also grows the closer look's structure it compares
            region, image, spacing = next(r for r in reversed(seen) if np.array_equal(r[0], member))
            grown, reach = grow_to_edge(region, image, spacing)
            assert np.array_equal(snap_outward(grown, image, spacing), kept), "the recorded growth is not the click's"
            scores = {"member": dice(member, truth), "engine": dice(kept, truth)}
            for spreads, settled in VARIANTS:
                other, _ = grow_to_edge(region, image, spacing, spreads=spreads, settled=settled)
                scores[f"{spreads:g}/{settled:g}"] = dice(other, truth)
            scores["iterated"] = dice(_iterated(grown, reach, image, spacing), truth)
            for name, step in AFTER_GROWTH.items():
                scores[name] = dice(step(kept, image), truth)
            if case.group != "sanity":
                for name, value in scores.items():
                    totals[name].append(value)
            grew = "not grown" if reach is None else f"grown {reach:g} mm (+{int(kept.sum() - member.sum()):,} voxels)"
            variants = ", ".join(f"{name} {value:.3f}" for name, value in scores.items() if "/" in name)
            after = ", ".join(f"{name} {scores[name]:.3f}" for name in AFTER_GROWTH)
            print(
                f"{case.name}: member {scores['member']:.3f} -> engine {scores['engine']:.3f} ({grew}); "
                f"other rules (window/settled) {variants}; grown again from each growth {scores['iterated']:.3f}; "
                f"after the growth: {after}",
                flush=True,
            )
            if reach is not None:
                title = f"{case.name}\n{scores['member']:.2f} -> {scores['engine']:.2f} ({reach:g} mm)"
                panels.append(click_panel(title, volume.image, volume.spacing, seed, truth, kept, member))
    if totals["member"]:
        means = ", ".join(f"{name} {np.mean(values):.3f}" for name, values in totals.items())
        print(f"MEAN over {len(totals['member'])} expert cases: {means}", flush=True)
    if figure is not None and panels:
        draw_cases(panels, figure, columns=max(3, min(5, len(panels))), legend=("reference", "grown (click)", "member"))
        print(f"figure -> {figure}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", help="case names (substrings); every single-sequence case when none")
    parser.add_argument("--figure", type=Path, default=None, help="PNG of the cases the growth changed")
    args = parser.parse_args(argv)
    cases = select_cases(args.cases, CASES)
    if not cases:
        parser.error(f"no case matches {args.cases}")
    probe_growth(cases, args.figure)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
