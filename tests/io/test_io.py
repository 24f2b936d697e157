"""Reading, validating and writing images: real files through SimpleITK/Pillow, voxel-exact round trips."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from CUTSSegmentationLib.core.errors import InputError, ResourceError
from CUTSSegmentationLib.core.imagedata import Geometry, ImageData
from CUTSSegmentationLib.evaluate.phantom import oblique_direction, synthetic_phantom_3d
from CUTSSegmentationLib.io import memory, writing
from CUTSSegmentationLib.io.inputs import collect_inputs
from CUTSSegmentationLib.io.memory import available_memory_bytes, check_fits_in_memory, estimate_job_bytes
from CUTSSegmentationLib.io.reading import read_image, read_label_mask
from CUTSSegmentationLib.io.validation import validate_image
from CUTSSegmentationLib.io.writing import write_label_image, write_png

OBLIQUE = Geometry(spacing=(0.7, 0.8, 2.5), origin=(-12.5, 30.25, 7.0), direction=oblique_direction(20.0))


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _write_itk(array: np.ndarray, path: Path, geometry: Geometry | None = None, vector: bool = False) -> Path:
    image = sitk.GetImageFromArray(array, isVector=vector)
    if geometry is not None:
        image.SetSpacing(geometry.spacing)
        image.SetOrigin(geometry.origin)
        image.SetDirection(geometry.direction)
    sitk.WriteImage(image, str(path), True)
    return path


def _assert_geometry(actual: Geometry, expected: Geometry, atol: float = 0.0) -> None:
    assert np.allclose(actual.spacing, expected.spacing, rtol=0, atol=atol), actual.spacing
    assert np.allclose(actual.origin, expected.origin, rtol=0, atol=atol), actual.origin
    assert np.allclose(actual.direction, expected.direction, rtol=0, atol=atol), actual.direction


# --------------------------------------------------------------------------------------- 2D rasters


def test_png_grey_round_trip(tmp_path: Path) -> None:
    pixels = _rng().integers(0, 256, size=(40, 50), dtype=np.uint8)
    path = write_png(pixels, tmp_path / "grey.png")
    image = read_image(path)
    assert image.array.shape == (1, 40, 50, 1) and image.array.dtype == np.float32
    assert np.array_equal(image.array[0, ..., 0], pixels)
    assert image.is_2d and image.source == str(path) and image.source_dtype == "uint8"
    _assert_geometry(image.geometry, Geometry())


def test_png_rgb_round_trip(tmp_path: Path) -> None:
    pixels = _rng().integers(0, 256, size=(30, 20, 3), dtype=np.uint8)
    image = read_image(write_png(pixels, tmp_path / "rgb.png"))
    assert image.array.shape == (1, 30, 20, 3)
    assert np.array_equal(image.array[0], pixels)


def test_png_rgba_drops_alpha(tmp_path: Path) -> None:
    pixels = _rng().integers(0, 256, size=(16, 24, 4), dtype=np.uint8)
    image = read_image(write_png(pixels, tmp_path / "rgba.png"))
    assert image.array.shape == (1, 16, 24, 3)
    assert np.array_equal(image.array[0], pixels[..., :3])


def test_png_grey_alpha_falls_back_to_pillow(tmp_path: Path) -> None:
    grey = _rng().integers(1, 256, size=(12, 18), dtype=np.uint8)
    Image.fromarray(np.dstack([grey, np.full_like(grey, 200)]), "LA").save(tmp_path / "la.png")
    image = read_image(tmp_path / "la.png")
    assert image.array.shape == (1, 12, 18, 1)
    assert np.array_equal(image.array[0, ..., 0], grey)
    assert image.array.flags.owndata and image.array.flags.writeable


def test_palette_png_is_expanded_to_rgb(tmp_path: Path) -> None:
    index = (np.arange(20 * 30).reshape(20, 30) % 4).astype(np.uint8)
    palette = [10, 20, 30, 200, 0, 0, 0, 150, 0, 5, 5, 250] + [0] * (768 - 12)
    im = Image.fromarray(index, "P")
    im.putpalette(palette)
    im.save(tmp_path / "palette.png")
    image = read_image(tmp_path / "palette.png")
    expected = np.asarray(palette[:12], dtype=np.float32).reshape(4, 3)[index]
    assert image.array.shape == (1, 20, 30, 3)
    assert np.array_equal(image.array[0], expected)


@pytest.mark.parametrize("suffix", [".bmp", ".tif", ".tiff"])
def test_lossless_rasters(tmp_path: Path, suffix: str) -> None:
    pixels = _rng().integers(0, 256, size=(25, 35, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / f"im{suffix}")
    image = read_image(tmp_path / f"im{suffix}")
    assert image.is_2d and image.source_dtype == "uint8"
    assert np.array_equal(image.array[0], pixels)


def test_tiff_16_bit_grey_keeps_dtype(tmp_path: Path) -> None:
    pixels = _rng().integers(0, 65536, size=(20, 22), dtype=np.uint16)
    sitk.WriteImage(sitk.GetImageFromArray(pixels), str(tmp_path / "deep.tif"))
    image = read_image(tmp_path / "deep.tif")
    assert image.source_dtype == "uint16"
    assert np.array_equal(image.array[0, ..., 0], pixels)


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg"])
def test_jpeg_reads_close_to_original(tmp_path: Path, suffix: str) -> None:
    yy, xx = np.mgrid[0:48, 0:64]
    pixels = np.dstack([yy * 5, xx * 4, (yy + xx) * 2]).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / f"photo{suffix}", quality=95)
    image = read_image(tmp_path / f"photo{suffix}")
    assert image.array.shape == (1, 48, 64, 3) and image.source_dtype == "uint8"
    assert np.abs(image.array[0] - pixels).mean() < 3.0


def test_retina_image_and_label(retina_pairs: list[tuple[Path, Path]]) -> None:
    image_path, label_path = retina_pairs[0]
    image = read_image(image_path)
    assert image.is_2d and image.channels == 3 and image.source_dtype == "uint8"
    label = read_image(label_path)
    assert label.is_2d and label.spatial_shape == image.spatial_shape
    assert set(np.unique(label.array).tolist()) == {0.0, 1.0}
    mask = read_label_mask(label_path)
    assert mask.dtype == bool and mask.shape == image.spatial_shape
    assert np.array_equal(mask, np.load(label_path) != 0)


# -------------------------------------------------------------------------------------------- npy


def test_npy_grey_and_rgb(tmp_path: Path) -> None:
    grey = _rng().random((10, 12)).astype(np.float64)
    np.save(tmp_path / "grey.npy", grey)
    image = read_image(tmp_path / "grey.npy")
    assert image.array.shape == (1, 10, 12, 1) and image.source_dtype == "float64" and image.is_2d
    assert np.array_equal(image.array[0, ..., 0], grey.astype(np.float32))
    rgb = _rng().integers(0, 256, (10, 12, 3), dtype=np.uint8)
    np.save(tmp_path / "rgb.npy", rgb)
    assert np.array_equal(read_image(tmp_path / "rgb.npy").array[0], rgb)


# ---------------------------------------------------------------------------------------- volumes


@pytest.mark.parametrize("suffix", [".nrrd", ".nhdr", ".mha", ".mhd", ".nii", ".nii.gz"])
def test_volume_round_trip_keeps_pixels_and_oblique_geometry(tmp_path: Path, suffix: str) -> None:
    phantom, _ = synthetic_phantom_3d(shape=(8, 30, 26), seed=1)
    pixels = phantom.array[..., 0].astype(np.int16)
    path = _write_itk(pixels, tmp_path / f"vol{suffix}", OBLIQUE)
    image = read_image(path)
    assert image.array.shape == (8, 30, 26, 1) and not image.is_2d
    assert image.source_dtype == "int16" and image.source == str(path)
    assert np.array_equal(image.array[..., 0], pixels)
    # NIfTI stores geometry as float32 quaternions; the text headers keep full precision
    _assert_geometry(image.geometry, OBLIQUE, atol=1e-5 if suffix.startswith(".nii") else 1e-12)


def test_rgb_volume_has_three_channels(tmp_path: Path) -> None:
    pixels = _rng().integers(0, 256, size=(4, 9, 11, 3), dtype=np.uint8)
    image = read_image(_write_itk(pixels, tmp_path / "rgb.nrrd", OBLIQUE, vector=True))
    assert image.array.shape == (4, 9, 11, 3) and not image.is_2d
    assert np.array_equal(image.array, pixels)


def test_single_slice_volume_is_2d_with_geometry(tmp_path: Path) -> None:
    pixels = _rng().random((1, 15, 17)).astype(np.float32)
    image = read_image(_write_itk(pixels, tmp_path / "slice.nii.gz", OBLIQUE))
    assert image.is_2d and image.array.shape == (1, 15, 17, 1)
    assert image.source_dtype == "float32"
    _assert_geometry(image.geometry, OBLIQUE, atol=1e-5)


def test_2d_nrrd_keeps_in_plane_spacing(tmp_path: Path) -> None:
    pixels = _rng().integers(0, 1000, size=(12, 14)).astype(np.uint16)
    image2d = sitk.GetImageFromArray(pixels)
    image2d.SetSpacing((0.5, 0.25))
    image2d.SetOrigin((3.0, -4.0))
    sitk.WriteImage(image2d, str(tmp_path / "flat.nrrd"))
    image = read_image(tmp_path / "flat.nrrd")
    assert image.is_2d and image.spatial_shape == (12, 14)
    _assert_geometry(image.geometry, Geometry(spacing=(0.5, 0.25, 1.0), origin=(3.0, -4.0, 0.0)))


def test_4d_with_one_time_point_is_read_as_3d(tmp_path: Path) -> None:
    volume = sitk.GetImageFromArray(_rng().random((3, 5, 6)).astype(np.float32))
    sitk.WriteImage(sitk.JoinSeries([volume]), str(tmp_path / "one_frame.nii.gz"))
    image = read_image(tmp_path / "one_frame.nii.gz")
    assert image.array.shape == (3, 5, 6, 1)


# ----------------------------------------------------------------------------------- input errors


def _error(path: Path) -> str:
    with pytest.raises(InputError) as caught:
        read_image(path)
    message = str(caught.value)
    assert "\n" not in message, message
    assert str(path) in message, message
    return message


def test_missing_file(tmp_path: Path) -> None:
    assert "file not found" in _error(tmp_path / "nope.png")


def test_folder_is_not_a_file(tmp_path: Path) -> None:
    assert "not a file" in _error(tmp_path)


def test_zero_byte_file(tmp_path: Path) -> None:
    (tmp_path / "empty.png").touch()
    assert "file is empty (0 bytes)" in _error(tmp_path / "empty.png")


def test_unsupported_extension(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    assert "unsupported file type '.txt'" in _error(tmp_path / "notes.txt")


def test_text_renamed_png(tmp_path: Path) -> None:
    (tmp_path / "fake.png").write_text("this is not an image\n" * 10)
    assert "cannot read as PNG: corrupt, truncated or not an image file" in _error(tmp_path / "fake.png")


def test_truncated_png(tmp_path: Path) -> None:
    data = (write_png(_rng().integers(0, 256, (64, 64), dtype=np.uint8), tmp_path / "a.png")).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    assert "cannot read as PNG" in _error(tmp_path / "cut.png")


def test_truncated_nii_gz(tmp_path: Path) -> None:
    data = _write_itk(_rng().random((10, 20, 30)).astype(np.float32), tmp_path / "v.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    assert "cannot read as NII.GZ" in _error(tmp_path / "cut.nii.gz")


def test_truncated_uncompressed_nii(tmp_path: Path) -> None:
    data = _write_itk(_rng().random((10, 20, 30)).astype(np.float32), tmp_path / "v.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(data[: len(data) // 2])
    assert "truncated NIfTI file" in _error(tmp_path / "cut.nii")


def test_truncated_jpeg(tmp_path: Path) -> None:
    Image.fromarray(_rng().integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert "truncated JPEG file" in _error(tmp_path / "cut.jpg")


def test_truncated_bmp(tmp_path: Path) -> None:
    Image.fromarray(_rng().integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.bmp")
    data = (tmp_path / "a.bmp").read_bytes()
    (tmp_path / "cut.bmp").write_bytes(data[: len(data) // 2])
    assert "truncated BMP file" in _error(tmp_path / "cut.bmp")


def test_truncated_nrrd(tmp_path: Path) -> None:
    data = _write_itk(_rng().random((10, 20, 30)).astype(np.float32), tmp_path / "v.nrrd").read_bytes()
    (tmp_path / "cut.nrrd").write_bytes(data[: len(data) * 2 // 3])
    assert "cannot read as NRRD" in _error(tmp_path / "cut.nrrd")


def test_constant_image(tmp_path: Path) -> None:
    write_png(np.full((20, 20), 7, np.uint8), tmp_path / "flat.png")
    assert "image is constant (every pixel is 7): nothing to segment" in _error(tmp_path / "flat.png")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf(tmp_path: Path, bad: float) -> None:
    pixels = _rng().random((4, 6, 8)).astype(np.float32)
    pixels[1, 2, 3] = bad
    pixels[2, 0, 0] = bad
    message = _error(_write_itk(pixels, tmp_path / "bad.nrrd"))
    assert "2 pixel values are NaN or infinite" in message


def test_time_series_is_refused(tmp_path: Path) -> None:
    frames = [sitk.GetImageFromArray(_rng().random((4, 5, 6)).astype(np.float32)) for _ in range(3)]
    sitk.WriteImage(sitk.JoinSeries(frames), str(tmp_path / "fmri.nii.gz"))
    message = _error(tmp_path / "fmri.nii.gz")
    assert "4D image (size 6x5x4x3): time series and 4D volumes are not supported" in message


def test_too_many_components_is_refused(tmp_path: Path) -> None:
    pixels = _rng().random((3, 4, 5, 6)).astype(np.float32)
    message = _error(_write_itk(pixels, tmp_path / "tensor.nrrd", vector=True))
    assert "6 components per voxel; at most 4 (RGBA) are supported" in message


def test_1d_file_is_refused(tmp_path: Path) -> None:
    # SimpleITK cannot make 1D images; a hand-written 1D NRRD is what a signal exported as NRRD looks like
    header = b"NRRD0004\ntype: float\ndimension: 1\nsizes: 50\nendian: little\nencoding: raw\n\n"
    (tmp_path / "line.nrrd").write_bytes(header + np.arange(50, dtype="<f4").tobytes())
    assert "1D data (size 50)" in _error(tmp_path / "line.nrrd")


def test_single_row_image_is_refused(tmp_path: Path) -> None:
    write_png(np.arange(40, dtype=np.uint8)[np.newaxis], tmp_path / "row.png")
    assert "image is 1D or a single pixel (Z, Y, X = 1, 1, 40)" in _error(tmp_path / "row.png")


def test_npy_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "empty.npy", np.zeros((0, 5)))
    assert "image is empty (shape (0, 5))" in _error(tmp_path / "empty.npy")
    np.save(tmp_path / "line.npy", np.arange(10))
    assert "1D data (shape (10,))" in _error(tmp_path / "line.npy")
    np.save(tmp_path / "cube.npy", np.ones((3, 4, 5, 6)))
    assert "array of shape (3, 4, 5, 6)" in _error(tmp_path / "cube.npy")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert "cannot read as NPY" in _error(tmp_path / "objects.npy")


# --------------------------------------------------------------------------------------- validate


def test_validate_image_accepts_and_returns_good_image() -> None:
    image = ImageData(array=_rng().random((2, 5, 6, 1)).astype(np.float32))
    assert validate_image(image) is image


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((1, 0, 5, 1), np.float32), "image is empty"),
        (np.arange(9, dtype=np.float32).reshape(1, 1, 9, 1), "image is 1D or a single pixel"),
        (np.ones((1, 1, 1, 1), np.float32), "image is 1D or a single pixel"),
        (np.random.default_rng(0).random((1, 4, 4, 5)).astype(np.float32), "5 channels per pixel"),
        (np.full((3, 4, 4, 1), 2.5, np.float32), "image is constant (every pixel is 2.5)"),
    ],
)
def test_validate_image_refuses(array: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match="^slicer volume 'CT': " + message.replace("(", r"\(").replace(")", r"\)")):
        validate_image(ImageData(array=array, source="slicer volume 'CT'"))


def test_validate_image_names_anonymous_arrays_and_checks_geometry() -> None:
    array = np.where(np.eye(4, dtype=bool), np.nan, 1.0).astype(np.float32).reshape(1, 4, 4, 1)
    with pytest.raises(InputError, match=r"^image: 4 pixel values are NaN or infinite"):
        validate_image(ImageData(array=array))
    good = _rng().random((2, 4, 4, 1)).astype(np.float32)
    with pytest.raises(InputError, match="invalid voxel spacing"):
        validate_image(ImageData(array=good, geometry=Geometry(spacing=(1.0, 0.0, 1.0))))
    with pytest.raises(InputError, match="direction matrix is singular"):
        validate_image(ImageData(array=good, geometry=Geometry(direction=(1, 0, 0, 1, 0, 0, 0, 0, 1))))


# ----------------------------------------------------------------------------------------- memory


def test_estimate_job_bytes_scales_with_the_job() -> None:
    small = estimate_job_bytes((1, 128, 128), 1)
    assert estimate_job_bytes((1, 128, 128), 3) > small
    assert estimate_job_bytes((1, 128, 128), 1, embed_dim=256) > small
    # the documented terms: float32 image x2, a 4-slice batch of float16 embeddings + 3 float32
    # activation maps, 30 uint16 levels + an int64 atom map
    n = 100 * 128 * 128
    expected = 2 * n * 1 * 4 + 4 * 128 * 128 * 128 * (2 + 3 * 4) + n * (30 * 2 + 8)
    assert estimate_job_bytes((100, 128, 128), 1) == expected
    # a 512^3 CT needs many GiB: well over what its raw pixels take
    big = estimate_job_bytes((512, 512, 512), 1)
    assert big > 10 * 512**3 * 4 and big < 2**40


def test_check_fits_in_memory() -> None:
    needed = check_fits_in_memory((4, 64, 64), 1, available_bytes=2**40)
    assert needed == estimate_job_bytes((4, 64, 64), 1)
    with pytest.raises(ResourceError) as caught:
        check_fits_in_memory((300, 512, 512), 1, available_bytes=2**30, name="ct.nii.gz")
    message = str(caught.value)
    assert message.startswith("ct.nii.gz: too large for memory: a 300x512x512 (ZxYxX) x 1-channel job needs about")
    assert "only 1.0 GiB is available" in message and "\n" not in message


def test_available_memory_is_reported_here() -> None:
    available = available_memory_bytes()
    assert available is not None and available > 2**20


def test_read_image_checks_memory_before_reading_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with little memory cannot be arranged in a test; make this one report 1 MiB free."""
    path = _write_itk(_rng().random((8, 64, 64)).astype(np.float32), tmp_path / "vol.nrrd")
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 2**20)
    with pytest.raises(ResourceError, match=f"^{path}: too large for memory"):
        read_image(path)


