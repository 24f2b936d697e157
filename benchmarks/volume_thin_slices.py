"""A thin-slice CT over the working grid's cap: blocks along z as well as in-plane, against in-plane blocks alone.

Clinical CTs are often cut in slices of 1 mm or less (512 x 512 x 400 and more), far above the 9 M voxels the
engine works on. Averaging in-plane alone would give 4 x 4 blocks: 3.9 mm pixels over 1 mm slices. The engine's
blocks (`core.working_grid.working_factors`) make the coarsest side the shortest. No thin-slice scan with expert
contours is in the development set, so the thorax CT (3 mm slices, `volumes3d.py`) is resampled to 1 mm slices
(linear along z; its labels nearest): the same anatomy on a thin-slice grid, smoother along z than a scan cut
thin would be. Both grids run in the same process with the same seed, through the user's path (self-trained,
`pipeline.structure_at_click` at each structure's innermost voxel), scored on the resampled grid.

    python benchmarks/volume_thin_slices.py            # a markdown table: Dice / HD95, time, peak memory
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from volume_cases import volumes_dir  # noqa: E402
from volume_scoring import score  # noqa: E402

from CUTSSegmentationLib import pipeline  # noqa: E402
from CUTSSegmentationLib.condense.binarize import innermost_point  # noqa: E402
from CUTSSegmentationLib.core.working_grid import working_factors  # noqa: E402
from CUTSSegmentationLib.io.reading import read_image  # noqa: E402

#: Label ids of the thorax CT's reference and what they hold.
STRUCTURES = {4: "GTV", 3: "spinal cord", 1: "left lung", 2: "right lung"}
#: Slice thickness (mm) the scan is resampled to.
THIN_MM = 1.0


def resampled_thorax(out_dir: Path) -> tuple[Path, Path]:
    """The thorax CT and its labels resampled to `THIN_MM` slices (written once to `out_dir`)."""
    import SimpleITK as sitk

    source = volumes_dir() / "lung"
    paths = (out_dir / "thorax_1mm_ct.nii.gz", out_dir / "thorax_1mm_label.nii.gz")
    if all(p.is_file() for p in paths):
        return paths
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, out, interpolator in zip(
        ("LUNG1-001_ct.nii.gz", "LUNG1-001_label.nii.gz"), paths, (sitk.sitkLinear, sitk.sitkNearestNeighbor)
    ):
        image = sitk.ReadImage(str(source / name))
        sx, sy, sz = image.GetSpacing()
        nx, ny, nz = image.GetSize()
        size = (nx, ny, int((nz - 1) * sz / THIN_MM) + 1)  # the first and last slices' centres stay
        resampled = sitk.Resample(
            image, size, sitk.Transform(), interpolator, image.GetOrigin(), (sx, sy, THIN_MM), image.GetDirection()
        )
        sitk.WriteImage(resampled, str(out))
    return paths


def in_plane_only(shape_zyx: Sequence[int], max_voxels: int = 9_000_000) -> tuple[int, int, int]:
    """The smallest f x f in-plane blocks that fit `max_voxels` (slices untouched)."""
    z, y, x = shape_zyx
    f = 1
    while z * -(-y // f) * -(-x // f) > max_voxels:
        f += 1
    return (1, f, f)


def run(grid: tuple[int, int, int], image, labels: np.ndarray) -> dict:
    """Segment on `grid` blocks, click every structure; scores, stage times and the process's peak memory."""
    start = time.perf_counter()
    hierarchy, model = pipeline.segment_with_encoder(image, device="cpu", seed=0, working_grid=grid)
    row: dict = {"segment_s": time.perf_counter() - start, "timings": hierarchy.info["timings"], "scores": {}}
    row["segment_peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    for value, name in STRUCTURES.items():
        truth = labels == value
        seed = innermost_point(truth, image.geometry.spacing)
        start = time.perf_counter()
        kept = pipeline.structure_at_click(hierarchy, seed, image, model, device="cpu")
        row["scores"][name] = {
            **score(kept.mask, truth, image.geometry.spacing),
            "click_s": time.perf_counter() - start,
        }
    row["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return row


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=HERE / ".cache" / "thin_slices", help="resampled scan")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # one grid, in a child process: its own peak memory
    args = parser.parse_args(argv)
    import SimpleITK as sitk

    image_path, label_path = resampled_thorax(args.cache)
    image = read_image(image_path)
    shape = image.array.shape[:3]
    grids = {"in-plane blocks only": in_plane_only(shape), "engine (working_factors)": working_factors(image)}
    if args.only:
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path)))
        print(json.dumps(run(grids[args.only], image, labels)))
        return 0
    rows = {}
    for name in grids:
        child = [sys.executable, str(Path(__file__).resolve()), "--cache", str(args.cache), "--only", name]
        out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        rows[name] = json.loads(out.strip().splitlines()[-1])
    sx, _, sz = image.geometry.spacing
    print(f"thorax CT resampled to {shape[2]} x {shape[1]} x {shape[0]} voxels, {sx:.2f} x {sx:.2f} x {sz:g} mm\n")
    names = list(STRUCTURES.values())
    print(
        "| grid (blocks z, y, x) | working voxel (mm) | "
        + " | ".join(names)
        + " | segment s | peak GB (segmenting / with the clicks) |"
    )
    print("|---" * (len(names) + 4) + "|")
    for name, grid in grids.items():
        row = rows[name]
        cells = [f"{row['scores'][n]['dice']:.3f} / {row['scores'][n]['hd95_mm']:.0f}" for n in names]
        voxel = f"{sx * grid[2]:.2f} x {sx * grid[1]:.2f} x {sz * grid[0]:g}"
        print(
            f"| {name} {grid} | {voxel} | "
            + " | ".join(cells)
            + f" | {row['segment_s']:.0f} | {row['segment_peak_gb']:.1f} / {row['peak_gb']:.1f} |"
        )
    clicks = (f"{name}: " + ", ".join(f"{n} {rows[name]['scores'][n]['click_s']:.0f}" for n in names) for name in grids)
    print("\nclick seconds: " + "; ".join(clicks))
    print("stage seconds: " + "; ".join(f"{name}: {rows[name]['timings']}" for name in grids))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
