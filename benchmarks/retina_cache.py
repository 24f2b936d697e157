"""The benchmark's cache: arrays and models keyed by a hash of the engine sources that produced them."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

import CUTSSegmentationLib.learn.embedding
import CUTSSegmentationLib.learn.training
import CUTSSegmentationLib.pipeline  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


_SOURCES: dict[str, bytes] = {}


def freeze_engine_sources() -> None:
    """Import the engine and snapshot its source files once, at start-up: cache keys then describe the code
    this process runs even if someone edits the files while a long benchmark is under way."""

    engine = REPO / "CUTSSegmentationLib"
    for path in sorted(engine.rglob("*.py")):
        _SOURCES[path.relative_to(engine).as_posix()] = path.read_bytes()


def source_hash(names: list[str]) -> str:
    """Hash of engine sources (paths relative to CUTSSegmentationLib/), from the start-up snapshot when taken."""
    h = hashlib.sha1()
    for name in names:
        h.update(_SOURCES.get(name) or (REPO / "CUTSSegmentationLib" / name).read_bytes())
    return h.hexdigest()[:10]


def engine_version() -> str:
    """git HEAD of the repository, plus '+dirty <hash>' when the engine's files differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "CUTSSegmentationLib"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if dirty:
        return f"{head}+dirty (engine sources {source_hash(sorted(_SOURCES))})"
    return head or "unknown"


TRAIN_SOURCES = [
    "learn/training.py",
    "learn/sampling.py",
    "learn/losses.py",
    "learn/encoder.py",
    "learn/normalization.py",
    "io/reading.py",
]


SEGMENT_SOURCES = ["learn/embedding.py", "condense/condensation.py", "pipeline.py", "condense/persistence.py"]


#: What a peer-objective encoder (benchmarks/peers.py) depends on besides the CUTS training sources.
OBJECTIVE_SOURCES = TRAIN_SOURCES + ["learn/peer_objectives.py", "learn/transforms.py", "learn/gaussian_mixture.py"]


class Cache:
    def __init__(self, root: Path, enabled: bool = True) -> None:
        self.root = root
        self.enabled = enabled

    def path(self, *parts: str) -> Path:
        p = self.root.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def arrays(
        self, rel: str, compute: Callable[[], dict[str, np.ndarray]], required: Sequence[str] = ()
    ) -> dict[str, np.ndarray]:
        """The arrays cached at `rel`, or `compute()` (then cached); a cached file that lacks one of the
        `required` keys (written by an older version of the harness) is recomputed."""
        p = self.path(rel)
        if self.enabled and p.is_file():
            try:
                with np.load(p, allow_pickle=False) as data:
                    if set(required) <= set(data.files):
                        return {k: data[k] for k in data.files}
            except Exception:
                pass
        out = compute()
        tmp = p.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **out)
        os.replace(tmp, p)
        return out
