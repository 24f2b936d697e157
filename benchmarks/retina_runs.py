"""The Table 1 methods on one retina image each (CUTS, pixels + diffusion, classical baselines), cached."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import baselines
import numpy as np
from retina_cache import OBJECTIVE_SOURCES, SEGMENT_SOURCES, TRAIN_SOURCES, Cache, log, source_hash
from retina_data import Sample

from CUTSSegmentationLib.condense.condensation import CondensationConfig, condense
from CUTSSegmentationLib.learn.embedding import compute_embeddings
from CUTSSegmentationLib.learn.modelfile import load_model, save_model
from CUTSSegmentationLib.pipeline import build_hierarchy, segment, train

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def train_model(
    samples: list[Sample],
    seed: int,
    epochs: Optional[int],
    cache: Cache,
    crop: Optional[int] = None,
    objective: str = "cuts",
):
    """Encoder trained on all images (labels unused) with the CUTS objective or a peer method's; cached.
    Returns (model, path, training seconds: this run's or the recorded ones, None if unknown)."""

    prefix, sources = ("model", TRAIN_SOURCES) if objective == "cuts" else (objective, OBJECTIVE_SOURCES)
    tag = (
        f"{prefix}-n{len(samples)}-ep{epochs or 'auto'}{f'-crop{crop}' if crop else ''}-seed{seed}-"
        f"{source_hash(sources)}"
    )
    path = cache.path("models", tag + ".safetensors")
    if cache.enabled and path.is_file():
        return load_model(path), path, recorded_seconds(path)
    t0 = time.perf_counter()
    extra = {"crop_size": crop} if crop else {}
    model = train([s.image for s in samples], epochs=epochs, device="cpu", seed=seed, objective=objective, **extra)
    seconds = time.perf_counter() - t0
    save_model(model, path)
    record_seconds(path, seconds)
    log(f"seed {seed}: {objective} objective trained on {len(samples)} images in {seconds:.0f} s")
    return model, path, seconds


def record_seconds(model_path: Path, seconds: float) -> None:
    """Keep the training time beside a cached model, so a run from the cache still reports real compute time."""
    model_path.with_name(model_path.stem + ".seconds.txt").write_text(f"{seconds:.3f}\n")


def recorded_seconds(model_path: Path) -> Optional[float]:
    p = model_path.with_name(model_path.stem + ".seconds.txt")
    try:
        return float(p.read_text())
    except (OSError, ValueError):
        return None


def hierarchy_arrays(h) -> dict[str, np.ndarray]:
    """Levels (L, Y, X), persistent map (Y, X) and cluster counts of a 2D hierarchy."""
    yx = tuple(h.levels.shape[-2:])
    return {
        "levels": np.asarray(h.levels).reshape((-1,) + yx),
        "persistent": np.asarray(h.persistent).reshape(yx),
        "n_clusters": np.asarray(h.n_clusters),
    }


def run_cuts(sample: Sample, model, model_path: Path, seed: int, cache: Cache) -> dict[str, np.ndarray]:
    """Hierarchy (levels, persistent) and spectral k-means labels of one image under one trained model."""

    key = f"{model_path.stem}-{source_hash(SEGMENT_SOURCES)}"
    shape = sample.truth.shape

    def compute() -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        h = segment(sample.image, model, device="cpu", seed=seed)
        t1 = time.perf_counter()
        emb = compute_embeddings(model, sample.image, device="cpu")
        spectral = baselines.spectral_kmeans(emb, shape, seed=seed)
        t2 = time.perf_counter()
        out = hierarchy_arrays(h)
        out["spectral"] = spectral
        out["seconds"] = np.array([t1 - t0, t2 - t1])
        return out

    return cache.arrays(f"cuts/{key}/{sample.name}.npz", compute)


def run_pixels(sample: Sample, seed: int, cache: Cache) -> dict[str, np.ndarray]:
    """Diffusion condensation on the raw pixels (RGB in [0, 1], L2-normalised, as the authors) and pixel k-means."""

    key = f"pixels-seed{seed}-{source_hash(['condense/condensation.py', 'pipeline.py', 'condense/persistence.py'])}"

    def compute() -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        result = condense(baselines.pixel_features(sample.rgb), CondensationConfig(seed=seed))
        h = build_hierarchy(result, sample.image)
        out = hierarchy_arrays(h)
        out["kmeans"] = baselines.pixel_kmeans(sample.rgb, seed=seed)
        out["seconds"] = np.array([time.perf_counter() - t0])
        return out

    return cache.arrays(f"pixels/{key}/{sample.name}.npz", compute)


CLASSICAL = ("watershed", "watershed_markers", "felzenszwalb", "felzenszwalb_default", "felzenszwalb_coarse", "slic")


def classical(sample: Sample, cache: Cache) -> dict[str, np.ndarray]:
    def compute() -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        out = {
            "watershed": baselines.otsu_threshold(sample.rgb),
            "watershed_markers": baselines.otsu_watershed(sample.rgb),
            "felzenszwalb": baselines.felzenszwalb(sample.rgb),
            "felzenszwalb_default": baselines.felzenszwalb_default(sample.rgb),
            "felzenszwalb_coarse": baselines.felzenszwalb(sample.rgb, 1500, 0.8, 20),
            "slic": baselines.slic(sample.rgb),
        }
        out["seconds"] = np.array([time.perf_counter() - t0])
        return out

    return cache.arrays(f"classical/{sample.name}.npz", compute, required=CLASSICAL)


def run_msphate(python: str, model_path: Path, n_images: int, cache: Cache) -> Optional[dict]:
    """bench_condensation.py on our seed-0 model: MS-PHATE vs ours, seconds / memory / Dice."""
    out = cache.path("condensation", f"{model_path.stem}-n{n_images}.json")
    if not (cache.enabled and out.is_file()):
        cmd = [
            sys.executable,
            str(HERE / "bench_condensation.py"),
            "--model",
            str(model_path),
            "--images",
            str(n_images),
            "--msphate-python",
            python,
            "--out",
            str(out),
        ]
        log("running " + " ".join(cmd))
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=str(REPO))
        if done.returncode != 0:
            log(f"bench_condensation.py failed (exit {done.returncode}); MS-PHATE comparison left out")
            return None
        log(f"MS-PHATE comparison took {time.perf_counter() - t0:.0f} s")
    return json.loads(out.read_text())
