"""Write label maps and PNGs atomically (through `staging.atomic_write`: temp file beside it, then rename).

An interrupted or failed write never leaves a half-written file under the final name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.imagedata import Geometry
from ..core.label_dtypes import label_dtype
from .formats import LABEL_EXTENSIONS, PathLike, file_extension
from .staging import atomic_write


def labels_as_volume(labels: np.ndarray, is_2d: bool) -> np.ndarray:
    """(Y, X) for 2D or (Z, Y, X) -> (Z, Y, X), checking the shape matches what `is_2d` promises."""
    labels = np.asarray(labels)
    if is_2d:
        if labels.ndim == 3 and labels.shape[0] == 1:
            return labels
        if labels.ndim != 2:
            raise ValueError(f"a 2D label map must be (Y, X), got shape {labels.shape}")
        return labels[np.newaxis]
    if labels.ndim != 3:
        raise ValueError(f"a 3D label map must be (Z, Y, X), got shape {labels.shape}")
    return labels


def itk_image_from_volume(volume_zyx: np.ndarray, geometry: Geometry) -> sitk.Image:
    """(Z, Y, X) array + geometry -> 3D SimpleITK image with exactly that origin/spacing/direction."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume_zyx))
    image.SetSpacing(tuple(float(s) for s in geometry.spacing))
    image.SetOrigin(tuple(float(o) for o in geometry.origin))
    image.SetDirection(tuple(float(d) for d in geometry.direction))
    return image


def write_label_image(labels: np.ndarray, geometry: Geometry, path: PathLike, is_2d: bool) -> Path:
    """Write a label map (.nrrd, .nii.gz, .nii, .mha; .png for 2D) with the input's geometry, atomically.

    Volumes are written as 3D images (a 2D map as one slice) so origin, spacing and direction equal the
    input's and the result overlays it in Slicer; `.png` has no geometry and takes 2D maps only.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer or bool map, (Y, X) for 2D or (Z, Y, X).
    geometry : Geometry
        The input image's geometry.
    path : str or Path
        Target file; the extension picks the format.
    is_2d : bool
        Whether `labels` belongs to a 2D image.

    Returns
    -------
    Path
        `path`, now holding the label map.

    Examples
    --------
    >>> import numpy as np
    >>> write_label_image(np.eye(4, dtype=np.uint8), Geometry(), "mask.nrrd", is_2d=True)  # doctest: +SKIP
    PosixPath('mask.nrrd')
    """
    path = Path(path)
    extension = file_extension(path)
    if extension not in LABEL_EXTENSIONS:
        raise ValueError(f"cannot write a label map as '{extension}' (use one of {', '.join(LABEL_EXTENSIONS)})")
    volume = labels_as_volume(labels, is_2d)
    volume = volume.astype(label_dtype(volume, keep_unsigned=True), copy=False)
    if extension == ".png":
        if volume.shape[0] != 1 or volume.dtype == np.uint32:
            raise ValueError("PNG label maps must be 2D with values below 65536")
        image = sitk.GetImageFromArray(np.ascontiguousarray(volume[0]))
    else:
        image = itk_image_from_volume(volume, geometry)
    return atomic_write(path, lambda tmp: sitk.WriteImage(image, str(tmp), True))


def write_png(image: np.ndarray, path: PathLike) -> Path:
    """Write a uint8 grey (Y, X) or RGB/RGBA (Y, X, 3|4) array as PNG, atomically (previews, overlays)."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"write_png takes uint8 arrays, got {array.dtype}")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))):
        raise ValueError(f"write_png takes (Y, X) or (Y, X, 3|4) arrays, got shape {array.shape}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    itk_image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=array.ndim == 3)
    return atomic_write(path, lambda tmp: sitk.WriteImage(itk_image, str(tmp)))
