"""Reading and writing images and label maps, and checking that an input can be segmented at all.

Everything the engine reads goes through `read_image`, which returns an `ImageData` (float32 `(Z, Y, X, C)`
plus the geometry exactly as SimpleITK gives it, LPS), and through `validate_image`, which refuses inputs that
cannot be segmented (empty, constant, NaN/Inf, 1D...) with one clear `InputError` line naming the file. The
same `validate_image` runs on arrays coming from Slicer, so the module and the command line refuse the same
things with the same words. Before pixels are loaded, `check_fits_in_memory` compares a rough estimate of
what the whole job needs with the memory the machine has, so a huge volume fails in a second with a
`ResourceError` rather than after an hour of swapping.

Writers (`write_label_image`, `write_png`) are atomic: they write a temp file in the target folder and
`os.replace` it, so an interrupted or failed write never leaves a half-written file under the final name.
"""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk

from .errors import InputError, ResourceError
from .imagedata import Geometry, ImageData

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
#: Rough number of hierarchy levels whose uint16 label maps a job keeps in memory.
EXPECTED_LEVELS = 30
#: Slices embedded at once (the float16 embedding buffer and float32 activations scale with this).
SLICE_BATCH = 4
#: float32 activation maps of width `embed_dim` the encoder holds per slice while embedding.
ACTIVATION_MAPS = 3


# ----------------------------------------------------------------------------------------------- names


def file_extension(path: PathLike) -> str:
    """Lower-case extension, with the compound `.nii.gz` / `.seg.nrrd` style handled for `.nii.gz`."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def is_supported(path: PathLike) -> bool:
    """True when `read_image` knows the file's extension."""
    return file_extension(path) in SUPPORTED_EXTENSIONS


def _supported_list() -> str:
    return ", ".join(SUPPORTED_EXTENSIONS)


# -------------------------------------------------------------------------------------------- memory


def estimate_job_bytes(shape_zyx: Sequence[int], channels: int, embed_dim: int = 128) -> int:
    """Rough peak memory of a CUTS job on an image of `shape_zyx` x `channels`.

    Counted (why each term exists): the float32 image twice (as read and normalised for the encoder); the
    per-slice-batch float16 embedding output plus float32 encoder activations (embeddings are produced slice
    by slice, never for the whole volume at once); ~30 uint16 label maps (the hierarchy levels) plus one
    int64 atom map. It is an order-of-magnitude guard against hopeless inputs, not an exact budget.
    """
    z, y, x = (int(s) for s in shape_zyx)
    n_voxels = z * y * x
    slice_pixels = y * x
    image = 2 * n_voxels * int(channels) * 4
    batch = min(z, SLICE_BATCH) * slice_pixels * int(embed_dim) * (2 + 4 * ACTIVATION_MAPS)
    labels = EXPECTED_LEVELS * n_voxels * 2 + n_voxels * 8
    return int(image + batch + labels)


def _meminfo_available() -> Optional[int]:
    """MemAvailable from /proc/meminfo in bytes (Linux), None elsewhere."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> Optional[int]:
    """Memory left under a cgroup v2 limit (containers), None when there is no limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        return max(int(limit) - used, 0)
    except (OSError, ValueError):
        return None


