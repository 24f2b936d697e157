"""Read a 2D image, 3D volume or mask file into an `ImageData` (float32 (Z, Y, X, C) + LPS geometry).

Headers are checked (shape, memory, completeness) before pixels are read; any problem is one `InputError`
line naming the file.
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
from PIL import Image

from ..core.errors import InputError
from ..core.imagedata import Geometry, ImageData
from .formats import (
    ARRAY_EXTENSIONS,
    MAX_COMPONENTS,
    RASTER_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    PathLike,
    file_extension,
    supported_list,
)
from .memory import check_fits_in_memory
from .validation import validate_image


def _check_is_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a file (is it a folder?)")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes)")


#: ITK names its objects with their memory address, ``NrrdImageIO(0x561b2c3d4e50)``: noise in a message.
_OBJECT_ADDRESS = re.compile(r"\(0x[0-9a-fA-F]+\)")


def _short_reason(error: BaseException) -> str:
    """The most useful single line of an ITK exception (they span many lines), without memory addresses."""
    lines = [_OBJECT_ADDRESS.sub("", ln).strip() for ln in str(error).splitlines() if ln.strip()]
    for line in lines:
        if "ERROR" in line or "error" in line or "Could not" in line or "Unable" in line:
            reason = line.split("ERROR:")[-1].strip()
            return reason[:160]
    return (lines[-1] if lines else type(error).__name__)[:160]


#: ITK pixel types with an imaginary part: converting them to float32 would silently drop it.
_COMPLEX_PIXEL_IDS = {sitk.sitkComplexFloat32, sitk.sitkComplexFloat64}


def _unreadable(path: Path, error: Optional[BaseException] = None) -> InputError:
    kind = file_extension(path).lstrip(".").upper() or "image"
    detail = f" ({_short_reason(error)})" if error is not None else ""
    return InputError(f"{path}: cannot read as {kind}: corrupt, truncated or not an image file{detail}")


def _drop_alpha(array: np.ndarray) -> np.ndarray:
    """(…, C) with C in 1..4 -> grey (C=1) or RGB (C=3): alpha carries no tissue information."""
    channels = array.shape[-1]
    if channels == 2:
        return array[..., :1]
    if channels == 4:
        return array[..., :3]
    return array


def _squeeze_extra_dims(size: Sequence[int]) -> list[int]:
    """Drop trailing singleton dimensions beyond the third (e.g. NIfTI with a time axis of length 1)."""
    dims = list(size)
    while len(dims) > 3 and dims[-1] == 1:
        dims.pop()
    return dims


def _check_itk_shape(path: Path, size: Sequence[int], components: int) -> list[int]:
    """Refuse 1D, 4D and many-component files before their pixels are read."""
    dims = _squeeze_extra_dims(size)
    shape = "x".join(str(s) for s in size)
    if len(dims) > 3:
        raise InputError(
            f"{path}: {len(dims)}D image (size {shape}): time series and 4D volumes are not supported; "
            "save one 3D volume"
        )
    if len(dims) < 2:
        raise InputError(f"{path}: 1D data (size {shape}); a 2D image or 3D volume is needed")
    if components > MAX_COMPONENTS:
        raise InputError(f"{path}: {components} components per voxel; at most {MAX_COMPONENTS} (RGBA) are supported")
    if any(s == 0 for s in size):
        raise InputError(f"{path}: image is empty (size {shape})")
    return dims


def _zyx_shape(dims: Sequence[int]) -> tuple[int, int, int]:
    """ITK size (x, y[, z]) -> (Z, Y, X)."""
    return (int(dims[2]) if len(dims) > 2 else 1, int(dims[1]), int(dims[0]))


def _geometry_from_itk(image: sitk.Image) -> Geometry:
    """ITK geometry of any dimension -> 3D `Geometry` (a 2D image sits in the z = 0 plane)."""
    dim = min(image.GetDimension(), 3)
    spacing, origin = [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]
    direction = np.eye(3)
    full_dim = image.GetDimension()
    full_dir = np.asarray(image.GetDirection(), dtype=float).reshape(full_dim, full_dim)
    for i in range(dim):
        spacing[i] = float(image.GetSpacing()[i])
        origin[i] = float(image.GetOrigin()[i])
    direction[:dim, :dim] = full_dir[:dim, :dim]
    return Geometry(
        spacing=tuple(spacing),
        origin=tuple(origin),
        direction=tuple(float(d) for d in direction.reshape(-1)),
    )


def _nifti_expected_bytes(header: bytes) -> Optional[int]:
    """vox_offset + voxel bytes from a NIfTI-1 or NIfTI-2 header, either byte order; None if unparsable."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
        elif len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            dims = struct.unpack(endian + "8q", header[16:80])
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            offset = int(struct.unpack(endian + "q", header[168:176])[0])
        else:
            continue
        n_dims = min(max(int(dims[0]), 0), 7)
        count = int(np.prod([max(int(d), 1) for d in dims[1 : 1 + n_dims]], dtype=np.int64))
        return offset + count * max(int(bitpix), 0) // 8
    return None


