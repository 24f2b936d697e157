"""Co-registered sequences as channels: reading, grid refusals, `cuts segment A B`, `cuts train --sequences K`,
and the model card that names them; on real MRI (BraTS FLAIR + contrast T1, spine T1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from CUTSSegmentationLib.cli import main
from CUTSSegmentationLib.condense.hierarchy import Hierarchy
from CUTSSegmentationLib.core.errors import InputError, ModelFileError
from CUTSSegmentationLib.io.reading import read_image
from CUTSSegmentationLib.io.sequences import read_sequences, sequence_names, stack_sequences
from CUTSSegmentationLib.io.writing import write_png
from CUTSSegmentationLib.learn.modelfile import check_compatible, load_model, save_model

VOLUMES = Path(__file__).resolve().parents[3] / "shared" / "data" / "volumes"
BRATS = VOLUMES / "brats" / "pat0001"
SPINE_T1 = VOLUMES / "spine" / "t1.nii.gz"


@pytest.fixture(scope="module")
def small_pair(tmp_path_factory) -> tuple[Path, Path]:
    """FLAIR and contrast T1 of BraTS pat0001 cropped to a 32 x 32 x 4 block through the tumour (same grid)."""
    folder = tmp_path_factory.mktemp("brats")
    paths = []
    for name in ("flair", "t1c"):
        image = sitk.ReadImage(str(BRATS / f"{name}.nii.gz"))
        path = folder / f"{name}.nii.gz"
        sitk.WriteImage(image[58:90, 108:140, 64:68], str(path))
        paths.append(path)
    return paths[0], paths[1]


def _one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


def test_read_sequences_stacks_brats_flair_and_t1c_in_order() -> None:
    flair, t1c = BRATS / "flair.nii.gz", BRATS / "t1c.nii.gz"
    stacked = read_sequences([flair, t1c])
    assert stacked.array.shape == (155, 240, 240, 2) and stacked.array.dtype == np.float32
    first, second = read_image(flair), read_image(t1c)
    assert np.array_equal(stacked.array[..., 0], first.array[..., 0])
    assert np.array_equal(stacked.array[..., 1], second.array[..., 0])
    assert stacked.geometry == first.geometry and not stacked.is_2d
    assert sequence_names(stacked) == ("flair.nii.gz", "t1c.nii.gz")
    assert stacked.source_dtype == first.source_dtype
    reversed_order = stack_sequences([second, first])
    assert np.array_equal(reversed_order.array[..., 0], second.array[..., 0])


def test_one_path_is_read_image(small_pair) -> None:
    flair, _ = small_pair
    alone, listed = read_sequences(str(flair)), read_sequences([flair])
    plain = read_image(flair)
    for image in (alone, listed):
        assert np.array_equal(image.array, plain.array) and image.geometry == plain.geometry
        assert image.sequences == () and image.source == plain.source


def test_different_grids_are_refused_naming_both_files() -> None:
    flair = BRATS / "flair.nii.gz"
    with pytest.raises(InputError) as error:
        read_sequences([flair, SPINE_T1])
    message = _one_line(error)
    assert str(flair) in message and str(SPINE_T1) in message
    assert "size 42x76x77 vs 240x240x155" in message and "direction" in message
    assert "Resample Scalar/Vector/DWI Volume" in message and "sitk.Resample" in message


def test_origin_tolerance(small_pair, tmp_path: Path) -> None:
    flair, t1c = small_pair
    image = sitk.ReadImage(str(t1c))
    origin = np.asarray(image.GetOrigin())
    image.SetOrigin(tuple(origin + [1e-5, 0, 0]))  # float32 rounding of a NIfTI header: the same grid
    nearly = tmp_path / "nearly.nrrd"
    sitk.WriteImage(image, str(nearly))
    assert read_sequences([flair, nearly]).channels == 2
    image.SetOrigin(tuple(origin + [0, 0, 1.0]))  # one slice off: not the same grid
    shifted = tmp_path / "shifted.nrrd"
    sitk.WriteImage(image, str(shifted))
    with pytest.raises(InputError) as error:
        read_sequences([flair, shifted])
    assert "origin (58, -131, 65) vs (58, -131, 64) mm" in _one_line(error)


def test_rgb_2d_mixed_and_repeated_inputs_are_refused(small_pair, tmp_path: Path) -> None:
    flair, _ = small_pair
    grey, rgb = tmp_path / "grey.png", tmp_path / "rgb.png"
    rng = np.random.default_rng(0)
    write_png(rng.integers(0, 256, (32, 32)).astype(np.uint8), grey)
    write_png(rng.integers(0, 256, (32, 32, 3)).astype(np.uint8), rgb)
    with pytest.raises(InputError, match="rgb.png has 3 channels .*grey-level"):
        read_sequences([grey, rgb])
    with pytest.raises(InputError, match="grey.png is a 2D image but .*flair.nii.gz is a 3D volume"):
        read_sequences([flair, grey])
    with pytest.raises(InputError, match="given twice"):
        read_sequences([flair, flair])


def test_cli_segment_two_sequences_end_to_end(small_pair, tmp_path: Path) -> None:
    flair, t1c = small_pair
    out = tmp_path / "result"
    args = ["segment", str(flair), str(t1c), "--out", str(out), "--epochs", "1", "--progress", "none"]
    assert main(args) == 0
    reference = sitk.ReadImage(str(flair))
    for name in ("persistent.nrrd",):
        written = sitk.ReadImage(str(out / name))
        assert written.GetSize() == reference.GetSize()
        assert np.allclose(written.GetOrigin(), reference.GetOrigin())
        assert np.allclose(written.GetSpacing(), reference.GetSpacing())
        assert np.allclose(written.GetDirection(), reference.GetDirection())
    hierarchy = Hierarchy.load(out / "hierarchy.npz")
    assert hierarchy.levels.shape[1:] == (4, 32, 32) and hierarchy.n_levels >= 2
    card = hierarchy.info["model"]
    assert card["channels"] == 2 and card["sequences"] == ["flair.nii.gz", "t1c.nii.gz"]
    assert hierarchy.info["source"] == f"{flair} + {t1c}"


def test_cli_train_groups_sequences_and_the_card_names_them(small_pair, tmp_path: Path, capsys) -> None:
    flair, t1c = small_pair
    cases = []
    for case, offset in (("p1", 0), ("p2", 40)):  # two cases: two blocks of the same scan
        for name in ("flair", "t1c"):
            image = sitk.ReadImage(str(BRATS / f"{name}.nii.gz"))
            path = tmp_path / f"{case}_{name}.nii.gz"
            sitk.WriteImage(image[58 + offset : 90 + offset, 108:140, 64:68], str(path))
            cases.append(str(path))
    model_path = tmp_path / "model.safetensors"
    common = ["--out", str(model_path), "--epochs", "1", "--progress", "none"]
    assert main(["train", *cases[:3], "--sequences", "2", *common]) == 2
    assert "3 input file(s) do not split into cases of 2 sequences" in capsys.readouterr().err
    assert not model_path.exists()
    assert main(["train", *cases, "--sequences", "2", *common]) == 0
    card = json.loads(model_path.with_suffix(".json").read_text())
    assert card["channels"] == 2 and card["sequences"] == ["p1_flair.nii.gz", "p1_t1c.nii.gz"]
    assert card["data"]["n_images"] == 2

    # A two-sequence model given one sequence: one line that says which sequences it needs.
    capsys.readouterr()
    args = ["segment", str(flair), "--model", str(model_path), "--out", str(tmp_path / "r"), "--progress", "none"]
    assert main(args) == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "trained on 2 sequences (p1_flair.nii.gz, p1_t1c.nii.gz) but flair.nii.gz has 1 channel" in err
    assert "give 2 sequences in the same order" in err

    # A card written before sequences were recorded still loads and still refuses the mismatch.
    model = load_model(model_path)
    model.card.pop("sequences")
    old = save_model(model, tmp_path / "old.safetensors")
    reloaded = load_model(old)
    assert "sequences" not in reloaded.card
    with pytest.raises(ModelFileError, match="trained on images with 2 channels but flair.nii.gz has 1 channel"):
        check_compatible(reloaded, read_image(flair))
    check_compatible(reloaded, read_sequences([flair, t1c]))


def test_per_image_methods_with_two_sequences(small_pair, tmp_path: Path, capsys) -> None:
    flair, t1c = small_pair
    out = tmp_path / "gmm"
    assert main(["segment", str(flair), str(t1c), "--method", "gmm", "--out", str(out), "--progress", "none"]) == 0
    assert Hierarchy.load(out / "hierarchy.npz").levels.shape[1:] == (4, 32, 32)
    args = ["segment", str(flair), str(t1c), "--method", "atlas", "--atlas", f"{flair},{flair}", "--out", str(out)]
    assert main(args) == 2
    assert "--method atlas segments one grey-level image" in capsys.readouterr().err
