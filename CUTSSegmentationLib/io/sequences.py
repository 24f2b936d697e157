"""Several co-registered sequences of one case (FLAIR + contrast T1, T1 + T2) as the channels of one image.

An MRI study images the same anatomy with several contrasts; stacked as channels, the encoder sees what no
single sequence shows (each channel keeps its own percentile normalisation, `learn.normalization`). The
sequences must already share one voxel grid: nothing is resampled here (choosing the reference and the
interpolation is the user's call), and a mismatch is refused with one line that names both inputs, says what
differs and how to resample. The Slicer module checks its volume nodes with the same `check_same_grid`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np

from ..core.errors import InputError
from ..core.imagedata import Geometry, ImageData
from .formats import MAX_COMPONENTS, PathLike

#: How the names of stacked sequences are joined in `ImageData.source` ("flair.nii.gz + t1c.nii.gz").
SEQUENCE_SEPARATOR = " + "
#: The most sequences one image takes (the channel limit of `io.validation`).
MAX_SEQUENCES = MAX_COMPONENTS
#: Largest origin or spacing difference, as a fraction of a voxel, still counted as the same grid
#: (NIfTI stores geometry as float32, so a grid written twice is not bit-identical).
GRID_TOLERANCE = 1e-3
#: Largest difference of a direction-cosine entry still counted as the same orientation.
DIRECTION_TOLERANCE = 1e-4
#: How to put a sequence on the first one's grid, for inputs given as files.
FILE_RESAMPLE_HINT = (
    "resample it onto the first sequence (3D Slicer: Modules > Resample Scalar/Vector/DWI Volume or "
    "Resample Image (BRAINS); command line: e.g. SimpleITK's sitk.Resample(image, first_image))"
)


@dataclass(frozen=True)
class Grid:
    """Where one image's voxels lie: spatial shape (Z, Y, X), geometry, and whether it is a 2D image."""

    shape: tuple[int, int, int]
    geometry: Geometry
    is_2d: bool = False

    @staticmethod
    def of(image: ImageData) -> "Grid":
        z, y, x, _ = image.array.shape
        return Grid((int(z), int(y), int(x)), image.geometry, bool(image.is_2d))


