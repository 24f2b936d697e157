"""Property-based fuzzing of the readers that take files from users: images, model files, hierarchies.

Whatever the bytes (valid files cut short, bytes flipped, headers rewritten, random data), a reader either
returns a checked result or raises the one-line error of its kind; any other exception is a bug. The cases
are derandomised and bounded so the run is the same, and short, in CI.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from CUTSSegmentationLib.condense.hierarchy import Hierarchy
from CUTSSegmentationLib.core.errors import InputError, ModelFileError, ResourceError
from CUTSSegmentationLib.core.imagedata import ImageData
from CUTSSegmentationLib.evaluate.phantom import synthetic_image_2d
from CUTSSegmentationLib.io.reading import read_image
from CUTSSegmentationLib.io.writing import itk_image_from_volume, write_label_image, write_png
from CUTSSegmentationLib.learn.encoder import CUTSEncoder
from CUTSSegmentationLib.learn.modelfile import TrainedModel, load_model, read_card, save_model
from CUTSSegmentationLib.methods.labels import single_level_hierarchy

FUZZ = settings(
    max_examples=100,
    deadline=5000,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _valid_files(folder: Path) -> dict[str, bytes]:
    """One small valid file of each kind the readers take."""
    image, _ = synthetic_image_2d(size=32, seed=6)
    grey = image.array[0, ..., 0].astype(np.uint8)
    write_png(grey, folder / "image.png")
    np.save(folder / "image.npy", grey.astype(np.float32))
    volume = np.stack([grey, grey[::-1], grey[:, ::-1]]).astype(np.int16)
    sitk.WriteImage(itk_image_from_volume(volume, ImageData(volume[..., None]).geometry), str(folder / "v.nrrd"))
    sitk.WriteImage(itk_image_from_volume(volume, ImageData(volume[..., None]).geometry), str(folder / "v.nii.gz"))
    save_model(TrainedModel(CUTSEncoder(1, 8), {"normalisation": "uint8"}), folder / "m.safetensors")
    labels = (grey > grey.mean()).astype(np.uint16) + 1
    single_level_hierarchy(labels, ImageData(grey[None, ..., None].astype(np.float32), is_2d=True), {}).save(
        folder / "h.npz"
    )
    names = ("image.png", "image.npy", "v.nrrd", "v.nii.gz", "m.safetensors", "h.npz")
    return {name: (folder / name).read_bytes() for name in names}


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> dict[str, bytes]:
    return _valid_files(tmp_path_factory.mktemp("valid"))


@st.composite
def damaged(draw, original: bytes) -> bytes:
    """A valid file cut short, with bytes overwritten, or with random bytes spliced in."""
    data = bytearray(original)
    kind = draw(st.sampled_from(["truncate", "flip", "splice", "random"]))
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if kind == "random":
        return draw(st.binary(max_size=2048))
    at = draw(st.integers(0, len(data) - 1))
    # Headers sit at the start: bias the damage there, where parsers make decisions.
    at = draw(st.sampled_from([at, at % 64, at % 512]))
    patch = draw(st.binary(min_size=1, max_size=16))
    if kind == "flip":
        data[at : at + len(patch)] = patch
    else:
        data[at:at] = patch
    return bytes(data)


def assert_usable(hierarchy: Hierarchy, folder: Path) -> None:
    """What `cuts binarize` and the Slicer module do with a loaded hierarchy works, and keeps its geometry."""
    for step in hierarchy.level_steps:
        assert hierarchy.step_map(int(step)).shape == hierarchy.shape
    for level in range(hierarchy.n_levels):
        hierarchy.label_map(level)
    mask = write_label_image(hierarchy.label_map(0) > 0, hierarchy.geometry, folder / "mask.nrrd", hierarchy.is_2d)
    spacing = np.asarray(sitk.ReadImage(str(mask)).GetSpacing())
    assert np.all(np.isfinite(spacing)) and np.all(spacing > 0)
    assert np.allclose(spacing, hierarchy.geometry.spacing)


def _write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", ["image.png", "image.npy", "v.nrrd", "v.nii.gz"])
def test_image_reader_refuses_damaged_files_in_one_line(name: str, valid: dict, tmp_path: Path) -> None:
    @FUZZ
    @given(data=damaged(valid[name]))
    def check(data: bytes) -> None:
        try:
            image = read_image(_write(tmp_path, name, data))
        except (InputError, ResourceError) as refused:
            assert "\n" not in str(refused)
            return
        assert image.array.dtype == np.float32 and np.isfinite(image.array).all()

    check()


def test_model_reader_refuses_damaged_files_in_one_line(valid: dict, tmp_path: Path) -> None:
    @FUZZ
    @given(data=damaged(valid["m.safetensors"]))
    def check(data: bytes) -> None:
        path = _write(tmp_path, "m.safetensors", data)
        for read in (read_card, load_model):
            try:
                read(path)
            except ModelFileError as refused:
                assert "\n" not in str(refused)

    check()


def test_model_card_with_any_json_is_refused_or_read(tmp_path: Path) -> None:
    """A well-formed safetensors file whose card holds arbitrary JSON values."""
    from safetensors.torch import save as st_save

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=8,
    )
    tensors = dict(CUTSEncoder(1, 8).state_dict())

    @FUZZ
    @given(
        card=st.dictionaries(
            st.sampled_from(["channels", "embed_dim", "normalisation", "cluster_head", "x"]), json_values
        )
    )
    def check(card: dict) -> None:
        import json

        metadata = {"format": "cuts-segmentation-model", "format_version": "1", "card": json.dumps(card)}
        path = _write(tmp_path, "m.safetensors", st_save(tensors, metadata=metadata))
        try:
            load_model(path)
        except ModelFileError as refused:
            assert "\n" not in str(refused)

    check()


def test_hierarchy_reader_refuses_damaged_files_in_one_line(valid: dict, tmp_path: Path) -> None:
    @FUZZ
    @given(data=damaged(valid["h.npz"]))
    def check(data: bytes) -> None:
        try:
            hierarchy = Hierarchy.load(_write(tmp_path, "h.npz", data))
        except (InputError, ResourceError) as refused:
            assert "\n" not in str(refused)
            return
        assert_usable(hierarchy, tmp_path)

    check()


def test_hierarchy_reader_with_any_arrays(valid: dict, tmp_path: Path) -> None:
    """Well-formed .npz files whose arrays have arbitrary shapes and values."""
    arrays = st.sampled_from(
        ["levels", "n_clusters", "level_steps", "atom_map", "merge_tree", "persistent", "spacing", "direction", "is_2d"]
    )
    values = st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5, 70000), min_size=0, max_size=12)
    shapes = st.sampled_from([(0,), (1,), (3,), (2, 2), (1, 2, 2), (2, 1, 2, 2), (9,)])

    @FUZZ
    @given(replaced=st.dictionaries(arrays, st.tuples(values, shapes), min_size=1, max_size=3))
    def check(replaced: dict) -> None:
        with np.load(io.BytesIO(valid["h.npz"])) as original:
            contents = {key: original[key] for key in original.files}
        for key, (items, shape) in replaced.items():
            flat = np.resize(np.asarray(items if items else [0]), int(np.prod(shape)))
            contents[key] = flat.reshape(shape)
        path = tmp_path / "h.npz"
        np.savez_compressed(path, **contents)
        try:
            hierarchy = Hierarchy.load(path)
        except (InputError, ResourceError) as refused:
            assert "\n" not in str(refused)
            return
        assert_usable(hierarchy, tmp_path)

    check()
