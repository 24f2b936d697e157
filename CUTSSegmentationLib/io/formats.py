"""File formats the engine reads and writes, by extension."""

from __future__ import annotations

from pathlib import Path
from typing import Union

PathLike = Union[str, Path]

#: 2D raster formats (read with SimpleITK, Pillow as fallback for modes ITK refuses such as grey+alpha).
RASTER_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Medical volume formats (read with SimpleITK, geometry kept).
VOLUME_EXTENSIONS = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
#: Plain numpy arrays (the retina labels come as .npy).
ARRAY_EXTENSIONS = (".npy",)
SUPPORTED_EXTENSIONS = RASTER_EXTENSIONS + VOLUME_EXTENSIONS + ARRAY_EXTENSIONS

#: Label-map formats `write_label_image` writes as one self-contained file (atomic replace is possible).
LABEL_EXTENSIONS = (".nrrd", ".nii.gz", ".nii", ".mha", ".png")

#: The most vector components an input may have (RGBA); more means it is not an image we can segment.
MAX_COMPONENTS = 4


def file_extension(path: PathLike) -> str:
    """Lower-case extension, with the compound `.nii.gz` / `.seg.nrrd` style handled for `.nii.gz`."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def is_supported(path: PathLike) -> bool:
    """True when `read_image` knows the file's extension."""
    return file_extension(path) in SUPPORTED_EXTENSIONS


def supported_list() -> str:
    return ", ".join(SUPPORTED_EXTENSIONS)
