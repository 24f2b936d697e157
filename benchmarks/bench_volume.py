"""A 256 x 256 x 128 volume end to end: embeddings + condensation + persistent map, wall time and peak RSS.

The encoder is trained briefly on the volume's own slices first (not counted in the budget: the
budget covers inference, the part a clinician waits for each time). Runs the pipeline's own steps so the
numbers are what `cuts segment --model M` costs on such a volume.

    python benchmarks/bench_volume.py [--shape 128,256,256] [--device cpu] [--out benchmarks/volume.json]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from report import machine_facts, write_report  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="128,256,256", help="Z,Y,X (default 128,256,256)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--train-steps-epochs", type=int, default=3, help="training epochs (not timed)")
    parser.add_argument("--out", default="benchmarks/volume.json")
    args = parser.parse_args()

    from CUTSSegmentationLib.condense.binarize import binarize_with_hint
    from CUTSSegmentationLib.condense.condensation import CondensationConfig, condense
    from CUTSSegmentationLib.core.device import describe_device, resolve_device
    from CUTSSegmentationLib.evaluate.metrics import dice
    from CUTSSegmentationLib.evaluate.phantom import synthetic_phantom_3d
    from CUTSSegmentationLib.learn.embedding import compute_embeddings
    from CUTSSegmentationLib.pipeline import build_hierarchy, train

    shape = tuple(int(v) for v in args.shape.split(","))
    volume, truth = synthetic_phantom_3d(shape=shape, seed=0)
    device = resolve_device(args.device)
    t0 = time.perf_counter()
    model = train([volume], epochs=args.train_steps_epochs, device=args.device, seed=0)
    train_s = time.perf_counter() - t0
    rss_after_train = peak_rss_mb()

    t0 = time.perf_counter()
    emb = compute_embeddings(model, volume, device=device, dtype=np.float16)
    embed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = condense(emb, CondensationConfig(), device=device)
    del emb
    condense_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hierarchy = build_hierarchy(result, volume)
    levels_s = time.perf_counter() - t0
    total = embed_s + condense_s + levels_s

    best = {}
    for value in [int(v) for v in np.unique(truth) if v]:
        mask = truth == value
        best[str(value)] = max(
            float(dice(binarize_with_hint(hierarchy.levels[k], mask), mask)) for k in range(hierarchy.n_levels)
        )
    report = {
        "machine": machine_facts(device=describe_device(device)),
        "shape_zyx": list(shape),
        "train_s_not_counted": round(train_s, 1),
        "embed_s": round(embed_s, 1),
        "condense_s": round(condense_s, 1),
        "condense_timings": {k: round(v, 2) for k, v in result.timings.items()},
        "levels_and_persistent_s": round(levels_s, 1),
        "total_inference_s": round(total, 1),
        "peak_rss_mb": round(peak_rss_mb(), 0),
        "peak_rss_mb_after_training": round(rss_after_train, 0),
        "levels": [int(c) for c in hierarchy.n_clusters],
        "best_level_dice_per_structure": best,
    }
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
