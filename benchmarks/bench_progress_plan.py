"""Measure the constants of the job plan's cost model (`CUTSSegmentationLib.core.job_plan.STAGE_COSTS`).

Runs the real stages on small real volumes and prints the table to paste into job_plan.py:
- training: seconds per optimiser step at the device's default crop and batch (a few steps on a BraTS FLAIR
  crop; the first step, which pays for allocations, is left out);
- embed, condensation, levels: `pipeline.segment` with that model on three volumes of different size (the spine
  T2 and two FLAIR crops); each stage's seconds = fixed + per-million-voxels x voxels, fitted by least squares;
- writing the four output files (`io.outputs.write_segmentation_outputs`), the same way.

    nice -n 5 python benchmarks/bench_progress_plan.py [--device cpu] [--steps 8] [--out progress_plan.json]

The numbers depend on the machine and its load; the plan only sets the stages' shares and the first estimate
of time left (the estimate follows the observed rate once a few percent is done).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from report import machine_facts, write_report  # noqa: E402

VOLUMES = REPO.parent / "shared" / "data" / "volumes"
if not VOLUMES.is_dir():
    VOLUMES = Path("/work/shared/data/volumes")


def flair_crop(slices: slice = slice(50, 90), rows: slice = slice(40, 200), cols: slice = slice(40, 200)):
    """A BraTS FLAIR crop (40 x 160 x 160 by default): a brain-sized in-plane field, fewer slices."""
    from dataclasses import replace

    from CUTSSegmentationLib.io.reading import read_image

    image = read_image(VOLUMES / "brats" / "pat0001" / "flair.nii.gz")
    return replace(image, array=np.ascontiguousarray(image.array[slices, rows, cols]), source="flair crop")


def seconds_per_step(image, device: str, steps: int):
    """Median seconds per training step (the first left out) at the device's default crop and batch."""
    from CUTSSegmentationLib.pipeline import train

    stamps: list[float] = []

    def record(stage: str, fraction: float, message: str = "") -> None:
        if stage == "train" and 0.0 < fraction:
            stamps.append(time.perf_counter())

    model = train([image], epochs=1, device=device, slices_per_epoch=16 * (steps + 1), progress=record)
    crop = int(model.card["training"]["crop_size"])
    return float(np.median(np.diff(stamps))), crop, model


def stage_seconds(model, image, device: str) -> dict[str, float]:
    """Seconds of embed, condense and levels (the pipeline's own timings) and of writing the outputs."""
    from CUTSSegmentationLib.io.outputs import write_segmentation_outputs
    from CUTSSegmentationLib.pipeline import segment

    hierarchy = segment(image, model, device=device)
    timings = {stage: hierarchy.info["timings"][f"{stage}_s"] for stage in ("embed", "condense", "levels")}
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        write_segmentation_outputs(hierarchy, image, Path(folder))
        timings["write"] = time.perf_counter() - t0
    return timings


def fit_line(mvox: list[float], seconds: list[float]) -> tuple[float, float]:
    """(fixed s, s per million voxels): least squares through the measurements, the fixed part never negative."""
    x, y = np.asarray(mvox), np.asarray(seconds)
    slope, fixed = np.polyfit(x, y, 1)
    if fixed < 0 or slope <= 0:
        return 0.0, float(np.dot(x, y) / np.dot(x, x))
    return float(fixed), float(slope)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=8, help="training steps timed (after one warm-up step)")
    parser.add_argument("--out", default=None, help="also write the measurements as JSON")
    args = parser.parse_args(argv)

    from CUTSSegmentationLib.core.device import is_accelerator, resolve_device
    from CUTSSegmentationLib.io.reading import read_image

    device = resolve_device(args.device)
    kind = "accelerator" if is_accelerator(device) else "cpu"
    crop_image = flair_crop()
    step_s, crop, model = seconds_per_step(crop_image, args.device, args.steps)
    larger = flair_crop(slice(40, 120), slice(20, 220), slice(20, 220))
    volumes = [read_image(VOLUMES / "spine" / "t2.nii.gz"), crop_image, larger]
    mvox = [v.n_pixels / 1e6 for v in volumes]
    measured = [stage_seconds(model, v, args.device) for v in volumes]
    row: dict[str, float] = {"train_step_s": round(step_s, 4), "train_crop": crop}
    for stage in ("embed", "condense", "levels", "write"):
        fixed, per_mvox = fit_line(mvox, [m[stage] for m in measured])
        row[f"{stage}_fixed_s"] = round(fixed, 3)
        row[f"{stage}_s_per_mvox"] = round(per_mvox, 3)
    report = {
        "machine": machine_facts(device=str(device)),
        "volumes_mvox": mvox,
        "stage_seconds": measured,
        "table_row": {kind: row},
    }
    if args.out:
        write_report(report, args.out)
    else:
        import json

        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
