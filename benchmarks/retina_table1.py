"""Reproduce the retina rows of the CUTS paper's Table 1, with the paper's numbers beside ours.

One harness runs every method on the same 128 x 128 fundus images (shared/data/retina, 56 images with
expert GA masks), binarises every label map the same way and scores the masks with the paper's metrics:

- methods: random labeler, watershed (the authors' Otsu version, plus a real marker watershed for
  reference), Felzenszwalb, SLIC, k-means on pixels, CUTS + spectral k-means (k = 10), CUTS + diffusion
  condensation persistent structures, CUTS + diffusion best level (an oracle over levels, as in the paper),
  and diffusion condensation on raw pixels (persistent and best level); see `baselines.py` for parameters;
- binarisation: label hint (the label most frequent under the expert mask, as the paper does for every
  unsupervised method) and seed point (the label under the mask's innermost pixel, as a clinician would click);
- metrics: Dice, Hausdorff (px), SSIM, ERGAS (sewar 0.4.5), RMSE (`CUTSSegmentationLib.evaluate.metrics`);
  mean and standard error over images, averaged over training seeds.

CUTS: one encoder per seed trained on all 56 images (images only) with `pipeline.train` (CPU defaults), then
`pipeline.segment(image, model)` per image; labels are read only for evaluation. Models, hierarchies and
label maps are cached under benchmarks/.cache/ (keyed by the engine's source), so reruns are fast.

    python benchmarks/retina_table1.py                 # full: 56 images x 3 seeds, doc + figures
    python benchmarks/retina_table1.py --quick         # CI: 16 images, 1 seed, 200 training steps, asserts ranking
    python benchmarks/retina_table1.py --images 10 --seeds 0 --no-doc
    python benchmarks/retina_table1.py --msphate-python /path/to/python-with-multiscale-phate

The harness in parts: `retina_data` (the images), `retina_cache` (source-keyed cache), `retina_runs` (the
methods on one image), `retina_scoring` (binarize, score), `retina_sweeps` (analysis rows), `retina_report`
(tables, JSON, the doc block), `peers` (the peer methods); this file runs them and holds the command line.

With --msphate-python, `bench_condensation.py` is run on the seed-0 model for the MS-PHATE vs ours
comparison (seconds, peak memory, Dice) on --msphate-images images, and its summary goes into the doc.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import baselines  # noqa: E402
import peers  # noqa: E402
import torch  # noqa: E402
from retina_cache import Cache, freeze_engine_sources, log  # noqa: E402
from retina_data import Sample, load_retina, pick  # noqa: E402
from retina_report import METHODS, PAPER, check_ranking, dice_rows_markdown, summary_dict, table_markdown, write_doc  # noqa: E402
from retina_runs import CLASSICAL, classical, run_cuts, run_msphate, run_pixels, train_model  # noqa: E402
from retina_scoring import BINARIZATIONS, Results, binarize, score, score_levels  # noqa: E402
from retina_sweeps import PERSISTENT_VARIANTS, baseline_sweep  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("CUTS_RETINA_DIR", str(REPO.parent / "shared" / "data" / "retina")))

DEFAULT_CACHE = HERE / ".cache" / "retina"

FIGURES = REPO / "docs" / "figures"

SUMMARY_JSON = HERE / "results" / "retina_table1.json"


def run(
    samples: list[Sample],
    indices: list[int],
    seeds: list[int],
    epochs: Optional[int],
    cache: Cache,
    keep_maps: int = 0,
    crop: Optional[int] = None,
    peer_seeds: Sequence[int] = (),
    table1: bool = True,
) -> tuple[Results, dict]:
    """Run every method on samples[indices] for every seed (the peer methods for the seeds in `peer_seeds`);
    keep the label maps of the first `keep_maps` evaluated images of the first seed (for figures)."""
    chosen = [samples[i] for i in indices]
    res = Results(seeds=list(seeds), names=[s.name for s in chosen])
    maps: dict = {}
    t_start = time.perf_counter()
    if not table1:  # only the peer methods (a second process can fill their cache beside a Table 1 run)
        res.timings["peers"] = peers.run_peers(
            samples, chosen, seeds, peer_seeds, epochs, cache, res, maps, keep_maps, crop
        )
        res.timings["total_s"] = time.perf_counter() - t_start
        return res, maps
    classical_s = 0.0
    for ii, sample in enumerate(chosen):
        labels = classical(sample, cache)
        classical_s += float(labels.pop("seconds", np.zeros(1)).sum())
        for key in CLASSICAL:
            for how in BINARIZATIONS:
                metrics = score(binarize(labels[key], sample, how), sample.truth)
                for si in range(len(seeds)):
                    res.put(key, how, si, ii, metrics)
        if ii < keep_maps:
            maps.setdefault(sample.name, {}).update({k: labels[k] for k in labels})
    t0 = time.perf_counter()
    res.sweep = baseline_sweep(chosen)
    res.timings["classical_s"] = classical_s
    res.timings["sweep_s"] = time.perf_counter() - t0

    train_s, cuts_s, pixel_s = [], 0.0, 0.0
    for si, seed in enumerate(seeds):
        model, model_path, seconds = train_model(samples, seed, epochs, cache, crop)
        if seconds is not None:
            train_s.append(seconds)
        for ii, sample in enumerate(chosen):
            rnd = baselines.random_labels(sample.rgb, seed=seed * 1000 + ii)
            pix = run_pixels(sample, seed, cache)
            pixel_s += float(pix["seconds"].sum())  # recorded when computed (also when read from the cache)
            cuts = run_cuts(sample, model, model_path, seed, cache)
            cuts_s += float(cuts["seconds"].sum())
            single = {
                "random": rnd,
                "pixel_kmeans": pix["kmeans"],
                "pixel_persistent": pix["persistent"],
                "cuts_spectral": cuts["spectral"],
                "cuts_persistent": cuts["persistent"],
            }
            for how in BINARIZATIONS:
                for key, lab in single.items():
                    mask = binarize(lab, sample, how, zero_is_label=not key.endswith("persistent"))
                    res.put(key, how, si, ii, score(mask, sample.truth))
                for key, levels in (("pixel_best", pix["levels"]), ("cuts_best", cuts["levels"])):
                    best, level = score_levels(levels, sample, how)
                    res.put(key, how, si, ii, best)
                    if how == "hint":
                        res.best_level.setdefault(key, np.full((len(seeds), len(chosen)), -1))[si, ii] = level
                        res.n_levels.setdefault(key, np.zeros((len(seeds), len(chosen)), int))[si, ii] = len(levels)
            for vkey, fn in PERSISTENT_VARIANTS:
                vmap = fn(cuts["levels"], cuts["n_clusters"])
                for how in BINARIZATIONS:
                    res.put_variant(
                        vkey, how, si, ii, score(binarize(vmap, sample, how, zero_is_label=False), sample.truth)
                    )
            if si == 0 and ii < keep_maps:
                maps[sample.name].update(single)
                maps[sample.name]["cuts_levels"] = cuts["levels"]
                maps[sample.name]["cuts_n_clusters"] = cuts["n_clusters"]
                maps[sample.name]["pixel_levels"] = pix["levels"]
            if (ii + 1) % 10 == 0 or ii + 1 == len(chosen):
                d = res.values["cuts_persistent"]["hint"]["dice"][si, : ii + 1]
                log(f"seed {seed}: {ii + 1}/{len(chosen)} images, CUTS persistent Dice so far {np.nanmean(d):.3f}")
    res.timings.update(train_s=train_s, cuts_s=cuts_s, pixels_s=pixel_s)
    res.timings["table1_compute_s"] = classical_s + res.timings["sweep_s"] + sum(train_s) + cuts_s + pixel_s
    if peer_seeds:
        res.timings["peers"] = peers.run_peers(
            samples, chosen, seeds, peer_seeds, epochs, cache, res, maps, keep_maps, crop
        )
        res.timings["peers_s"] = sum(res.timings["peers"].values())
    res.timings["total_s"] = time.perf_counter() - t_start
    return res, maps


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CI mode: 16 images, seed 0, 50 training epochs (200 steps, half the CPU default), no "
        "doc/figures; asserts the ranking",
    )
    parser.add_argument(
        "--images", type=int, default=None, help="evaluate on N images spread over the 56 (default all)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default 0 1 2)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the engine's CPU default)")
    parser.add_argument("--crop", type=int, default=None, help="training crop size (default: the engine's CPU default)")
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="retina folder (image_with_GA/, label_with_GA/)"
    )
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="cache folder (default benchmarks/.cache/retina)"
    )
    parser.add_argument("--no-cache", action="store_true", help="recompute everything (still writes the cache)")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--no-figures", action="store_true", help="do not draw docs/figures/retina-*.png")
    parser.add_argument("--json", type=Path, default=None, help="write the summary JSON here")
    parser.add_argument(
        "--msphate-python",
        default=os.environ.get("CUTS_MSPHATE_PYTHON"),
        help="python with multiscale-phate: run the MS-PHATE comparison (bench_condensation.py)",
    )
    parser.add_argument("--msphate-images", type=int, default=5)
    parser.add_argument(
        "--part",
        choices=("all", "table1", "peers"),
        default="all",
        help="compute only the Table 1 methods or only the peer methods (fills the cache; no doc): "
        "two such processes can share a 2-core machine, then a plain run writes the doc",
    )
    parser.add_argument(
        "--serial",
        action="store_true",
        help="run the peer methods after the Table 1 methods in this process (default on 2+ cores: "
        "in a second process at the same time, 1 thread each)",
    )
    parser.add_argument(
        "--peer-seeds",
        type=int,
        nargs="*",
        default=None,
        help="training seeds of the peer methods (default: the first seed; --quick: none); "
        "give no value to leave the peers out",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a busy 2-core machine 2 threads ran training 1.4x and "
        "condensation 2-7x slower than 1; use 2 on an idle machine)",
    )
    args = parser.parse_args(argv)

    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
        try:
            torch.set_num_interop_threads(args.threads)
        except RuntimeError:  # only settable before torch's first parallel work (e.g. when called from a test)
            pass
    try:
        return _main(args, argv)
    finally:
        torch.set_num_threads(threads)


def _main(args: argparse.Namespace, argv: Optional[list[str]]) -> int:
    t_start = time.perf_counter()
    freeze_engine_sources()
    if args.quick:
        # 16 images and 200 steps: with 6 images and 60 steps the per-image spread (Dice differences of
        # +-0.5 between methods on single images) made the ranking a coin toss; this still runs in ~4 min.
        n_images = args.images or 16
        seeds = args.seeds or [0]
        epochs = args.epochs or 50
        write = False
    else:
        n_images = args.images
        seeds = args.seeds or [0, 1, 2]
        epochs = args.epochs
        write = not args.no_doc
    cache = Cache(args.cache, enabled=not args.no_cache)
    samples = load_retina(args.data)
    indices = pick(len(samples), n_images)
    draw = write and not args.no_figures
    if args.peer_seeds is None:
        peer_seeds = [] if args.quick else seeds[:1]
    else:
        peer_seeds = [s for s in args.peer_seeds if s in seeds]
        if len(peer_seeds) != len(args.peer_seeds):
            raise SystemExit("--peer-seeds must be among --seeds")
    log(
        f"{len(indices)} of {len(samples)} images, seeds {seeds}, epochs {epochs or 'default'}, "
        f"peer methods with seeds {peer_seeds or 'none'}"
    )
    if args.part != "all":
        res, _ = run(
            samples,
            indices,
            seeds,
            epochs,
            cache,
            crop=args.crop,
            peer_seeds=peer_seeds if args.part == "peers" else [],
            table1=args.part == "table1",
        )
        log(f"{args.part}: done in {(time.perf_counter() - t_start) / 60:.1f} min; timings {res.timings}")
        if args.json:
            args.json.write_text(json.dumps(summary_dict(res), indent=1))
        return 0
    if peer_seeds and not args.serial and (os.cpu_count() or 1) >= 2:
        # Both halves at once, one core each: the peer methods in a child process (--part peers) fill the cache
        # while this process computes the Table 1 methods; the final pass below then only reads the cache.
        torch.set_num_threads(1)
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--part",
            "peers",
            "--threads",
            "1",
            "--data",
            str(args.data),
            "--cache",
            str(args.cache),
            "--seeds",
            *map(str, seeds),
            "--peer-seeds",
            *map(str, peer_seeds),
        ]
        cmd += (["--images", str(n_images)] if n_images else []) + (["--epochs", str(epochs)] if epochs else [])
        cmd += (["--crop", str(args.crop)] if args.crop else []) + (["--no-cache"] if args.no_cache else [])
        log("peer methods in a second process: " + " ".join(cmd))
        child = subprocess.Popen(cmd, cwd=str(REPO))
        try:
            run(samples, indices, seeds, epochs, cache, crop=args.crop, peer_seeds=[])
        finally:
            if child.wait() != 0:
                log(f"the peer-methods process failed (exit {child.returncode})")
        cache = Cache(args.cache, enabled=True)  # everything is computed now: read it back
    res, maps = run(
        samples,
        indices,
        seeds,
        epochs,
        cache,
        keep_maps=len(indices) if draw else 0,
        crop=args.crop,
        peer_seeds=peer_seeds,
    )

    condensation = None
    if args.msphate_python and not args.quick:
        _, model_path, _ = train_model(samples, seeds[0], epochs, cache, args.crop)
        condensation = run_msphate(args.msphate_python, model_path, args.msphate_images, cache)

    wall = time.perf_counter() - t_start
    res.timings["wall_s"] = wall
    print(table_markdown(res, "hint", groups=("paper",)))
    print()
    print(dice_rows_markdown(res))
    summary = summary_dict(res)
    if condensation:
        summary["condensation"] = condensation["summary"]
    json_path = args.json or (SUMMARY_JSON if write else None)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(summary, indent=1))
    if draw:
        import retina_figures  # matplotlib: only when figures are drawn (the 'bench' extra)

        retina_figures.draw_all(res, maps, [samples[i] for i in indices], FIGURES, PAPER, METHODS)
    if write:
        command = "python benchmarks/retina_table1.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_doc(res, command.strip(), wall, condensation, figures=draw)
    log(f"done in {wall / 60:.1f} min")
    failures = check_ranking(res)
    for f in failures:
        log("RANKING FAILED: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
