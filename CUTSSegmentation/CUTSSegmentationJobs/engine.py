"""The engine names the Slicer module uses, imported in this one file.

The module's packages (jobs, MRML bridge, panel) and the batch script take engine classes and functions
from here, so a move inside the engine package changes this file only. Parts that import torch are
reached through functions: importing torch into Slicer's process costs seconds and hundreds of MB,
and the panel itself never needs it (its jobs run the engine in a child process).
"""

from __future__ import annotations

from types import ModuleType, SimpleNamespace
from typing import Any, Callable

from CUTSSegmentationLib.condense.binarize import binarize_at_seed, seed_to_index
from CUTSSegmentationLib.condense.hierarchy import HIERARCHY_FORMAT, READABLE_FORMATS, Hierarchy, parse_level
from CUTSSegmentationLib.condense.level_stack import Levels, LevelStack
from CUTSSegmentationLib.core.errors import (
    CancelledError,
    CUTSError,
    InputError,
    ModelFileError,
    ResourceError,
)
from CUTSSegmentationLib.core.exit_codes import EXIT_OK, run_command
from CUTSSegmentationLib.core.imagedata import Geometry, ImageData
from CUTSSegmentationLib.core.label_dtypes import smallest_uint
from CUTSSegmentationLib.core.progress import (
    PROGRESS_LINE_PREFIX,
    CancelToken,
    ConsoleProgress,
    ProgressCallback,
    ProgressLine,
    format_time_left,
    no_progress,
    parse_progress_line,
)
from CUTSSegmentationLib.io.sequences import MAX_SEQUENCES, Grid, check_same_grid, stack_sequences
from CUTSSegmentationLib.io.staging import atomic_write, atomic_write_files, check_output_file


def _find_structure_at_seed() -> Callable[..., Any] | None:
    """The engine's `structure_at_seed(levels, seed_xyz, *, level, whole_class, fill_holes)`.

    An older engine without it gives None; callers then keep the whole label under the seed.
    """
    try:
        from CUTSSegmentationLib.condense.structures import structure_at_seed as function
    except ImportError:
        return None
    return function


#: The connected structure under a seed, chosen over the levels (None with an engine that lacks it).
structure_at_seed = _find_structure_at_seed()

#: The package run as `python -m <ENGINE_PACKAGE>` by background jobs.
ENGINE_PACKAGE = "CUTSSegmentationLib"

__all__ = [
    "ENGINE_PACKAGE",
    "EXIT_OK",
    "MAX_SEQUENCES",
    "HIERARCHY_FORMAT",
    "PROGRESS_LINE_PREFIX",
    "READABLE_FORMATS",
    "CUTSError",
    "CancelToken",
    "CancelledError",
    "ConsoleProgress",
    "Geometry",
    "Grid",
    "Hierarchy",
    "ImageData",
    "InputError",
    "LevelStack",
    "Levels",
    "ModelFileError",
    "ProgressCallback",
    "ProgressLine",
    "ResourceError",
    "atomic_write",
    "atomic_write_files",
    "binarize_at_seed",
    "check_output_file",
    "check_same_grid",
    "engine_package",
    "format_time_left",
    "max_kept_levels",
    "image_reader",
    "mask_reader",
    "model_files",
    "no_progress",
    "parse_level",
    "parse_progress_line",
    "pipeline",
    "run_command",
    "seed_to_index",
    "smallest_uint",
    "stack_sequences",
    "structure_at_seed",
    "synthetic_image_2d",
]


def engine_package() -> ModuleType:
    """The engine package itself (its folder is where background jobs run)."""
    import CUTSSegmentationLib

    return CUTSSegmentationLib


def max_kept_levels() -> int:
    """The most levels a hierarchy keeps (imports torch, through the condensation settings)."""
    from CUTSSegmentationLib.condense.condensation import CondensationConfig

    return CondensationConfig().max_levels


def pipeline() -> ModuleType:
    """`train` and `segment` on images (imports torch)."""
    from CUTSSegmentationLib import pipeline as module

    return module


def model_files() -> ModuleType:
    """`load_model` and `save_model` for .safetensors encoders (imports torch)."""
    from CUTSSegmentationLib.learn import modelfile as module

    return module


def image_reader() -> SimpleNamespace:
    """`read_image` and `validate_image` for files Slicer's core cannot read (imports SimpleITK)."""
    from CUTSSegmentationLib.io.reading import read_image
    from CUTSSegmentationLib.io.validation import validate_image

    return SimpleNamespace(read_image=read_image, validate_image=validate_image)


def mask_reader() -> Callable[..., Any]:
    """`read_label_mask(path)`: a mask file as a bool array (imports SimpleITK)."""
    from CUTSSegmentationLib.io.reading import read_label_mask

    return read_label_mask


def synthetic_image_2d(size: int = 64, seed: int = 0):
    """A small phantom image and its true labels, for self-tests."""
    from CUTSSegmentationLib.evaluate.phantom import synthetic_image_2d as make

    return make(size=size, seed=seed)