# ---------------------------------------------------------------------------------------- collect


def test_collect_inputs_expands_folders_and_keeps_files(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("b.png", "a.nii.gz", "c.JPG", "notes.txt", ".hidden.png", "scan.raw"):
        (folder / name).write_bytes(b"x")
    (folder / "sub").mkdir()
    single = tmp_path / "extra.nrrd"
    single.write_bytes(b"x")
    found = collect_inputs([folder, str(single), folder / "b.png"])
    assert found == [folder / "a.nii.gz", folder / "b.png", folder / "c.JPG", single]


def test_collect_inputs_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        collect_inputs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("no images")
    with pytest.raises(InputError, match=r"empty: folder contains no supported images \(\.png"):
        collect_inputs([tmp_path / "empty"])
    (tmp_path / "doc.pdf").write_bytes(b"%PDF")
    with pytest.raises(InputError, match="doc.pdf: unsupported file type"):
        collect_inputs([tmp_path / "doc.pdf"])
    with pytest.raises(InputError, match="no input images given"):
        collect_inputs([])


def test_collect_inputs_on_retina_folder(retina_dir: Path) -> None:
    found = collect_inputs([retina_dir / "image_with_GA"])
    assert len(found) == 56 and found == sorted(found)
    assert all(p.suffix == ".png" for p in found)


# ----------------------------------------------------------------------------------------- writing


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".nii", ".mha"])
def test_write_label_volume_round_trip(tmp_path: Path, suffix: str) -> None:
    labels = _rng().integers(0, 300, size=(6, 11, 13)).astype(np.uint16)
    path = write_label_image(labels, OBLIQUE, tmp_path / f"labels{suffix}", is_2d=False)
    written = sitk.ReadImage(str(path))
    assert written.GetPixelID() == sitk.sitkUInt16
    assert np.array_equal(sitk.GetArrayFromImage(written), labels)
    atol = 1e-5 if suffix.startswith(".nii") else 1e-12
    assert np.allclose(written.GetSpacing(), OBLIQUE.spacing, atol=atol)
    assert np.allclose(written.GetOrigin(), OBLIQUE.origin, atol=atol)
    assert np.allclose(written.GetDirection(), OBLIQUE.direction, atol=atol)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"labels{suffix}"]  # no temp files left


