"""Condensation speed, memory and quality: our weighted-atom condensation vs the authors' Multiscale PHATE.

Measures, on the same L2-normalised CUTS embeddings:
- wall time and peak RSS of condensation to a full hierarchy (levels + persistent map) for 128x128 retina
  images (16,384 x 128) and 256x256 inputs (65,536 x 128), each in a fresh process;
- the same for Multiscale PHATE (pip package multiscale-phate, run with the interpreter given by
  --msphate-python, as the authors call it: knn=100 on the whole latent), when requested;
- label-hint Dice of the best level and of the persistent map of both hierarchies against the expert GA masks.

Usage (writes JSON to --out; docs/benchmarks.md quotes the numbers):
    python benchmarks/bench_condensation.py --model MODEL.safetensors --images 5 --out bench.json \
        [--msphate-python /path/to/venv-with-multiscale-phate/bin/python]
Without --model it trains one on the 56 retina images first (CPU defaults, cached under benchmarks/.cache).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from report import machine_facts, write_report  # noqa: E402

RETINA = REPO.parent / "shared" / "data" / "retina"
CACHE = REPO / "benchmarks" / ".cache"


def retina_pairs(limit: int | None = None) -> list[tuple[Path, Path]]:
    pairs = []
    for image in sorted((RETINA / "image_with_GA").glob("image*.png")):
        label = RETINA / "label_with_GA" / f"label{image.stem[5:]}.npy"
        if label.is_file():
            pairs.append((image, label))
    return pairs[:limit] if limit else pairs


def trained_model(path: str | None):
    from CUTSSegmentationLib.io.reading import read_image
    from CUTSSegmentationLib.learn.modelfile import load_model, save_model
    from CUTSSegmentationLib.pipeline import train

    if path:
        return load_model(path), path
    cached = CACHE / "retina-seed0.safetensors"
    if not cached.is_file():
        images = [read_image(p) for p, _ in retina_pairs()]
        t0 = time.perf_counter()
        model = train(images, seed=0)
        print(f"trained on {len(images)} retina images in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        save_model(model, cached)
    return load_model(cached), str(cached)


# --------------------------------------------------------------------------------------- child runs
CHILD_OURS = r"""
import json, resource, sys, time
import numpy as np
sys.path.insert(0, {repo!r})
from CUTSSegmentationLib.condense.condensation import condense
from CUTSSegmentationLib.core.imagedata import ImageData
from CUTSSegmentationLib.pipeline import build_hierarchy
emb = np.load({emb!r})
shape = tuple({shape!r})
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
result = condense(emb)
image = ImageData(np.zeros((1,) + shape + (1,), np.float32), is_2d=True)
h = build_hierarchy(result, image)
wall = time.perf_counter() - t0
np.savez_compressed({out!r}, levels=h.levels, persistent=h.persistent, n_clusters=h.n_clusters)
print(json.dumps({{"wall_s": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "rss_before_mb": base / 1024, "timings": result.timings, "n_clusters": h.n_clusters.tolist()}}))
"""

CHILD_MSPHATE = r"""
import json, resource, sys, time
import numpy as np
import multiscale_phate
emb = np.load({emb!r}).astype(np.float64)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
op = multiscale_phate.Multiscale_PHATE(knn=100, random_state=0, n_jobs=1)
levels = op.fit(emb)
labels = np.stack([np.asarray(op.NxTs[l]) for l in levels]).astype(np.int64)
wall = time.perf_counter() - t0
np.savez_compressed({out!r}, labels=labels, levels=np.asarray(levels))
print(json.dumps({{"wall_s": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "rss_before_mb": base / 1024, "n_clusters": [int(len(np.unique(l))) for l in labels]}}))
"""


def run_child(python: str, code: str, timeout: float) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------- quality
def hint_dice_best(levels: np.ndarray, truth: np.ndarray) -> tuple[float, int]:
    from CUTSSegmentationLib.condense.binarize import binarize_with_hint
    from CUTSSegmentationLib.evaluate.metrics import dice

    scores = [float(dice(binarize_with_hint(level, truth), truth)) for level in levels]
    best = int(np.argmax(scores))
    return scores[best], best


def hint_dice(labels: np.ndarray, truth: np.ndarray) -> float:
    from CUTSSegmentationLib.condense.binarize import binarize_with_hint
    from CUTSSegmentationLib.evaluate.metrics import dice

    return float(dice(binarize_with_hint(labels, truth), truth))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="trained encoder; default: train on the 56 retina images (cached)")
    parser.add_argument("--images", type=int, default=5, help="retina images to compare on (default 5)")
    parser.add_argument("--msphate-python", help="python with multiscale-phate installed (omit to skip it)")
    parser.add_argument("--msphate-images", type=int, default=None, help="images for MS-PHATE (default: --images)")
    parser.add_argument("--out", default="benchmarks/condensation.json")
    args = parser.parse_args()

    from skimage.transform import resize

    from CUTSSegmentationLib.condense.persistence import persistent_level_indices, persistent_structures
    from CUTSSegmentationLib.core.imagedata import ImageData
    from CUTSSegmentationLib.io.reading import read_image
    from CUTSSegmentationLib.learn.embedding import compute_embeddings

    model, model_path = trained_model(args.model)
    report: dict = {
        "machine": machine_facts(),
        "model": model_path,
        "images": [],
    }
    work = Path(tempfile.mkdtemp(prefix="cuts-bench-"))
    n_ms = args.msphate_images if args.msphate_images is not None else args.images
    for k, (image_path, label_path) in enumerate(retina_pairs(args.images)):
        image = read_image(image_path)
        truth = np.load(label_path).astype(bool)
        emb = compute_embeddings(model, image, device="cpu")
        emb_path = work / f"emb{k}.npy"
        np.save(emb_path, emb.astype(np.float32))
        row: dict = {"image": image_path.name}
        ours = run_child(
            sys.executable,
            CHILD_OURS.format(repo=str(REPO), emb=str(emb_path), shape=[128, 128], out=str(work / f"ours{k}.npz")),
            600,
        )
        with np.load(work / f"ours{k}.npz") as data:
            best, level = hint_dice_best(data["levels"], truth)
            ours.update(dice_best_level=best, best_level=level, dice_persistent=hint_dice(data["persistent"], truth))
        row["ours_128"] = ours
        if k == 0:
            # 256 x 256: the same image upsampled (bilinear), embeddings recomputed at that size.
            big = resize(image.array[0], (256, 256), order=1, preserve_range=True).astype(np.float32)
            big_image = ImageData(big[None], is_2d=True, source_dtype=image.source_dtype)
            emb_big = compute_embeddings(model, big_image, device="cpu")
            big_path = work / "emb_big.npy"
            np.save(big_path, emb_big.astype(np.float32))
            row["ours_256"] = run_child(
                sys.executable,
                CHILD_OURS.format(repo=str(REPO), emb=str(big_path), shape=[256, 256], out=str(work / "ours_big.npz")),
                600,
            )
        if args.msphate_python and k < n_ms:
            ms = run_child(
                args.msphate_python, CHILD_MSPHATE.format(emb=str(emb_path), out=str(work / f"ms{k}.npz")), 3600
            )
            with np.load(work / f"ms{k}.npz") as data:
                levels = data["labels"].reshape(-1, 128, 128)
                # Multiscale PHATE's first level is the raw points (every pixel its own cluster): skip it.
                usable = levels[[i for i in range(len(levels)) if len(np.unique(levels[i])) < 16384 // 2]]
                best, level = hint_dice_best(usable, truth)
                # Ids are point indices; persistence needs only that they persist across levels.
                dense = np.unique(usable, return_inverse=True)[1].reshape(usable.shape) + 1
                # The same rule as ours: the levels with at most 24 clusters (PERSISTENT_MAX_CLUSTERS) feed the persistent map.
                counts = np.array([len(np.unique(level)) for level in usable])
                persistent = persistent_structures(dense[persistent_level_indices(counts)].astype(np.uint16))
                ms.update(dice_best_level=best, best_level=level, dice_persistent=hint_dice(persistent, truth))
            row["msphate_128"] = ms
            row["speedup"] = ms["wall_s"] / ours["wall_s"]
        report["images"].append(row)
        print(json.dumps(row), file=sys.stderr)

    def mean(key: str, field: str) -> float | None:
        values = [r[key][field] for r in report["images"] if key in r]
        return float(np.mean(values)) if values else None

    report["summary"] = {
        "ours_128_wall_s_mean": mean("ours_128", "wall_s"),
        "ours_128_peak_rss_mb_max": max(r["ours_128"]["peak_rss_mb"] for r in report["images"]),
        "ours_256_wall_s": report["images"][0]["ours_256"]["wall_s"],
        "ours_256_peak_rss_mb": report["images"][0]["ours_256"]["peak_rss_mb"],
        "ours_dice_best_level_mean": mean("ours_128", "dice_best_level"),
        "ours_dice_persistent_mean": mean("ours_128", "dice_persistent"),
        "msphate_wall_s_mean": mean("msphate_128", "wall_s"),
        "msphate_peak_rss_mb_max": max(
            (r["msphate_128"]["peak_rss_mb"] for r in report["images"] if "msphate_128" in r), default=None
        ),
        "msphate_dice_best_level_mean": mean("msphate_128", "dice_best_level"),
        "msphate_dice_persistent_mean": mean("msphate_128", "dice_persistent"),
    }
    compared = [r for r in report["images"] if "msphate_128" in r]
    if compared:
        report["summary"]["ours_dice_best_level_same_images"] = float(
            np.mean([r["ours_128"]["dice_best_level"] for r in compared])
        )
        report["summary"]["ours_dice_persistent_same_images"] = float(
            np.mean([r["ours_128"]["dice_persistent"] for r in compared])
        )
        report["summary"]["speedup_mean"] = float(np.mean([r["speedup"] for r in compared]))
    write_report(report, args.out, shown=report["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