def _sysconf_available() -> Optional[int]:
    """Free physical pages x page size (POSIX fallback when /proc/meminfo is missing)."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def available_memory_bytes() -> Optional[int]:
    """Memory this process can still use, or None when the platform does not tell (then no check is done)."""
    first = _meminfo_available()
    if first is None:
        first = _sysconf_available()
    candidates = [v for v in (first, _cgroup_available()) if v is not None]
    return min(candidates) if candidates else None


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


def check_fits_in_memory(
    shape_zyx: Sequence[int],
    channels: int,
    available_bytes: Optional[int] = None,
    name: str = "image",
    embed_dim: int = 128,
) -> int:
    """Raise `ResourceError` when the job on this shape would not fit in memory; return the estimate.

    `available_bytes` defaults to what the machine reports now; tests pass a small number. When the
    platform reports nothing the check is skipped (better to try than to refuse blindly).
    """
    needed = estimate_job_bytes(shape_zyx, channels, embed_dim)
    if available_bytes is None:
        available_bytes = available_memory_bytes()
    if available_bytes is not None and needed > available_bytes:
        shape = "x".join(str(int(s)) for s in shape_zyx)
        raise ResourceError(
            f"{name}: too large for memory: a {shape} (ZxYxX) x {channels}-channel job needs about "
            f"{_gib(needed)} but only {_gib(available_bytes)} is available; crop or downsample it first"
        )
    return needed


# ---------------------------------------------------------------------------------------- validation


def _name_of(image: ImageData) -> str:
    return image.source if image.source else "image"


def _check_not_empty(array: np.ndarray, name: str) -> None:
    if array.size == 0:
        raise InputError(f"{name}: image is empty (shape {tuple(array.shape)})")


def _check_spatial_dims(array: np.ndarray, name: str) -> None:
    """Refuse lines and single pixels: CUTS needs patches around every pixel, so at least a 2D plane."""
    z, y, x, _ = array.shape
    extents = [s for s in (z, y, x) if s > 1]
    if len(extents) < 2:
        raise InputError(f"{name}: image is 1D or a single pixel (Z, Y, X = {z}, {y}, {x}); a 2D image or 3D volume is needed")


def _check_channels(array: np.ndarray, name: str) -> None:
    channels = array.shape[3]
    if channels < 1 or channels > MAX_COMPONENTS:
        raise InputError(f"{name}: {channels} channels per pixel; expected 1 (grey) or 3 (RGB)")


def _check_finite(array: np.ndarray, name: str) -> None:
    """Slice by slice so a large volume does not need a second full-size boolean array."""
    bad = 0
    for plane in array:
        bad += int(plane.size - np.count_nonzero(np.isfinite(plane)))
    if bad:
        raise InputError(f"{name}: {bad} pixel values are NaN or infinite; fix or mask them before segmenting")


def _check_not_constant(array: np.ndarray, name: str) -> None:
    low, high = float(array.min()), float(array.max())
    if low == high:
        raise InputError(f"{name}: image is constant (every pixel is {low:g}): nothing to segment")


def _check_geometry(geometry: Geometry, name: str) -> None:
    spacing = np.asarray(geometry.spacing, dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"{name}: invalid voxel spacing {tuple(spacing)} (must be positive)")
    direction = geometry.direction_matrix
    if not np.all(np.isfinite(direction)) or abs(np.linalg.det(direction)) < 1e-6:
        raise InputError(f"{name}: invalid orientation (direction matrix is singular)")


def validate_image(image: ImageData) -> ImageData:
    """Refuse an image that cannot be segmented, with one clear `InputError` line; return it unchanged.

    Runs on any `ImageData` (files, Slicer volumes, synthetic data) so every entry point refuses the same
    inputs with the same words: empty, 1D, too many channels, NaN/Inf values, constant, bad geometry.
    """
    array, name = image.array, _name_of(image)
    _check_not_empty(array, name)
    _check_spatial_dims(array, name)
    _check_channels(array, name)
    _check_finite(array, name)
    _check_not_constant(array, name)
    _check_geometry(image.geometry, name)
    return image


# ------------------------------------------------------------------------------------------- reading


def _check_is_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a file (is it a folder?)")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes)")


def _short_reason(error: BaseException) -> str:
    """The most useful single line of an ITK exception (they span many lines)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    for line in lines:
        if "ERROR" in line or "error" in line or "Could not" in line or "Unable" in line:
            reason = line.split("ERROR:")[-1].strip()
            return reason[:160]
    return (lines[-1] if lines else type(error).__name__)[:160]


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
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as stream:
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
    offset, = struct.unpack("<I", header[10:14])
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
        from PIL import Image
    except ImportError as error:  # pragma: no cover - Pillow ships with scikit-image
        raise _unreadable(path, error) from None
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
    `is_2d=True` and keeps its geometry. Alpha channels are dropped, palettes expanded. Any problem is
    one `InputError` (or `ResourceError` for too large) line naming the file.
    """
    path = Path(path)
    _check_is_file(path)
    extension = file_extension(path)
    if extension not in SUPPORTED_EXTENSIONS:
        raise InputError(f"{path}: unsupported file type '{extension or path.name}' (supported: {_supported_list()})")
    if extension in ARRAY_EXTENSIONS:
        image = _read_npy(path)
    elif extension in RASTER_EXTENSIONS:
        image = _read_raster(path)
    else:
        image = _read_with_itk(path)
    return validate_image(image)


# ----------------------------------------------------------------------------------------- collecting


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
                raise InputError(f"{path}: folder contains no supported images ({_supported_list()})")
            collected.extend(found)
        elif is_supported(path):
            collected.append(path)
        else:
            raise InputError(f"{path}: unsupported file type (supported: {_supported_list()})")
    if not collected:
        raise InputError("no input images given")
    unique: dict[Path, None] = dict.fromkeys(collected)
    return list(unique)


# ------------------------------------------------------------------------------------------- writing


def atomic_write(path: PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temp file next to `path` (same extension) and rename it into place.

    The temp file keeps the full extension (`.nii.gz`, `.seg.nrrd`) so writers that pick the format by
    name write the right thing; on any error it is removed and the old file, if any, is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:])
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=suffix, dir=str(path.parent))
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _label_dtype(labels: np.ndarray) -> np.dtype:
    """Keep uint8/uint16/uint32; other integer or bool maps become the smallest unsigned type that fits."""
    if labels.dtype in (np.uint8, np.uint16, np.uint32):
        return labels.dtype
    if labels.dtype.kind not in "biu":
        raise ValueError(f"label maps must be integer or bool, got {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError("label maps cannot hold negative values")
    top = int(labels.max()) if labels.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"label value {top} does not fit in uint32")


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
    """
    path = Path(path)
    extension = file_extension(path)
    if extension not in LABEL_EXTENSIONS:
        raise ValueError(f"cannot write a label map as '{extension}' (use one of {', '.join(LABEL_EXTENSIONS)})")
    volume = labels_as_volume(labels, is_2d)
    volume = volume.astype(_label_dtype(volume), copy=False)
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
        raise InputError(f"{path}: unsupported mask file type '{extension}' (supported: {_supported_list()})")
    mask = np.any(array != 0, axis=-1) if is_vector else array != 0
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim not in (2, 3) or mask.size == 0:
        raise InputError(f"{path}: mask of shape {array.shape}; a 2D (Y, X) or 3D (Z, Y, X) mask is needed")
    return mask