def test_write_label_2d_keeps_geometry_and_reads_back_as_2d(tmp_path: Path) -> None:
    labels = _rng().integers(0, 5, size=(9, 7)).astype(np.uint8)
    labels[0, 0] = 4
    path = write_label_image(labels, OBLIQUE, tmp_path / "labels.nrrd", is_2d=True)
    back = read_image(path)
    assert back.is_2d and back.source_dtype == "uint8"
    assert np.array_equal(back.array[0, ..., 0], labels)
    _assert_geometry(back.geometry, OBLIQUE, atol=1e-12)
    png = write_label_image(labels.astype(np.int64), Geometry(), tmp_path / "labels.png", is_2d=True)
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(png))), labels)


def test_write_label_image_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must be \(Z, Y, X\)"):
        write_label_image(np.zeros((4, 4), np.uint8), Geometry(), tmp_path / "a.nrrd", is_2d=False)
    with pytest.raises(ValueError, match=r"must be \(Y, X\)"):
        write_label_image(np.zeros((2, 4, 4), np.uint8), Geometry(), tmp_path / "a.nrrd", is_2d=True)
    with pytest.raises(ValueError, match="cannot write a label map as '.jpg'"):
        write_label_image(np.zeros((4, 4), np.uint8), Geometry(), tmp_path / "a.jpg", is_2d=True)
    with pytest.raises(ValueError, match="integer or bool"):
        write_label_image(np.zeros((4, 4), np.float32), Geometry(), tmp_path / "a.nrrd", is_2d=True)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_leaves_old_file_and_no_temp_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.seg.nrrd"
    target.write_text("old content")

    def half_write(tmp: Path) -> None:
        assert tmp.parent == tmp_path and tmp.name.endswith(".seg.nrrd")
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        writing.atomic_write(target, half_write)
    assert target.read_text() == "old content"
    assert [p.name for p in tmp_path.iterdir()] == ["out.seg.nrrd"]


