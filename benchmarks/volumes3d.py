"""The 3D benchmark: real scans with expert masks, the engine through the user's path beside simple baselines.

For every case (benchmarks/volume_cases.py) the click is the structure's innermost voxel (maximum of the
spacing-aware distance transform of the reference), and every method is scored on what it returns for that
click (Dice, surface HD95 in mm; volume_scoring.py). The engine runs `pipeline.segment` self-trained with the
defaults in a child process per volume (wall time by stage, peak memory; hierarchies cached under
benchmarks/.cache/volumes3d), and for datasets with several cases also with one encoder trained on all of
them. Oracle numbers (label hint on the default map, best level, best k) are reported beside, never instead.

    python benchmarks/volumes3d.py                      # everything (about an hour on 2 CPU cores)
    python benchmarks/volumes3d.py --cases spine spleen # a subset by name
    python benchmarks/volumes3d.py --no-engine --jobs 2 # baselines only
    python benchmarks/volumes3d.py --engine-cases spine spleen --docs yes  # engine on the small scans only
    python benchmarks/volumes3d.py --seed 1 --out seed1.json  # the same with other seeds (docs untouched)

Writes benchmarks/results/volumes3d.json, the section between the volumes3d markers of docs/benchmarks.md and
docs/figures/volumes3d.png (with --docs; on by default for full runs).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import volume_baselines as baselines  # noqa: E402
import volume_engine as engine  # noqa: E402
from volume_cases import (  # noqa: E402
    ALL_CASES,
    Case,
    load_reference,
    load_volume,
    select_cases,
    volumes_dir,
)
from volume_scoring import DATASET_ENCODER, SELF_TRAINED, best_baseline, score  # noqa: E402
from volume_scoring import dice as score_dice  # noqa: E402

#: Datasets whose cases share one encoder trained on all their volumes (besides the self-trained runs).
SHARED_ENCODER_DATASETS = ("brats",)


def _seed_slice(mask: np.ndarray, seed_xyz: Sequence[int]) -> np.ndarray:
    return np.asarray(mask[int(seed_xyz[2])], dtype=bool)


def _timed(fn, *args) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = fn(*args)
    return np.asarray(out, dtype=bool), time.perf_counter() - t0


def score_baselines(
    image: np.ndarray, spacing, seed, reference: np.ndarray, slic: bool = True
) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Every baseline's score (and seed-slice mask for the figures) for one click."""
    results, slices = {}, {}
    runs = [(n, f, (image, spacing, seed)) for n, f in baselines.SEED_BASELINES.items()]
    runs += [(n, f, (image, spacing, seed, reference)) for n, f in baselines.HINT_BASELINES.items()]
    for name, fn, args in runs:
        if not slic and name.startswith("SLIC"):
            continue
        mask, seconds = _timed(fn, *args)
        results[name] = {**score(mask, reference, spacing), "seconds": seconds}
        slices[name] = _seed_slice(mask, seed)
    for family, members in baselines.FAMILIES.items():
        present = [m for m in members if m in results]
        if present:
            best = max(present, key=lambda m: results[m]["dice"])
            results[family] = {**results[best], "choice": best}
            slices[family] = slices[best]
    return results, slices


def score_hierarchy(
    path: Path, inputs: Sequence[Path], seed, spacing, reference: np.ndarray
) -> tuple[dict[str, Any], dict]:
    """Clicks, label hint on the default map and best level (label hint) of one cached hierarchy."""
    run = engine.load_run(path, inputs)
    hierarchy = run.hierarchy
    out: dict[str, Any] = {"clicks": {}}
    slices = {}
    for name, click in engine.CLICKS.items():
        mask, seconds = _timed(click, run, seed, spacing)
        out["clicks"][name] = {**score(mask, reference, spacing), "seconds": seconds}
        slices[name] = _seed_slice(mask, seed)
    default = hierarchy.persistent if hierarchy.persistent is not None else hierarchy.levels[-1]
    out["label_hint_default_map"] = score(engine.binarize_with_hint(default, reference), reference, spacing)
    dices = [score_dice(engine.binarize_with_hint(level, reference), reference) for level in hierarchy.levels]
    best = int(np.argmax(dices))
    out["best_level_label_hint"] = {
        **score(engine.binarize_with_hint(hierarchy.levels[best], reference), reference, spacing),
        "level": best,
        "clusters": int(hierarchy.n_clusters[best]),
    }
    out["n_clusters"] = [int(n) for n in hierarchy.n_clusters]
    return out, slices


def evaluate_volume(cases: list[Case], options: dict[str, Any]) -> list[dict[str, Any]]:
    """Everything for the cases of one scan: the engine runs (cached), then every baseline, per structure."""
    root = Path(options["root"])
    volume = load_volume(cases[0], root)
    runs: dict[str, tuple[Path, dict]] = {}
    if options["engine"] and select_cases(options.get("engine_cases"), cases):
        settings = options["engine_settings"]
        runs[SELF_TRAINED] = engine.run_segment(volume.paths, settings, use_cache=options["cache"])
        model = options["dataset_models"].get(cases[0].dataset)
        if model is not None:
            runs[DATASET_ENCODER] = engine.run_segment(
                volume.paths, settings, model=Path(model), use_cache=options["cache"]
            )
    results = []
    for case in cases:
        reference = load_reference(case, root)
        seed = engine.innermost_point(reference, volume.spacing)
        row: dict[str, Any] = {
            "case": case.name,
            "dataset": case.dataset,
            "group": case.group,
            "structure": case.structure,
            "inputs": list(case.inputs),
            "shape_zyx": list(volume.image.shape),
            "spacing_xyz": list(volume.spacing),
            "structure_voxels": int(np.count_nonzero(reference)),
            "seed_xyz": [int(v) for v in seed],
        }
        image = volume.channels[case.baseline_input]  # the sequence the baselines see
        row["baseline_input"] = case.inputs[case.baseline_input]
        row["baselines"], slices = score_baselines(image, volume.spacing, seed, reference, slic=options["slic"])
        row["engine"] = {}
        for run_name, (path, report) in runs.items():
            scored, engine_slices = score_hierarchy(path, volume.paths, seed, volume.spacing, reference)
            row["engine"][run_name] = {**scored, "run": report}
            slices.update({f"{name} [{run_name}]": m for name, m in engine_slices.items()})
        row["figure"] = {
            "image": image[int(seed[2])].astype(np.float32),
            "reference": _seed_slice(reference, seed),
            "masks": slices,
        }
        results.append(row)
        print(f"{case.name}: " + summarise_row(row), flush=True)
    baselines.clear_memo()
    return results