def _gzip_length(path: Path) -> int:
    """Uncompressed length of a gzip file, reading it through (this also verifies its CRC)."""
    total = 0
    with gzip.open(path, "rb") as stream:
        while True:
            chunk = stream.read(1 << 22)
            if not chunk:
                return total
            total += len(chunk)


def _check_nifti_complete(path: Path) -> None:
    """ITK's NIfTI reader zero-fills a truncated file without complaint; check the length ourselves."""
    compressed = file_extension(path) == ".nii.gz"
    try:
        with gzip.open(path, "rb") if compressed else open(path, "rb") as stream:
            expected = _nifti_expected_bytes(stream.read(540))
        if expected is None:
            return
        actual = _gzip_length(path) if compressed else path.stat().st_size
    except (OSError, EOFError, zlib.error) as error:
        raise _unreadable(path, error) from None
    if actual < expected:
        raise InputError(f"{path}: truncated NIfTI file ({actual} of {expected} bytes present)")


def _check_jpeg_complete(path: Path) -> None:
    """libjpeg pads a truncated JPEG with grey and only warns; a complete one ends with the EOI marker."""
    with open(path, "rb") as stream:
        stream.seek(max(path.stat().st_size - 4096, 0))
        tail = stream.read()
    if b"\xff\xd9" not in tail:
        raise InputError(f"{path}: truncated JPEG file (no end-of-image marker)")


