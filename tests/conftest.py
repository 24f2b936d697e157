"""Shared fixtures: the paper's retina data (../shared/data/retina), the 3D benchmark's cases (../shared/data/volumes),
a fixed numpy seed, one torch thread."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def _retina_dir() -> Path:
    env = os.environ.get("CUTS_RETINA_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "retina"


@pytest.fixture(scope="session")
def retina_dir() -> Path:
    """The 56 fundus images with expert GA masks. Missing data fails the test (CI always has it)."""
    path = _retina_dir()
    if not (path / "image_with_GA").is_dir():
        pytest.fail(f"retina data not found at {path} (set CUTS_RETINA_DIR)")
    return path


@pytest.fixture(scope="session")
def retina_pairs(retina_dir: Path) -> list[tuple[Path, Path]]:
    """(image, label) paths paired by number, sorted."""
    pairs = []
    for image in sorted((retina_dir / "image_with_GA").glob("image*.png")):
        number = image.stem.replace("image", "")
        label = retina_dir / "label_with_GA" / f"label{number}.npy"
        if label.is_file():
            pairs.append((image, label))
    assert len(pairs) == 56, f"expected 56 retina pairs, found {len(pairs)}"
    return pairs


VolumeCase = tuple[np.ndarray, np.ndarray, tuple[float, float, float]]


@pytest.fixture(scope="session")
def volume_case() -> Callable[[str], VolumeCase]:
    """Loader of one 3D benchmark case by name (benchmarks/volume_cases.py): (image, expert mask, spacing x, y, z).
    Missing data fails the test (CI has the shared volumes)."""
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        from volume_cases import load_reference, load_volume, select_cases, volumes_dir
    finally:
        sys.path.remove(str(REPO_ROOT / "benchmarks"))

    def load(name: str) -> VolumeCase:
        root = volumes_dir()
        if not root.is_dir():
            pytest.fail(f"3D volumes not found at {root} (set CUTS_VOLUMES_DIR)")
        case = select_cases([name])[0]
        volume = load_volume(case, root)
        return volume.image, load_reference(case, root).astype(bool), volume.spacing

    return load


#: Test processes at most (pyproject's ``-n auto``): the heaviest files hold a segmented scan of a few GB each.
MAX_TEST_PROCESSES = 4


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """One test process a core, at most `MAX_TEST_PROCESSES`."""
    return max(1, min(os.cpu_count() or 1, MAX_TEST_PROCESSES))


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    np.random.seed(0)


@pytest.fixture(autouse=True)
def _threads() -> Iterator[None]:
    """One torch thread per test: results do not depend on the machine's core count, and tests sharing a
    small CI machine do not oversubscribe it."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
