"""The engine names the Slicer module uses, imported in this one file.

The module's packages (jobs, MRML bridge, panel) and the batch script take engine classes and functions
from here, so a move inside the engine package changes this file only. Parts that import torch are
reached through functions: importing torch into Slicer's process costs seconds and hundreds of MB,
and the panel itself never needs it (its jobs run the engine in a child process).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Callable

from CUTSSegmentationLib.binarize import binarize_at_seed
from CUTSSegmentationLib.errors import (
    CancelledError,
    CUTSError,
    InputError,
    ModelFileError,
    ResourceError,
)
from CUTSSegmentationLib.hierarchy import HIERARCHY_FORMAT, Hierarchy, smallest_uint
from CUTSSegmentationLib.imagedata import Geometry, ImageData
from CUTSSegmentationLib.progress import (
    PROGRESS_LINE_PREFIX,
    CancelToken,
    ConsoleProgress,
    ProgressCallback,
    no_progress,
    parse_progress_line,
)


def _find_structure_at_seed() -> Callable[..., Any] | None:
    """The engine's `structure_at_seed(levels, seed_xyz, *, level, whole_class, fill_holes)`, where it lives.

    Engines without it return None; callers then keep the whole label under the seed.
    """
    for name in (
        "CUTSSegmentationLib.condense.structures",
        "CUTSSegmentationLib.structures",
    ):
        try:
            module = __import__(name, fromlist=["structure_at_seed"])
        except ImportError:
            continue
        function = getattr(module, "structure_at_seed", None)
        if function is not None:
            return function
    return None


#: The connected structure under a seed, chosen over the levels (None with an engine that lacks it).
structure_at_seed = _find_structure_at_seed()

#: The package run as `python -m <ENGINE_PACKAGE>` by background jobs.
ENGINE_PACKAGE = "CUTSSegmentationLib"

__all__ = [
    "ENGINE_PACKAGE",
    "HIERARCHY_FORMAT",
    "PROGRESS_LINE_PREFIX",
    "CUTSError",
    "CancelToken",
    "CancelledError",
    "ConsoleProgress",
    "Geometry",
    "Hierarchy",
    "ImageData",
    "InputError",
    "ModelFileError",
    "ProgressCallback",
    "ResourceError",
    "binarize_at_seed",
    "engine_package",
    "image_reader",
    "model_files",
    "no_progress",
    "parse_progress_line",
    "pipeline",
    "smallest_uint",
    "structure_at_seed",
    "synthetic_image_2d",
]


def engine_package() -> ModuleType:
    """The engine package itself (its folder is where background jobs run)."""
    import CUTSSegmentationLib

    return CUTSSegmentationLib


def pipeline() -> ModuleType:
    """`train` and `segment` on images (imports torch)."""
    from CUTSSegmentationLib import pipeline as module

    return module


def model_files() -> ModuleType:
    """`load_model` and `save_model` for .safetensors encoders (imports torch)."""
    from CUTSSegmentationLib import modelfile as module

    return module


def image_reader() -> ModuleType:
    """`read_image` and `validate_image` for files Slicer's core cannot read (imports SimpleITK)."""
    from CUTSSegmentationLib import imageio as module

    return module


def synthetic_image_2d(size: int = 64, seed: int = 0):
    """A small phantom image and its true labels, for self-tests."""
    from CUTSSegmentationLib.phantom import synthetic_image_2d as make

    return make(size=size, seed=seed)