def _check_bmp_complete(path: Path) -> None:
    """ITK reads a short uncompressed BMP without error; compare the file size with what the header needs."""
    with open(path, "rb") as stream:
        header = stream.read(54)
    if len(header) < 54 or header[:2] != b"BM":
        return
    (offset,) = struct.unpack("<I", header[10:14])
    width, height = struct.unpack("<ii", header[18:26])
    bits, compression = struct.unpack("<HI", header[28:34])
    if compression != 0:
        return
    expected = offset + ((bits * abs(width) + 31) // 32) * 4 * abs(height)
    actual = path.stat().st_size
    if actual < expected:
        raise InputError(f"{path}: truncated BMP file ({actual} of {expected} bytes present)")


def _check_complete(path: Path) -> None:
    """Catch truncated files that the ITK readers for these formats would silently pad."""
    extension = file_extension(path)
    if extension in (".nii", ".nii.gz"):
        _check_nifti_complete(path)
    elif extension in (".jpg", ".jpeg"):
        _check_jpeg_complete(path)
    elif extension == ".bmp":
        _check_bmp_complete(path)


def _itk_reader(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    return reader


def _read_itk_pixels(path: Path) -> tuple[np.ndarray, sitk.Image]:
    """Header first (shape checks, memory check), then pixels; any ITK failure becomes an InputError."""
    reader = _itk_reader(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise _unreadable(path, error) from None
    dims = _check_itk_shape(path, reader.GetSize(), reader.GetNumberOfComponents())
    if reader.GetPixelID() in _COMPLEX_PIXEL_IDS:
        raise InputError(f"{path}: complex-valued pixels are not supported; save the magnitude (or one part) instead")
    check_fits_in_memory(_zyx_shape(dims), min(reader.GetNumberOfComponents(), 3), name=str(path))
    _check_complete(path)
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise _unreadable(path, error) from None
    if image.GetDimension() > 3:
        image = image[(slice(None),) * 3 + (0,) * (image.GetDimension() - 3)]
    return sitk.GetArrayViewFromImage(image), image


def _owned_float32(array: np.ndarray) -> np.ndarray:
    """A contiguous float32 copy that owns its memory.

    `np.ascontiguousarray(view, dtype=float32)` returns the view itself when the source is already
    contiguous float32, so an array viewed from a `sitk.Image` (GetArrayViewFromImage) would outlive the
    image that holds its buffer and read freed memory; a memory-mapped .npy would stay tied to the file, and
    a float Pillow image would stay read-only. Every reader returns through here, so all follow one rule.
    """
    return np.array(array, dtype=np.float32, order="C", copy=True)


def _to_zyxc(array: np.ndarray, is_vector: bool) -> np.ndarray:
    """ITK array ((Z,) Y, X[, C]) -> (Z, Y, X, C) without alpha."""
    if not is_vector:
        array = array[..., np.newaxis]
    array = _drop_alpha(array)
    if array.ndim == 3:
        array = array[np.newaxis]
    return array


def _read_with_itk(path: Path) -> ImageData:
    pixels, image = _read_itk_pixels(path)
    source_dtype = pixels.dtype.name
    array = _to_zyxc(pixels, image.GetNumberOfComponentsPerPixel() > 1)
    is_2d = image.GetDimension() == 2 or array.shape[0] == 1
    return ImageData(
        array=_owned_float32(array),
        geometry=_geometry_from_itk(image),
        is_2d=is_2d,
        source=str(path),
        source_dtype=source_dtype,
    )


def _read_with_pillow(path: Path) -> ImageData:
    """Fallback for raster modes ITK refuses (grey+alpha, CMYK, palette quirks): Pillow converts them."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBa", "La"):
                im = im.convert("RGBA" if "A" in im.mode or im.mode == "P" else "RGB")
            pixels = np.asarray(im)
    except Exception as error:  # Pillow raises many types for broken files
        raise _unreadable(path, error) from None
    if pixels.ndim == 2:
        pixels = pixels[..., np.newaxis]
    array = _drop_alpha(pixels)[np.newaxis]
    return ImageData(
        array=_owned_float32(array),
        is_2d=True,
        source=str(path),
        source_dtype=pixels.dtype.name,
    )


def _read_raster(path: Path) -> ImageData:
    """PNG/JPG/BMP/TIF: ITK first (keeps any spacing the file carries, as Slicer does), then Pillow."""
    try:
        return _read_with_itk(path)
    except InputError as itk_error:
        if "cannot read" not in str(itk_error):
            raise
        try:
            return _read_with_pillow(path)
        except InputError:
            raise itk_error from None


def _read_npy(path: Path) -> ImageData:
    """A (Y, X) or (Y, X, C) numpy array saved with np.save (no pickles: they can run code)."""
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as error:  # ValueError for pickles/corruption, OSError for truncation
        raise _unreadable(path, error) from None
    if not isinstance(mapped, np.ndarray) or mapped.dtype.kind not in "biuf":
        raise InputError(f"{path}: not a numeric image array (dtype {getattr(mapped, 'dtype', '?')})")
    if mapped.size == 0:
        raise InputError(f"{path}: image is empty (shape {mapped.shape})")
    if mapped.ndim == 1:
        raise InputError(f"{path}: 1D data (shape {mapped.shape}); a 2D image (Y, X) or (Y, X, 3) is needed")
    is_vector = mapped.ndim == 3 and mapped.shape[2] <= MAX_COMPONENTS
    if mapped.ndim > 3 or (mapped.ndim == 3 and not is_vector):
        raise InputError(f"{path}: array of shape {mapped.shape}; a 2D image (Y, X) or (Y, X, 3) is needed")
    channels = mapped.shape[2] if is_vector else 1
    check_fits_in_memory((1,) + tuple(mapped.shape[:2]), min(channels, 3), name=str(path))
    array = _to_zyxc(np.asarray(mapped), is_vector)
    return ImageData(
        array=_owned_float32(array),
        is_2d=True,
        source=str(path),
        source_dtype=mapped.dtype.name,
    )


def read_image(path: PathLike) -> ImageData:
    """Read a 2D image or 3D volume into a validated float32 `(Z, Y, X, C)` `ImageData`.

    2D rasters give `is_2d=True` with the geometry the file carries (spacing 1 when none); volumes keep
    spacing, origin and direction exactly as SimpleITK reads them (LPS); a volume with one slice is
    `is_2d=True` and keeps its geometry. Alpha channels are dropped, palettes expanded.

    Parameters
    ----------
    path : str or Path
        PNG, JPG, BMP, TIF, NIfTI, NRRD, MHA/MHD or ``.npy`` file.

    Returns
    -------
    ImageData
        Validated pixels (`validate_image`) and geometry.

    Raises
    ------
    InputError
        Missing, unreadable, unsupported or unsegmentable file, in one line naming it.
    ResourceError
        The job on this image would not fit in memory (checked before the pixels are read).

    Examples
    --------
    >>> image = read_image("retina.png")  # doctest: +SKIP
    >>> image.array.shape, image.is_2d  # doctest: +SKIP
    ((1, 128, 128, 3), True)
    """
    path = Path(path)
    _check_is_file(path)
    extension = file_extension(path)
    if extension not in SUPPORTED_EXTENSIONS:
        raise InputError(f"{path}: unsupported file type '{extension or path.name}' (supported: {supported_list()})")
    if extension in ARRAY_EXTENSIONS:
        image = _read_npy(path)
    elif extension in RASTER_EXTENSIONS:
        image = _read_raster(path)
    else:
        image = _read_with_itk(path)
    return validate_image(image)


def read_label_mask(path: PathLike) -> np.ndarray:
    """A mask file (.npy, .png or any volume format) as bool: True where the value (any channel) is nonzero.

    2D masks come back (Y, X), volumes (Z, Y, X) (a single-slice volume as (Y, X), like `ImageData`).
    Unlike `read_image` an all-zero mask is allowed; the caller decides whether that is meaningful.
    """
    path = Path(path)
    _check_is_file(path)
    extension = file_extension(path)
    if extension == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as error:
            raise _unreadable(path, error) from None
        is_vector = array.ndim == 3 and array.shape[2] <= MAX_COMPONENTS and array.shape[0] > MAX_COMPONENTS
    elif extension in SUPPORTED_EXTENSIONS:
        reader = _itk_reader(path)
        try:
            itk_image = reader.Execute()
        except RuntimeError as error:
            raise _unreadable(path, error) from None
        array = sitk.GetArrayFromImage(itk_image)
        is_vector = itk_image.GetNumberOfComponentsPerPixel() > 1
    else:
        raise InputError(f"{path}: unsupported mask file type '{extension}' (supported: {supported_list()})")
    mask = np.any(array != 0, axis=-1) if is_vector else array != 0
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim not in (2, 3) or mask.size == 0:
        raise InputError(f"{path}: mask of shape {array.shape}; a 2D (Y, X) or 3D (Z, Y, X) mask is needed")
    return mask
