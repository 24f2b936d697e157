"""The peer methods of the field (CUTSSegmentationLib.methods) on the retina images, for the Table 1 harness.

Each function returns label maps for one image and caches them under the benchmark's cache folder, keyed by
the sources that produced them, like the CUTS rows of `retina_table1.py`:

- encoder objectives (boundary-aware infomax, IIC, CGC): one encoder per seed trained on all 56 images with
  the same CPU budget as CUTS (`pipeline.train(..., objective=...)`), then per image the usual CUTS hierarchy
  of its embeddings (persistent map and levels) and its cluster head's single-granularity map;
- per-image methods: S3-Net (50 SGD iterations on the image), the GMM-with-threshold baseline of CGC;
- atlas transfer (CLMorph, 2D): one registration network trained on the 56 images (no labels), then the
  atlas's expert mask warped onto each image. It uses ONE expert mask (the atlas's), so it is not label-free;
  the atlas image itself is left out of its scores.

The choice of one training seed by default (`--peer-seeds`) is for time: an infomax or IIC step passes two
views through the encoder and costs about 2.5 times a CUTS step, so three seeds of three objectives would not
fit in the benchmark's hour on 2 CPU cores.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from retina_cache import Cache, log, source_hash
from retina_data import Sample
from retina_report import METHODS
from retina_runs import hierarchy_arrays, train_model
from retina_scoring import BINARIZATIONS, Results, binarize, score, score_levels

#: The encoder objectives run here (trained by `retina_table1.train_model(..., objective=...)`).
OBJECTIVES = ("infomax", "iic", "cgc")
SEGMENT_SOURCES = [
    "learn/embedding.py",
    "condense/condensation.py",
    "pipeline.py",
    "condense/persistence.py",
    "learn/cluster_head.py",
]
#: Iterations of the dataset-wide atlas registration network (the module's per-pair default is 200).
ATLAS_TRAIN_ITERATIONS = 400
#: Index (in the sorted 56) of the labelled reference image of the atlas method: the 11th, as in the
#: method's first check; any image would do, it is excluded from the atlas row's scores.
ATLAS_INDEX = 10


def run_objective(sample, model, model_path: Path, seed: int, cache) -> dict:
    """Hierarchy of a peer-objective encoder's embeddings (levels, persistent) and its cluster-head map."""
    from CUTSSegmentationLib.learn.cluster_head import cluster_head_map
    from CUTSSegmentationLib.pipeline import segment

    key = f"{model_path.stem}-{source_hash(SEGMENT_SOURCES)}"

    def compute() -> dict:
        t0 = time.perf_counter()
        h = segment(sample.image, model, device="cpu", seed=seed)
        t1 = time.perf_counter()
        head = cluster_head_map(model, sample.image).reshape(sample.truth.shape)
        out = hierarchy_arrays(h)
        out["head"] = head.astype(np.uint16)
        out["seconds"] = np.array([t1 - t0, time.perf_counter() - t1])
        return out

    return cache.arrays(f"peers/{key}/{sample.name}.npz", compute)


def timed_labels(sample, cache, key: str, segment: Callable[[], np.ndarray]) -> dict:
    """One per-image label map (`segment()`), with the seconds it took, cached under peers/`key`/."""

    def compute() -> dict:
        t0 = time.perf_counter()
        labels = np.asarray(segment()).reshape(sample.truth.shape)
        return {"labels": labels.astype(np.uint16), "seconds": np.array([time.perf_counter() - t0])}

    return cache.arrays(f"peers/{key}/{sample.name}.npz", compute)


def run_s3net(sample, seed: int, cache) -> dict:
    from CUTSSegmentationLib.methods.s3net import segment_image_s3net

    key = f"s3net-seed{seed}-{source_hash(['methods/s3net.py', 'methods/preprocessing.py', 'learn/transforms.py'])}"
    return timed_labels(sample, cache, key, lambda: segment_image_s3net(sample.image, seed=seed))


def run_gmm(sample, seed: int, cache) -> dict:
    from CUTSSegmentationLib.methods.gmm import segment_image_gmm

    key = f"gmm-seed{seed}-{source_hash(['methods/gmm.py', 'learn/gaussian_mixture.py', 'learn/normalization.py'])}"
    return timed_labels(sample, cache, key, lambda: segment_image_gmm(sample.image, seed=seed))


