"""The 3D benchmark's only door into the engine: imports, the user's path in a child process, and the clicks.

Every engine name the benchmark uses is imported here (lazily, so baselines run without torch), so a move of
the engine's modules is fixed in this file alone. `run_segment` runs `pipeline.segment` (self-trained, or with
a model file) in a child process, so that its wall time by stage and its peak memory are the job's own, and
caches the hierarchy (and the encoder that embedded the volume, beside it) per (inputs, engine source hash,
settings). `CLICKS` holds what a click on the engine's output returns: a name -> function (EngineRun, seed
(x, y, z), spacing (x, y, z)) -> bool mask.

Run as a script it is the child: ``python volume_engine.py segment|train --out FILE INPUT...``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ENGINE_DIR = REPO / "CUTSSegmentationLib"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@dataclass
class EngineRun:
    """One engine output as a click sees it: the hierarchy, the inputs it segmented and the encoder it used."""

    hierarchy: Any
    inputs: list[Path] = field(default_factory=list)
    model: Optional[Path] = None


ClickFn = Callable[[EngineRun, Sequence[int], Sequence[float]], np.ndarray]


# ------------------------------------------------------------------------------------------ engine names
def innermost_point(mask: np.ndarray, spacing: Sequence[float]) -> tuple[int, ...]:
    from CUTSSegmentationLib.condense.binarize import innermost_point as f

    return f(mask, spacing)


def component_at(labels: np.ndarray, index_zyx: Sequence[int]) -> np.ndarray:
    """The connected region (face neighbours) of the label under `index_zyx` that holds it."""
    from CUTSSegmentationLib.condense.structures import component_at as f

    return f(labels, index_zyx)


def binarize_with_hint(labels: np.ndarray, truth: np.ndarray) -> np.ndarray:
    from CUTSSegmentationLib.condense.binarize import binarize_with_hint as f

    return f(labels, truth)


def load_hierarchy(path: Path):
    from CUTSSegmentationLib.condense.hierarchy import Hierarchy

    return Hierarchy.load(path)


def load_run(path: Path, inputs: Sequence[Path]) -> EngineRun:
    """The cached hierarchy at `path` with its inputs and the encoder saved beside it (when there is one)."""
    model = Path(path).with_suffix(".safetensors")
    return EngineRun(load_hierarchy(path), [Path(p) for p in inputs], model if model.is_file() else None)


@functools.lru_cache(maxsize=1)
def engine_source_hash() -> str:
    """Hash of every engine source file (any layout of subpackages), so a changed engine reruns. Taken once
    per process: an engine edited during a run does not split the run's cache keys."""
    h = hashlib.sha1()
    for path in sorted(ENGINE_DIR.rglob("*.py")):
        h.update(str(path.relative_to(ENGINE_DIR)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:10]


def benchmark_runs(cases: Sequence[Any]) -> Iterator[tuple[list[Any], Any, EngineRun]]:
    """(cases of one volume, the volume, its benchmark run) for every volume of `cases` (volume_cases.Case):
    the 3D benchmark's self-trained run with the defaults, from the cache (computed as the benchmark computes it
    where missing)."""
    from volume_cases import load_volume, volumes_dir

    root = volumes_dir()
    for key in dict.fromkeys(c.volume_key for c in cases):
        group = [c for c in cases if c.volume_key == key]
        volume = load_volume(group[0], root)
        path, _report = run_segment(volume.paths, {"seed": 0, "train_epochs": None})
        yield group, volume, load_run(path, volume.paths)


# ---------------------------------------------------------------------------------------------- clicks
def _click_today(run: EngineRun, seed_xyz: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """The label under the seed on the persistent map (`cuts binarize --seed`), empty on an unpainted voxel."""
    from CUTSSegmentationLib.condense.binarize import binarize_at_seed
    from CUTSSegmentationLib.core.errors import InputError

    hierarchy = run.hierarchy
    labels = hierarchy.persistent if hierarchy.persistent is not None else hierarchy.levels[-1]
    try:
        return binarize_at_seed(labels, seed_xyz)
    except InputError:
        return np.zeros(hierarchy.shape, dtype=bool)


def _click_sizes_only(run: EngineRun, seed_xyz: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """The connected structure at the level before its first salient growth, in the whole-volume hierarchy
    (the level chosen from region sizes alone, without the image)."""
    from CUTSSegmentationLib.condense.structures import structure_at_seed

    return structure_at_seed(run.hierarchy.levels, seed_xyz).mask


@functools.lru_cache(maxsize=1)
def _read_inputs(inputs: tuple[Path, ...]):
    """The engine's image of a run's inputs, read once for every click on that scan (None without inputs)."""
    from CUTSSegmentationLib.io.sequences import read_sequences

    return read_sequences(list(inputs)) if inputs else None


def _click_whole_volume(run: EngineRun, seed_xyz: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """The whole-volume hierarchy's structure as the engine chooses it with the image, never looking closer."""
    from CUTSSegmentationLib import pipeline

    image = _read_inputs(tuple(run.inputs))
    return pipeline.structure_at_click(run.hierarchy, seed_xyz, image, None, look_closer=False).mask


def _click_structure(run: EngineRun, seed_xyz: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """What `cuts binarize --seed` keeps: the whole-volume structure, or a closer look where that is too coarse."""
    from CUTSSegmentationLib import pipeline
    from CUTSSegmentationLib.learn.modelfile import load_model

    model = load_model(run.model, device="cpu") if run.model is not None else None
    image = _read_inputs(tuple(run.inputs))
    return pipeline.structure_at_click(run.hierarchy, seed_xyz, image, model, device="cpu").mask


def _engine_clicks() -> dict[str, ClickFn]:
    clicks: dict[str, ClickFn] = {"engine (today)": _click_today}
    try:
        from CUTSSegmentationLib.condense import structures
    except ImportError:
        return clicks
    if hasattr(structures, "structure_at_seed"):
        clicks["engine (sizes only)"] = _click_sizes_only
    try:
        from CUTSSegmentationLib import pipeline
    except ImportError:
        return clicks
    if hasattr(pipeline, "structure_at_click"):
        clicks["engine (whole volume)"] = _click_whole_volume
        clicks["engine"] = _click_structure
    return clicks


#: Name -> click on the engine's output. "engine" (when present) is the headline; else the most recent one.
CLICKS: dict[str, ClickFn] = _engine_clicks()


def headline_click() -> str:
    return "engine" if "engine" in CLICKS else list(CLICKS)[-1]


# ----------------------------------------------------------------------------------------- child runs
def _cache_root() -> Path:
    return REPO / "benchmarks" / ".cache" / "volumes3d"


def _key(kind: str, inputs: Sequence[Path], settings: dict[str, Any]) -> str:
    text = json.dumps(
        {"kind": kind, "inputs": [str(p) for p in inputs], "engine": engine_source_hash(), **settings}, sort_keys=True
    )
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _run_child(args: list[str], log: Path) -> dict[str, Any]:
    """Run this file as a child process; its JSON report (last stdout line) with the parent's wall time."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO),
    )
    wall = time.perf_counter() - t0
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"engine child failed ({proc.returncode}), see {log}: {proc.stderr.strip()[-400:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["process_wall_s"] = wall
    return report


def _wait_for_other_run(out: Path) -> None:
    """Another benchmark run computing the same cache entry holds `<out>.lock`: wait for it to finish."""
    lock = out.with_suffix(".lock")
    while lock.is_file():
        try:
            os.kill(int(lock.read_text() or 0), 0)
        except (ValueError, ProcessLookupError):
            lock.unlink(missing_ok=True)  # its owner is gone
            return
        except PermissionError:
            pass
        time.sleep(5)


def _locked_child(args: list[str], out: Path) -> dict[str, Any]:
    lock = out.with_suffix(".lock")
    out.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(str(os.getpid()))
    try:
        return _run_child(args, out.with_suffix(".log"))
    finally:
        lock.unlink(missing_ok=True)


def run_train(inputs: Sequence[Path], settings: dict[str, Any], use_cache: bool = True) -> tuple[Path, dict]:
    """Train one encoder on several volumes (one dataset) in a child process; (model file, report)."""
    key = _key("train", inputs, settings)
    out = _cache_root() / "models" / f"{key}.safetensors"
    report_path = out.with_suffix(".json")
    _wait_for_other_run(out)
    if use_cache and out.is_file() and report_path.is_file():
        return out, json.loads(report_path.read_text())
    args = ["train", "--out", str(out), *_settings_args(settings), *map(str, inputs)]
    report = _locked_child(args, out)
    report_path.write_text(json.dumps(report, indent=1))
    return out, report


def run_segment(
    inputs: Sequence[Path], settings: dict[str, Any], model: Optional[Path] = None, use_cache: bool = True
) -> tuple[Path, dict]:
    """`pipeline.segment` on the volume in a child process (cached); (hierarchy.npz, report)."""
    key = _key("segment", inputs, {**settings, "model": model.name if model else None})
    out = _cache_root() / "hierarchies" / f"{key}.npz"
    report_path = out.with_suffix(".json")
    _wait_for_other_run(out)
    if use_cache and out.is_file() and report_path.is_file():
        return out, json.loads(report_path.read_text())
    args = ["segment", "--out", str(out), *_settings_args(settings)]
    if model is not None:
        args += ["--model", str(model)]
    report = _locked_child(args + list(map(str, inputs)), out)
    report_path.write_text(json.dumps(report, indent=1))
    return out, report


def _settings_args(settings: dict[str, Any]) -> list[str]:
    args = ["--seed", str(settings.get("seed", 0))]
    if settings.get("train_epochs") is not None:
        args += ["--train-epochs", str(settings["train_epochs"])]
    if settings.get("threads"):
        args += ["--threads", str(settings["threads"])]
    return args


# ------------------------------------------------------------------------------------------ the child
def _peak_rss_mb() -> float:
    """This process's own peak resident memory (MB). Linux keeps the parent's high-water mark in a child's
    `ru_maxrss` across fork and exec (a child started by a 3 GB parent reports 3 GB), so the kernel's VmHWM of
    this process's memory map is read where there is one. Elsewhere `ru_maxrss` is kilobytes, bytes on macOS."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _child_main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="one engine job of the 3D benchmark (child process)")
    parser.add_argument("command", choices=["segment", "train"])
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-epochs", type=int)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from CUTSSegmentationLib import pipeline
    from CUTSSegmentationLib.io.reading import read_image
    from CUTSSegmentationLib.io.sequences import read_sequences

    t0 = time.perf_counter()
    if args.command == "segment":
        images = [read_sequences(args.inputs)]  # several inputs: the channels of one image
    else:
        images = [read_image(p) for p in args.inputs]
    read_s = time.perf_counter() - t0
    report: dict[str, Any] = {"read_s": read_s}
    if args.command == "train":
        from CUTSSegmentationLib.learn.modelfile import save_model

        t0 = time.perf_counter()
        model = pipeline.train(images, epochs=args.train_epochs, device="cpu", seed=args.seed)
        report["train_s"] = time.perf_counter() - t0
        save_model(model, args.out)
    else:
        model = None
        if args.model:
            from CUTSSegmentationLib.learn.modelfile import load_model

            model = load_model(args.model)
        t0 = time.perf_counter()
        hierarchy, model = pipeline.segment_with_encoder(
            images[0], model, device="cpu", train_epochs=args.train_epochs, seed=args.seed
        )
        report["segment_s"] = time.perf_counter() - t0
        hierarchy.save(args.out)
        from CUTSSegmentationLib.learn.modelfile import save_model

        save_model(model, Path(args.out).with_suffix(".safetensors"))
        report["timings"] = hierarchy.info.get("timings", {})
        report["condensation_timings"] = hierarchy.info.get("condensation_timings", {})
        report["n_clusters"] = [int(n) for n in hierarchy.n_clusters]
    report["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(report, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