def test_write_png_round_trip_and_checks(tmp_path: Path) -> None:
    rgb = _rng().integers(0, 256, (10, 12, 3), dtype=np.uint8)
    path = write_png(rgb, tmp_path / "sub" / "overlay.png")
    assert np.array_equal(np.asarray(Image.open(path)), rgb)
    with pytest.raises(ValueError, match="uint8"):
        write_png(rgb.astype(np.uint16), tmp_path / "x.png")
    with pytest.raises(ValueError, match="shape"):
        write_png(np.zeros((2, 3, 4, 5), np.uint8), tmp_path / "x.png")


def test_read_label_mask_formats(tmp_path: Path) -> None:
    mask = np.zeros((16, 20), dtype=bool)
    mask[3:9, 5:15] = True
    np.save(tmp_path / "m.npy", mask.astype(np.uint8))
    write_png(mask.astype(np.uint8) * 255, tmp_path / "m.png")
    write_png(np.dstack([mask.astype(np.uint8) * 255, np.zeros((16, 20, 2), np.uint8)]), tmp_path / "rgb.png")
    write_label_image(mask.astype(np.uint8) * 3, OBLIQUE, tmp_path / "m.nrrd", is_2d=True)
    for name in ("m.npy", "m.png", "rgb.png", "m.nrrd"):
        loaded = read_label_mask(tmp_path / name)
        assert loaded.dtype == bool and np.array_equal(loaded, mask), name
    volume = np.zeros((3, 16, 20), np.uint8)
    volume[1] = mask
    write_label_image(volume, OBLIQUE, tmp_path / "v.nii.gz", is_2d=False)
    assert np.array_equal(read_label_mask(tmp_path / "v.nii.gz"), volume != 0)
    with pytest.raises(InputError, match="file not found"):
        read_label_mask(tmp_path / "none.png")
    (tmp_path / "m.csv").write_text("1,0")
    with pytest.raises(InputError, match="unsupported mask file type '.csv'"):
        read_label_mask(tmp_path / "m.csv")


