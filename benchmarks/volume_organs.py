"""Every structure of a multi-organ reference: how the click does on structures its rules were not measured on.

The click's rules (the size rule, the image's edges, the growth, the closer look) were measured on the 13 expert
structures of `volumes3d.py`. TotalSegmentator's example CT and MRI of the trunk carry its own output for the
organs, vessels, bones and muscles they hold: a pseudo-reference (a model's output, not an expert's), but some 40
structures no rule was read off. Every structure of at least `MIN_VOXELS` voxels is clicked at its innermost voxel
(as in `volumes3d.py`) and scored: the engine's headline click on the volume's self-trained run (the same cached
run as `volumes3d.py`) beside the same seed-point baselines, in the same run.

    python benchmarks/volume_organs.py             # both volumes: a markdown table and the means
    python benchmarks/volume_organs.py --json out.json --figure docs/figures/volume_organs.png

"engine, whole volume" is the click without the closer look (`pipeline.structure_at_click(look_closer=False)`);
the figure shows the axial slice through each click where the closer look changed what the click keeps.

A click that no method can win (a lung lobe, whose fissure the scan does not resolve at 3 mm) stays in: the
table says what the engine does on whatever a clinician may click.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import volume_baselines as baselines  # noqa: E402
import volume_engine as engine  # noqa: E402
from volume_cases import read_array, volumes_dir  # noqa: E402
from volume_figures import draw_cases  # noqa: E402
from volume_scoring import score  # noqa: E402
from volumes3d import score_baselines  # noqa: E402

#: Structures smaller than this (voxels of the reference) are left out: at 3 mm a 500-voxel structure is 13.5 ml.
MIN_VOXELS = 500
#: The seed-point baselines reported (the k-means family's best k is reported beside them, an oracle).
BASELINES: tuple[str, ...] = (
    "k-means k=5 + component",
    "region growing (ConfidenceConnected)",
    "SLIC 50 (supervoxel at seed)",
    "SLIC 500 (supervoxel at seed)",
)
KMEANS_BEST = "k-means best k + component"
WHOLE_VOLUME = "engine, whole volume"


@dataclass(frozen=True)
class MultiOrganVolume:
    """A scan and its multi-label pseudo-reference; `names` maps the label ids kept to what they hold."""

    key: str
    image: str
    labels: str
    names: dict[int, str]


#: Label ids of TotalSegmentator's `total` (CT) and `total_mr` (MRI) tasks present in the example files with at
#: least `MIN_VOXELS` voxels. The MRI's 46 / 47 lie behind the vertebrae on either side and 48 / 49 beside them
#: in the lowest slices (the autochthonous back muscles and the psoas; the task's numbering differs between its
#: versions), the rest as the task lists them.
VOLUMES: tuple[MultiOrganVolume, ...] = (
    MultiOrganVolume(
        "totalseg CT",
        "totalseg/example_ct_sm.nii.gz",
        "totalseg/example_seg.nii.gz",
        {
            1: "spleen",
            2: "right kidney",
            3: "left kidney",
            4: "gallbladder",
            5: "liver",
            6: "stomach",
            7: "pancreas",
            11: "left lung, lower lobe",
            14: "right lung, lower lobe",
            18: "small bowel",
            19: "duodenum",
            20: "colon",
            30: "vertebra L2",
            31: "vertebra L1",
            32: "vertebra T12",
            52: "aorta",
            63: "inferior vena cava",
            64: "portal and splenic vein",
            86: "left back muscles (autochthon)",
            87: "right back muscles (autochthon)",
            117: "costal cartilages",
        },
    ),
    MultiOrganVolume(
        "totalseg MRI",
        "totalseg/example_mr_sm.nii.gz",
        "totalseg/example_seg_mr.nii.gz",
        {
            1: "spleen",
            2: "right kidney",
            3: "left kidney",
            4: "gallbladder",
            5: "liver",
            6: "stomach",
            7: "pancreas",
            14: "duodenum",
            15: "colon",
            19: "vertebrae",
            20: "intervertebral discs",
            21: "spinal cord",
            23: "aorta",
            25: "portal and splenic vein",
            46: "left back muscles (autochthon)",
            47: "right back muscles (autochthon)",
        },
    ),
)


def score_structure(
    run: engine.EngineRun, image: np.ndarray, spacing: Sequence[float], reference: np.ndarray
) -> dict[str, Any]:
    """The engine's headline click and every baseline of `volumes3d.py` at the structure's innermost voxel."""
    seed = engine.innermost_point(reference, spacing)
    row: dict[str, Any] = {"voxels": int(np.count_nonzero(reference)), "seed_xyz": [int(v) for v in seed]}
    kept = engine.CLICKS[engine.headline_click()](run, seed, spacing)
    whole = engine.CLICKS["engine (whole volume)"](run, seed, spacing)
    row["engine"] = score(kept, reference, spacing)
    row[WHOLE_VOLUME] = score(whole, reference, spacing)
    if not np.array_equal(kept, whole):
        z = int(seed[2])
        row["panel"] = {"image": image[z], "reference": reference[z], "engine": kept[z], "baseline": whole[z]}
    row.update(score_baselines(image, spacing, seed, reference)[0])
    best = max((*BASELINES, KMEANS_BEST), key=lambda n: row[n]["dice"])
    row["best baseline"] = {**row[best], "choice": best}
    return row


def evaluate(volume: MultiOrganVolume, root: Path, seed: int = 0) -> dict[int, dict[str, Any]]:
    """Every kept structure of one volume, scored (the engine's run, with training and condensation `seed`, cached
    as `volumes3d.py` caches it)."""
    path = root / volume.image
    image, spacing = read_array(path)
    image = image.astype(np.float32, copy=False)
    labels, _ = read_array(root / volume.labels)
    hierarchy, _ = engine.run_segment([path], {"seed": seed, "train_epochs": None})
    run = engine.load_run(hierarchy, [path])
    rows = {}
    for label, name in volume.names.items():
        reference = labels == label
        if np.count_nonzero(reference) < MIN_VOXELS:
            continue
        rows[label] = {"structure": name, **score_structure(run, image, spacing, reference)}
        r = rows[label]
        if "panel" in r:
            seed = r["seed_xyz"]
            r["panel"].update(
                title=f"{volume.key[9:]}: {name}\n{r[WHOLE_VOLUME]['dice']:.2f} -> {r['engine']['dice']:.2f}",
                seed_yx=(seed[1], seed[0]),
                aspect=spacing[1] / spacing[0],
            )
        print(
            f"{volume.key}: {name}: engine {r['engine']['dice']:.3f}, best baseline {r['best baseline']['dice']:.3f}"
            f" ({r['best baseline']['choice']})",
            flush=True,
        )
    baselines.clear_memo()
    return rows


def markdown(results: dict[str, dict[int, dict[str, Any]]]) -> str:
    """The per-structure table (Dice / HD95 mm) and the means over every structure."""
    columns = ("engine", WHOLE_VOLUME, KMEANS_BEST, *BASELINES)
    lines = [
        "| volume: structure (voxels) | **engine** | " + " | ".join(columns[1:]) + " | best baseline |",
        "|---" * (len(columns) + 2) + "|",
    ]
    for key, rows in results.items():
        for row in rows.values():
            cells = [f"{row[c]['dice']:.2f} / {row[c]['hd95_mm']:.0f}" for c in columns]
            cells[0] = f"**{cells[0]}**"
            best = row["best baseline"]
            lines.append(
                f"| {key}: {row['structure']} ({row['voxels']:,}) | "
                + " | ".join(cells)
                + f" | {best['dice']:.2f} ({best['choice']}) |"
            )
    rows = [row for rows in results.values() for row in rows.values()]
    means = {c: float(np.mean([row[c]["dice"] for row in rows])) for c in (*columns, "best baseline")}
    above = sum(row["engine"]["dice"] > row["best baseline"]["dice"] for row in rows)
    lines.append("")
    lines.append(
        f"Mean seed-point Dice over the {len(rows)} structures: "
        + "; ".join(f"{c} {m:.3f}" for c, m in means.items())
        + f". The engine above the case's best baseline on {above} of {len(rows)}."
    )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="write every score here")
    parser.add_argument("--figure", type=Path, help="write the slices where the closer look changed the click here")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the engine's training and condensation (default 0)"
    )
    args = parser.parse_args(argv)
    root = volumes_dir()
    results = {volume.key: evaluate(volume, root, args.seed) for volume in VOLUMES}
    print(markdown(results))
    panels = [row.pop("panel") for rows in results.values() for row in rows.values() if "panel" in row]
    if args.figure and panels:
        legend = ("reference", "engine (click)", "whole-volume structure")
        draw_cases(panels, args.figure, columns=max(3, min(5, len(panels))), legend=legend)
        print(f"figure -> {args.figure}")
    if args.json:
        args.json.write_text(json.dumps({k: {str(i): r for i, r in v.items()} for k, v in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