def _numbers(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def _size(shape_zyx: Sequence[int], is_2d: bool) -> str:
    """Size in x, y[, z] order, as ITK and Slicer show it."""
    xyz = tuple(reversed(shape_zyx))
    return "x".join(str(s) for s in (xyz[:2] if is_2d else xyz))


def grid_differences(first: Grid, other: Grid) -> list[str]:
    """What differs between two grids, in words (size, spacing, origin, direction); empty when they match.

    Examples
    --------
    >>> a = Grid((155, 240, 240), Geometry(origin=(0.0, -239.0, 0.0)))
    >>> grid_differences(a, Grid((155, 240, 240), Geometry(origin=(0.0, -239.0, 2.0))))
    ['origin (0, -239, 2) vs (0, -239, 0) mm']
    """
    differences = []
    if first.shape != other.shape:
        differences.append(f"size {_size(other.shape, other.is_2d)} vs {_size(first.shape, first.is_2d)}")
    a, b = first.geometry, other.geometry
    spacing_a, spacing_b = np.asarray(a.spacing, dtype=float), np.asarray(b.spacing, dtype=float)
    voxel = float(np.min(np.abs(spacing_a))) or 1.0
    if np.any(np.abs(spacing_a - spacing_b) > GRID_TOLERANCE * np.abs(spacing_a)):
        differences.append(f"spacing {_numbers(b.spacing)} vs {_numbers(a.spacing)} mm")
    if np.any(np.abs(np.asarray(a.origin, dtype=float) - np.asarray(b.origin, dtype=float)) > GRID_TOLERANCE * voxel):
        differences.append(f"origin {_numbers(b.origin)} vs {_numbers(a.origin)} mm")
    if np.any(np.abs(a.direction_matrix - b.direction_matrix) > DIRECTION_TOLERANCE):
        differences.append(f"direction {_numbers(b.direction)} vs {_numbers(a.direction)}")
    return differences


def check_same_grid(first_name: str, first: Grid, name: str, other: Grid, how_to_fix: str = FILE_RESAMPLE_HINT) -> None:
    """Refuse, in one `InputError` line, a sequence that does not lie on the first sequence's voxel grid.

    Parameters
    ----------
    first_name, first
        The first sequence (whose grid every output takes) and its grid.
    name, other
        The sequence to check and its grid.
    how_to_fix : str
        The end of the message: how to resample, in the words of the caller's application.

    Raises
    ------
    InputError
        2D mixed with 3D, or the size, spacing, origin or direction differ beyond the tolerance.

    Examples
    --------
    >>> g = Grid((2, 8, 8), Geometry())
    >>> check_same_grid("a.nrrd", g, "b.nrrd", Grid((2, 8, 9), Geometry()), how_to_fix="resample b")
    Traceback (most recent call last):
    ...
    CUTSSegmentationLib.core.errors.InputError: b.nrrd does not lie on the voxel grid of a.nrrd (size 9x8x2 vs \
8x8x2): resample b
    """
    if first.is_2d != other.is_2d:
        kinds = {True: "a 2D image", False: "a 3D volume"}
        raise InputError(
            f"{name} is {kinds[other.is_2d]} but {first_name} is {kinds[first.is_2d]}: sequences stacked as "
            "channels must all be 2D images or all 3D volumes"
        )
    differences = grid_differences(first, other)
    if differences:
        raise InputError(
            f"{name} does not lie on the voxel grid of {first_name} ({'; '.join(differences)}): {how_to_fix}"
        )


def _name_of(image: ImageData, index: int) -> str:
    return image.source if image.source else f"sequence {index + 1}"


def stack_sequences(images: Iterable[ImageData], how_to_fix: str = FILE_RESAMPLE_HINT) -> ImageData:
    """Stack co-registered grey-level images as the channels of one image, in the order given.

    One image comes back unchanged. Several must each have one channel and share the first one's grid
    (within `GRID_TOLERANCE`); the result has the first one's geometry, ``source`` "a + b", ``sequences``
    (a, b), and the pixels' common stored dtype ("float32" when they differ, so percentile normalisation
    is used).

    Parameters
    ----------
    images : iterable of ImageData
        The sequences of one case, each (Z, Y, X, 1).
    how_to_fix : str
        How to resample, ending the message of a grid mismatch (the Slicer module names its own module).

    Returns
    -------
    ImageData
        (Z, Y, X, n) float32.

    Raises
    ------
    InputError
        No image, more than `MAX_SEQUENCES`, an RGB/vector image among several, 2D mixed with 3D, grids differ.

    Examples
    --------
    >>> import numpy as np
    >>> a = ImageData(np.zeros((4, 8, 8, 1), np.float32), source="t1.nrrd")
    >>> b = ImageData(np.ones((4, 8, 8, 1), np.float32), source="t2.nrrd")
    >>> stacked = stack_sequences([a, b])
    >>> stacked.array.shape, stacked.sequences
    ((4, 8, 8, 2), ('t1.nrrd', 't2.nrrd'))
    """
    images = list(images)
    if not images:
        raise InputError("no sequences given")
    if len(images) == 1:
        return images[0]
    if len(images) > MAX_SEQUENCES:
        raise InputError(f"{len(images)} sequences given; at most {MAX_SEQUENCES} can be stacked as channels")
    names = [_name_of(image, i) for i, image in enumerate(images)]
    for name, image in zip(names, images):
        if image.channels != 1:
            raise InputError(
                f"{name} has {image.channels} channels (an RGB or vector image); each of several sequences "
                "must be a grey-level (scalar) image or volume"
            )
    first = Grid.of(images[0])
    for name, image in zip(names[1:], images[1:]):
        check_same_grid(names[0], first, name, Grid.of(image), how_to_fix)
    dtypes = {image.source_dtype for image in images}
    return ImageData(
        array=np.concatenate([image.array for image in images], axis=3).astype(np.float32, copy=False),
        geometry=images[0].geometry,
        is_2d=images[0].is_2d,
        source=SEQUENCE_SEPARATOR.join(names),
        source_dtype=dtypes.pop() if len(dtypes) == 1 else "float32",
        sequences=tuple(names),
    )


def read_sequences(paths: Union[PathLike, Sequence[PathLike]]) -> ImageData:
    """Read the co-registered sequences of one case as the channels of one image, in the order given.

    One path is exactly `read_image`. Several are each read (and validated) with `read_image`, then
    stacked by `stack_sequences`: each must be a grey-level image or volume on the first one's grid, and
    every output made from the result has the first one's geometry.

    Parameters
    ----------
    paths : path or sequence of paths
        The sequence files, in channel order.

    Returns
    -------
    ImageData
        (Z, Y, X, len(paths)) float32 with the first file's geometry; ``sequences`` holds the paths.

    Raises
    ------
    InputError
        A file that cannot be read, the same file twice, or sequences that cannot be stacked (one line
        naming both files, what differs and how to resample).

    Examples
    --------
    >>> image = read_sequences(["flair.nii.gz", "t1c.nii.gz"])  # doctest: +SKIP
    >>> image.array.shape, image.sequences  # doctest: +SKIP
    ((155, 240, 240, 2), ('flair.nii.gz', 't1c.nii.gz'))
    """
    # Imported here so that stacking (used by the Slicer module's process on volume nodes) needs no SimpleITK.
    from .reading import read_image

    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not items:
        raise InputError("no input images given")
    if len(items) == 1:
        return read_image(items[0])
    if len(items) > MAX_SEQUENCES:
        raise InputError(f"{len(items)} sequences given; at most {MAX_SEQUENCES} can be stacked as channels")
    seen: set[Path] = set()
    for item in items:
        resolved = Path(item).resolve()
        if resolved in seen:
            raise InputError(f"{item} is given twice; give each sequence once")
        seen.add(resolved)
    return stack_sequences(read_image(item) for item in items)


def sequence_names(image: ImageData) -> tuple[str, ...]:
    """The base file or node name of each channel's sequence, in channel order (for the model card).

    An image read from one file gives its one name; a copy that kept only ``source`` ("a + b") is split.

    Examples
    --------
    >>> import numpy as np
    >>> sequence_names(ImageData(np.zeros((1, 4, 4, 2), np.float32), source="/d/t1.nrrd + /d/t2.nrrd"))
    ('t1.nrrd', 't2.nrrd')
    """
    if image.sequences:
        names: Sequence[str] = image.sequences
    elif image.source:
        parts = image.source.split(SEQUENCE_SEPARATOR)
        names = parts if len(parts) == image.channels else [image.source]
    else:
        return ()
    return tuple(Path(name).name for name in names)


def describe_sequences(image: ImageData) -> str:
    """How a message names an image: its file name, or "a + b" for stacked sequences."""
    names = sequence_names(image)
    return SEQUENCE_SEPARATOR.join(names) if names else "the image"
