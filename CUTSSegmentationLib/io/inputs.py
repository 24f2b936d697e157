"""The list of input images a command-line job gets: folders expanded, files kept, in the order given."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..core.errors import InputError
from .formats import PathLike, is_supported, supported_list


def _images_in_folder(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and is_supported(p))


def collect_inputs(paths: Iterable[PathLike]) -> list[Path]:
    """Expand folders (non-recursive, sorted, supported images only) and keep files, in the order given.

    A missing path, an unsupported file or a folder without images is an `InputError`; duplicates are
    dropped so an image named twice is segmented once.
    """
    collected: list[Path] = []
    for item in paths:
        path = Path(item)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if path.is_dir():
            found = _images_in_folder(path)
            if not found:
                raise InputError(f"{path}: folder contains no supported images ({supported_list()})")
            collected.extend(found)
        elif is_supported(path):
            collected.append(path)
        else:
            raise InputError(f"{path}: unsupported file type (supported: {supported_list()})")
    if not collected:
        raise InputError("no input images given")
    unique: dict[Path, None] = dict.fromkeys(collected)
    return list(unique)
