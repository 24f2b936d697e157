"""The snap to the image's edge (`condense/edge_snap.py`), case by case, beside what a sceptic would try instead.

For every case of the 3D benchmark, on its own runs: the headline click (`volume_engine.CLICKS["engine"]`, what
`cuts binarize --seed` keeps) and the same click without the snap (grown to the edge or not, as the click chose);
then, on that same structure, the rules not kept: a plain spacing-aware dilation by 1 and 2 mm (the structure
is short of the outline everywhere), the watershed's outline both ways (the snap may also cut the structure),
the snap with no check that its outline is an edge, a wider band (5 mm) and a deeper one (a third of the
structure's depth). Means over the expert cases, and a figure: the axial slice through the click of each case
the snap changed, with the reference, the structure before and after outlined.

    python benchmarks/volume_snap.py [CASES ...] [--figure docs/figures/edge_snap.png] [--json PATH]

Runs are the benchmark's (self-trained, defaults, cached under benchmarks/.cache/volumes3d; one that is
missing is computed as the benchmark computes it). Labels score; they never choose anything.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Optional
from unittest import mock

import numpy as np
from scipy import ndimage as ndi

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import volume_engine as engine  # noqa: E402
from volume_cases import ALL_CASES, Case, load_reference, select_cases, volumes_dir  # noqa: E402
from volume_figures import click_panel, draw_cases  # noqa: E402
from volume_scoring import dice  # noqa: E402

from CUTSSegmentationLib import pipeline  # noqa: E402
from CUTSSegmentationLib.condense import edge_snap, structures  # noqa: E402
from CUTSSegmentationLib.condense.boundary import padded_box  # noqa: E402
from CUTSSegmentationLib.core.distances import squared_distance_to  # noqa: E402
from CUTSSegmentationLib.core.imagedata import voxel_size_zyx  # noqa: E402


@contextlib.contextmanager
def _snaps_recorded() -> Iterator[list[tuple[np.ndarray, np.ndarray, Any]]]:
    """Within: every snap the click asks for is recorded (region, image, spacing) and not applied."""
    seen: list[tuple[np.ndarray, np.ndarray, Any]] = []

    def record(region, image, spacing_xyz=None, **_):
        seen.append((region, image, spacing_xyz))
        return region

    with mock.patch.object(structures, "snap_outward", record), mock.patch.object(pipeline, "snap_outward", record):
        yield seen


def dilated_mm(region: np.ndarray, spacing_xyz: Sequence[float], mm: float) -> np.ndarray:
    """`region` with every voxel within `mm` of it (spacing-aware): the snap's plainest alternative."""
    spacing = voxel_size_zyx(spacing_xyz, region.ndim)
    box = padded_box(
        ndi.find_objects(region.view(np.uint8))[0], region.shape, [int(np.ceil(mm / s)) + 1 for s in spacing]
    )
    out = region.copy()
    out[box] |= squared_distance_to(region[box], spacing) <= mm * mm
    return out


def snapped_both_ways(region: np.ndarray, image: np.ndarray, spacing_xyz: Sequence[float]) -> np.ndarray:
    """The watershed's outline in the snap's band, taken as it is: it may also cut into the structure."""
    outline = edge_snap.snap_outline(region, image, spacing_xyz)
    out = region.copy()
    if outline is not None:
        box, mask = outline
        out[box] = mask
    return out


#: Rules measured beside the engine's snap, on the same unsnapped structure: name -> f(region, image, spacing).
ALTERNATIVES: dict[str, Callable[[np.ndarray, np.ndarray, Any], np.ndarray]] = {
    "dilated 1 mm": lambda region, image, spacing: dilated_mm(region, spacing, 1.0),
    "dilated 2 mm": lambda region, image, spacing: dilated_mm(region, spacing, 2.0),
    "both ways": snapped_both_ways,
    "no edge check": lambda region, image, spacing: edge_snap.snap_outward(region, image, spacing, min_contrast=0.0),
    "band 5 mm": lambda region, image, spacing: edge_snap.snap_outward(region, image, spacing, reach_mm=5.0),
    "depth / 3": lambda region, image, spacing: edge_snap.snap_outward(region, image, spacing, depth_fraction=1 / 3),
}


def probe_snap(cases: Sequence[Case], figure: Optional[Path], json_path: Optional[Path]) -> None:
    root = volumes_dir()
    names = ["unsnapped", "engine", *ALTERNATIVES]
    totals: dict[str, list[float]] = {name: [] for name in names}
    rows: list[dict[str, Any]] = []
    panels: list[dict[str, Any]] = []
    for group, volume, run in engine.benchmark_runs(cases):
        for case in group:
            truth = load_reference(case, root).astype(bool)
            seed = engine.innermost_point(truth, volume.spacing)
            with _snaps_recorded() as seen:
                unsnapped = engine.CLICKS["engine"](run, seed, volume.spacing)
            region, image, spacing = next(r for r in reversed(seen) if np.array_equal(r[0], unsnapped))
            kept = edge_snap.snap_outward(region, image, spacing)
            scores = {"unsnapped": dice(unsnapped, truth), "engine": dice(kept, truth)}
            for name, rule in ALTERNATIVES.items():
                scores[name] = dice(rule(region, image, spacing), truth)
            added = int(kept.sum() - unsnapped.sum())
            rows.append({"case": case.name, "group": case.group, "added_voxels": added, "dice": scores})
            if case.group == "expert":
                for name, value in scores.items():
                    totals[name].append(value)
            print(
                f"{case.name} (+{added:,} voxels): " + ", ".join(f"{n} {v:.3f}" for n, v in scores.items()), flush=True
            )
            if added and case.group != "multi-sequence":
                title = f"{case.name}\n{scores['unsnapped']:.2f} -> {scores['engine']:.2f}"
                panels.append(click_panel(title, volume.image, volume.spacing, seed, truth, kept, unsnapped))
    means = {name: float(np.mean(values)) for name, values in totals.items() if values}
    if means:
        print(f"MEAN over {len(totals['engine'])} expert cases: " + ", ".join(f"{n} {v:.3f}" for n, v in means.items()))
    if json_path is not None:
        json_path.write_text(
            json.dumps({"engine": engine.engine_source_hash(), "rows": rows, "means": means}, indent=1)
        )
    if figure is not None and panels:
        draw_cases(
            panels, figure, columns=max(3, min(5, len(panels))), legend=("reference", "snapped (click)", "unsnapped")
        )
        print(f"figure -> {figure}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", help="case names (substrings); every case when none")
    parser.add_argument("--figure", type=Path, default=None, help="PNG of the cases the snap changed")
    parser.add_argument("--json", type=Path, default=None, help="write the scores here")
    args = parser.parse_args(argv)
    cases = select_cases(args.cases, ALL_CASES)
    if not cases:
        parser.error(f"no case matches {args.cases}")
    probe_snap(cases, args.figure, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