def test_gzip_check_reads_valid_volume(tmp_path: Path) -> None:
    """The truncation check must not reject a valid compressed NIfTI written by another tool (gzip module)."""
    plain = _write_itk(_rng().random((5, 6, 7)).astype(np.float32), tmp_path / "v.nii")
    with open(tmp_path / "other.nii.gz", "wb") as out, gzip.open(out, "wb") as zipped:
        zipped.write(plain.read_bytes())
    assert np.array_equal(read_image(tmp_path / "other.nii.gz").array, read_image(plain).array)


@pytest.mark.parametrize("name", ["v.nii", "v.nrrd", "v.mha"])
def test_float32_volume_survives_after_the_reader_frees_its_itk_image(tmp_path: Path, name: str) -> None:
    """A float32 file read through ITK must own its pixels: a view into the freed sitk.Image read garbage.

    (CI caught this: for float32 sources the float32 conversion was a no-op view of the ITK buffer.)
    """
    values = _rng().random((5, 6, 7)).astype(np.float32)
    image = read_image(_write_itk(values, tmp_path / name))
    assert image.array.flags.owndata and image.array.flags.c_contiguous
    churn = [np.full(210, 7.0) for _ in range(200)]  # reuse freed heap blocks, as later work does
    assert np.array_equal(image.array[..., 0], values), len(churn)


def test_npy_image_is_copied_out_of_the_memory_map(tmp_path: Path) -> None:
    """An image read from .npy must not stay tied to the file: rewriting the file must not change it."""
    values = _rng().random((8, 9)).astype(np.float32)
    np.save(tmp_path / "a.npy", values)
    image = read_image(tmp_path / "a.npy")
    np.save(tmp_path / "a.npy", np.zeros_like(values))
    assert image.array.flags.owndata
    assert np.array_equal(image.array[0, ..., 0], values)