class AtlasRunner:
    """Atlas transfer with one registration network per seed, trained lazily (only when a map is not cached)."""

    def __init__(self, samples, seed: int, cache, log: Callable) -> None:
        self.samples = samples
        self.atlas = samples[ATLAS_INDEX]
        self.seed = seed
        self.cache = cache
        self.log = log
        self.registration = None
        self.train_s: Optional[float] = None
        self.key = (
            f"atlas-{self.atlas.name}-it{ATLAS_TRAIN_ITERATIONS}-n{len(samples)}-seed{seed}-"
            f"{source_hash(['methods/atlas.py', 'methods/preprocessing.py', 'learn/transforms.py'])}"
        )

    def _registration(self):
        if self.registration is None:
            from CUTSSegmentationLib.methods.atlas import train_atlas_registration

            t0 = time.perf_counter()
            self.registration = train_atlas_registration(
                [s.image for s in self.samples], self.atlas.image, iterations=ATLAS_TRAIN_ITERATIONS, seed=self.seed
            )
            self.train_s = time.perf_counter() - t0
            self.cache.path(f"peers/{self.key}/train-seconds.txt").write_text(f"{self.train_s:.3f}\n")
            self.log(
                f"seed {self.seed}: atlas registration trained on {len(self.samples)} images in {self.train_s:.0f} s"
            )
        return self.registration

    def train_seconds(self) -> Optional[float]:
        """Training time of the registration network, of this run or recorded when it was trained."""
        if self.train_s is not None:
            return self.train_s
        try:
            return float(self.cache.path(f"peers/{self.key}/train-seconds.txt").read_text())
        except (OSError, ValueError):
            return None

    def run(self, sample) -> Optional[dict]:
        """The atlas mask warped onto `sample` ({1 background, 2 GA}); None for the atlas image itself."""
        from CUTSSegmentationLib.methods.atlas import segment_image_atlas

        if sample.name == self.atlas.name:
            return None

        if not (self.cache.enabled and self.cache.path(f"peers/{self.key}/{sample.name}.npz").is_file()):
            self._registration()  # trained (once) before timed_labels starts its clock

        def segment() -> np.ndarray:
            return segment_image_atlas(
                sample.image,
                self.atlas.image,
                self.atlas.truth.astype(np.uint8),
                registration=self._registration(),
                seed=self.seed,
            )

        return timed_labels(sample, self.cache, self.key, segment)


def run_peers(
    samples: list[Sample],
    chosen: list[Sample],
    seeds: list[int],
    peer_seeds: Sequence[int],
    epochs: Optional[int],
    cache: Cache,
    res: Results,
    maps: dict,
    keep_maps: int,
    crop: Optional[int],
) -> dict:
    """The peer methods (benchmarks/py) on the chosen images for each seed of `peer_seeds` (must be in
    `seeds`); scores go into `res` under the peer keys. Returns seconds per part (training, per image)."""
    timings: dict = {}

    def add(key: str, seconds: float) -> None:
        timings[key] = timings.get(key, 0.0) + float(seconds)

    for seed in peer_seeds:
        si = seeds.index(seed)
        models = {}
        for objective in OBJECTIVES:
            model, path, seconds = train_model(samples, seed, epochs, cache, crop, objective=objective)
            models[objective] = (model, path)
            if seconds is not None:
                add(f"{objective}_train_s", seconds)
        atlas = AtlasRunner(samples, seed, cache, log)
        for ii, sample in enumerate(chosen):
            single: dict[str, np.ndarray] = {}
            levels: dict[str, np.ndarray] = {}
            for objective, (model, path) in models.items():
                out = run_objective(sample, model, path, seed, cache)
                add(f"{objective}_segment_s", out["seconds"].sum())
                single[f"{objective}_head"] = out["head"]
                single[f"{objective}_persistent"] = out["persistent"]
                if any(m.key == f"{objective}_best" for m in METHODS):
                    levels[f"{objective}_best"] = out["levels"]
            for key, fn in (("s3net", run_s3net), ("gmm", run_gmm)):
                out = fn(sample, seed, cache)
                add(f"{key}_s", out["seconds"].sum())
                single[key] = out["labels"]
            out = atlas.run(sample)
            if out is not None:
                add("atlas_s", out["seconds"].sum())
                single["atlas"] = out["labels"]
            for how in BINARIZATIONS:
                for key, lab in single.items():
                    mask = binarize(lab, sample, how, zero_is_label=not key.endswith("persistent"))
                    res.put(key, how, si, ii, score(mask, sample.truth))
                for key, lv in levels.items():
                    best, _ = score_levels(lv, sample, how)
                    res.put(key, how, si, ii, best)
            if si == 0 and ii < keep_maps:
                maps.setdefault(sample.name, {}).update(single)
            if (ii + 1) % 10 == 0 or ii + 1 == len(chosen):
                msg = ", ".join(
                    f"{k} {np.nanmean(res.values[k]['hint']['dice'][si, : ii + 1]):.3f}"
                    for k in ("s3net", "infomax_persistent", "iic_persistent", "cgc_persistent", "atlas")
                    if k in res.values
                )
                log(f"peers, seed {seed}: {ii + 1}/{len(chosen)} images, Dice so far: {msg}")
        if atlas.train_seconds() is not None:
            add("atlas_train_s", atlas.train_seconds())
    return timings