def headline(row: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The engine's seed-point score on a case: the headline click of the self-trained run."""
    run = row["engine"].get(SELF_TRAINED)
    return None if run is None else run["clicks"].get(engine.headline_click())


def summarise_row(row: dict[str, Any]) -> str:
    parts = []
    top = headline(row)
    if top is not None:
        parts.append(f"engine {top['dice']:.3f}")
    name = best_baseline(row)
    parts.append(f"best baseline {row['baselines'][name]['dice']:.3f} ({name})")
    return ", ".join(parts)


def train_dataset_models(cases: list[Case], options: dict[str, Any]) -> dict[str, str]:
    """One encoder per dataset of SHARED_ENCODER_DATASETS (trained on all its selected volumes)."""
    models: dict[str, str] = {}
    root = Path(options["root"])
    for dataset in SHARED_ENCODER_DATASETS:
        paths = sorted({p for c in cases if c.dataset == dataset for p in c.paths(root)[:1]})
        if len(paths) < 2:
            continue
        path, report = engine.run_train(paths, options["engine_settings"], use_cache=options["cache"])
        models[dataset] = str(path)
        options.setdefault("train_reports", {})[dataset] = report
        print(f"{dataset}: encoder trained on {len(paths)} volumes in {report.get('train_s', 0):.0f} s", flush=True)
    return models


def group_by_volume(cases: Sequence[Case]) -> list[list[Case]]:
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.volume_key, []).append(case)
    return list(groups.values())


def run(cases: Sequence[Case], options: dict[str, Any], jobs: int = 1) -> list[dict[str, Any]]:
    engine_cases = select_cases(options.get("engine_cases"), cases) if options["engine"] else []
    options["dataset_models"] = train_dataset_models(engine_cases, options) if engine_cases else {}
    groups = group_by_volume(cases)
    if jobs <= 1:
        return [row for group in groups for row in evaluate_volume(group, options)]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return [row for rows in pool.map(evaluate_volume, groups, [options] * len(groups)) for row in rows]


def main(argv: Optional[Sequence[str]] = None) -> int:
    from volume_report import update_docs, write_json

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="*", help="run only cases whose name contains one of these")
    parser.add_argument("--no-engine", action="store_true", help="baselines only")
    parser.add_argument(
        "--engine-cases",
        nargs="*",
        help="run the engine only on cases whose name contains one of these (baselines on all)",
    )
    parser.add_argument("--quick", action="store_true", help="few training epochs, no SLIC (a smoke run)")
    parser.add_argument("--jobs", type=int, default=1, help="volumes scored in parallel (default 1)")
    parser.add_argument("--train-epochs", type=int, help="engine training epochs (default: the engine's)")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of every engine run's training and condensation (default 0: the table's; others measure "
        "how much the table moves from run to run)",
    )
    parser.add_argument("--no-cache", action="store_true", help="rerun the engine even when cached")
    parser.add_argument(
        "--data", type=Path, default=None, help="data folder (default: $CUTS_VOLUMES_DIR or ../shared/data/volumes)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "volumes3d.json")
    parser.add_argument(
        "--docs",
        choices=["auto", "yes", "no"],
        default="auto",
        help="write docs/benchmarks.md + figure (auto: only for a full run of every case)",
    )
    args = parser.parse_args(argv)

    cases = select_cases(args.cases, ALL_CASES)
    if not cases:
        parser.error("no case matches --cases")
    epochs = args.train_epochs if args.train_epochs is not None else (2 if args.quick else None)
    options = {
        "root": str(args.data or volumes_dir()),
        "engine": not args.no_engine,
        "engine_cases": args.engine_cases,
        "slic": not args.quick,
        "cache": not args.no_cache,
        "engine_settings": {"seed": args.seed, "train_epochs": epochs},
    }
    t0 = time.perf_counter()
    rows = run(cases, options, jobs=args.jobs)
    meta = {
        "wall_s": time.perf_counter() - t0,
        "engine_source_hash": engine.engine_source_hash(),
        "headline_click": engine.headline_click(),
        "clicks": list(engine.CLICKS),
        "engine_settings": options["engine_settings"],
        "train_reports": options.get("train_reports", {}),
        "quick": args.quick,
    }
    write_json(rows, meta, args.out)
    full = not args.cases and not args.quick and not args.no_engine and not args.engine_cases and args.seed == 0
    if args.docs == "yes" or (args.docs == "auto" and full):
        update_docs(rows, meta, REPO / "docs" / "benchmarks.md", REPO / "docs" / "figures" / "volumes3d.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
