"""Taking a finished job's outputs: the trained encoder (weights + card), the computed hierarchy, a kept mask.

Plain files only (no MRML, no torch), so the panel can keep or save an encoder without importing torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .engine import Hierarchy, InputError, atomic_write_files, mask_reader


def card_path(model_path: str | Path) -> Path:
    """The JSON card beside a model file (same stem), as the engine's model files name it."""
    return Path(model_path).with_suffix(".json")


def copy_model_file(source: str | Path, destination: str | Path) -> Path:
    """Copy a model (weights + its card, if present) to `destination`: both files appear together or not at all.

    Used by "Save encoder..." and to move a freshly trained model out of the job's temporary folder.
    """
    source, destination = Path(source), Path(destination)
    if destination.suffix != ".safetensors":
        destination = destination.with_suffix(".safetensors")
    if not source.is_file():
        raise InputError(f"encoder file not found: {source}")
    pairs = [(source, destination)]
    if card_path(source).is_file():
        pairs.append((card_path(source), card_path(destination)))
    contents = {dst: src.read_bytes() for src, dst in pairs if src.resolve() != dst.resolve()}
    if contents:
        atomic_write_files(contents)  # weights and card together, with the umask's mode
    return destination


def load_job_hierarchy(out_dir: str | Path) -> Hierarchy:
    """The hierarchy a `cuts segment` job wrote (DIR/hierarchy.npz)."""
    path = Path(out_dir) / "hierarchy.npz"
    if not path.is_file():
        raise InputError(f"the segmentation job wrote no hierarchy ({path} is missing)")
    return Hierarchy.load(path)


def load_job_mask(path: str | Path) -> np.ndarray:
    """The bool mask (Z, Y, X) a `cuts binarize` job wrote."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"the job wrote no structure ({path} is missing)")
    return mask_reader()(path)
