"""The `cuts` command line end to end: real files in, real files out, one clear line for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
from scipy import ndimage as ndi

from CUTSSegmentationLib.cli import main
from CUTSSegmentationLib.condense.hierarchy import Hierarchy
from CUTSSegmentationLib.condense.structures import structure_at_seed
from CUTSSegmentationLib.core.errors import InputError
from CUTSSegmentationLib.evaluate.phantom import synthetic_image_2d, synthetic_phantom_3d
from CUTSSegmentationLib.io.reading import read_image
from CUTSSegmentationLib.io.writing import write_png
from CUTSSegmentationLib.learn.modelfile import load_model
from CUTSSegmentationLib.pipeline import structure_at_click


@pytest.fixture(scope="module")
def png_input(tmp_path_factory) -> tuple[Path, np.ndarray]:
    image, truth = synthetic_image_2d(size=64, seed=3, rgb=True)
    path = tmp_path_factory.mktemp("in") / "synthetic.png"
    write_png(image.array[0].astype(np.uint8), path)
    return path, truth


@pytest.fixture(scope="module")
def segmented(png_input, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seg") / "result"
    assert main(["segment", str(png_input[0]), "--out", str(out), "--epochs", "2", "--progress", "none"]) == 0
    return out


def test_segment_writes_all_outputs(segmented: Path, png_input) -> None:
    names = sorted(p.name for p in segmented.iterdir())
    assert names == [
        "hierarchy.npz",
        "levels.png",
        "model.json",
        "model.safetensors",
        "persistent.nrrd",
        "segmentation.seg.nrrd",
    ]
    model = load_model(segmented / "model.safetensors")  # the self-trained encoder, kept for closer looks
    assert model.channels == 3 and model.card["normalisation"]["mode"] == "uint8"
    h = Hierarchy.load(segmented / "hierarchy.npz")
    assert h.levels.dtype == np.uint16 and h.levels.shape[1:] == (64, 64)
    assert h.n_levels >= 2
    assert list(h.n_clusters) == sorted(h.n_clusters, reverse=True)  # finest first
    for k in range(h.n_levels):
        assert len(np.unique(h.levels[k])) == h.n_clusters[k]
        assert np.array_equal(h.step_map(int(h.level_steps[k])), h.levels[k])
    persistent = sitk.GetArrayFromImage(sitk.ReadImage(str(segmented / "persistent.nrrd")))
    assert np.array_equal(persistent.reshape(64, 64), h.persistent)
    seg = slicerio.read_segmentation(str(segmented / "segmentation.seg.nrrd"))
    assert len(seg["segments"]) == len(np.unique(h.persistent[h.persistent > 0]))
    # no staging folders left behind
    assert not [p for p in segmented.parent.iterdir() if p.name.startswith(".")]


def test_binarize_seed_and_levels(segmented: Path, tmp_path: Path) -> None:
    h = Hierarchy.load(segmented / "hierarchy.npz")
    coarsest = h.levels[-1]
    mask_path = tmp_path / "mask.nrrd"
    assert (
        main(
            ["binarize", str(segmented / "hierarchy.npz"), "--seed", "10,20", "--level", "-1", "--out", str(mask_path)]
        )
        == 0
    )
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(mask_path))).reshape(64, 64)
    assert mask.dtype == np.uint8
    # the connected region under the seed (cavities filled), a part of the seed's class
    component = structure_at_seed(coarsest[None], (10, 20), level=0).mask
    assert np.array_equal(mask.astype(bool), component)
    assert (
        mask.astype(bool)[20, 10]
        and not (mask.astype(bool) & ~ndi.binary_fill_holes(coarsest == coarsest[20, 10])).any()
    )
    whole = tmp_path / "whole.nrrd"
    args = ["binarize", str(segmented / "hierarchy.npz"), "--seed", "10,20", "--level", "-1", "--whole-class"]
    assert main([*args, "--out", str(whole)]) == 0
    assert np.array_equal(
        sitk.GetArrayFromImage(sitk.ReadImage(str(whole))).reshape(64, 64), coarsest == coarsest[20, 10]
    )
    # default: the structure's own level, chosen across the hierarchy with the image the hierarchy records
    auto = tmp_path / "auto.nrrd"
    assert main(["binarize", str(segmented / "hierarchy.npz"), "--seed", "10,20", "--out", str(auto)]) == 0
    pixels = read_image(Path(h.info["source"])).array.reshape(64, 64, 3)
    expected = structure_at_seed(h.levels, (10, 20), image=pixels).mask
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(auto))).reshape(64, 64).astype(bool), expected)
    # RAS seed: for a PNG (identity geometry) RAS = (-x, -y, 0)
    ras_path = tmp_path / "ras.nrrd"
    assert (
        main(
            [
                "binarize",
                str(segmented / "hierarchy.npz"),
                "--seed-ras",
                "-10,-20,0",
                "--level",
                "-1",
                "--out",
                str(ras_path),
            ]
        )
        == 0
    )
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(ras_path))).reshape(64, 64), mask)


def test_binarize_bad_arguments(segmented: Path, tmp_path: Path, capsys) -> None:
    h = str(segmented / "hierarchy.npz")
    assert main(["binarize", h, "--seed", "500,3", "--level", "0", "--out", str(tmp_path / "m.nrrd")]) == 2
    assert main(["binarize", h, "--seed", "1,2", "--level", "99", "--out", str(tmp_path / "m.nrrd")]) == 2
    assert main(["binarize", h, "--out", str(tmp_path / "m.nrrd")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("cuts: error:") for line in err)
    assert not (tmp_path / "m.nrrd").exists()


def test_volume_segment_keeps_geometry(tmp_path: Path) -> None:
    volume, _ = synthetic_phantom_3d(shape=(8, 40, 40), seed=1)
    src = tmp_path / "vol.nrrd"
    itk = sitk.GetImageFromArray(volume.array[..., 0].astype(np.int16))
    itk.SetSpacing(volume.geometry.spacing)
    itk.SetOrigin(volume.geometry.origin)
    itk.SetDirection(volume.geometry.direction)
    sitk.WriteImage(itk, str(src))
    out = tmp_path / "out"
    assert main(["segment", str(src), "--out", str(out), "--epochs", "1", "--progress", "none"]) == 0
    written = sitk.ReadImage(str(out / "persistent.nrrd"))
    assert np.allclose(written.GetSpacing(), itk.GetSpacing())
    assert np.allclose(written.GetOrigin(), itk.GetOrigin())
    assert np.allclose(written.GetDirection(), itk.GetDirection())
    assert sitk.GetArrayFromImage(written).shape == (8, 40, 40)
    seg = slicerio.read_segmentation(str(out / "segmentation.seg.nrrd"))
    assert np.allclose(seg["ijkToLPS"][:3, 3], itk.GetOrigin())


def test_volume_binarize_looks_closer_with_the_kept_encoder(tmp_path: Path, capsys) -> None:
    """`cuts binarize --closer always` condenses boxes around the seed with the encoder `cuts segment` kept and
    the input the hierarchy records; without them it refuses in one line, and auto leaves a small region alone."""
    volume, _ = synthetic_phantom_3d(shape=(8, 40, 40), seed=1)
    src = tmp_path / "vol.nrrd"
    itk = sitk.GetImageFromArray(volume.array[..., 0].astype(np.int16))
    itk.SetSpacing(volume.geometry.spacing)
    sitk.WriteImage(itk, str(src))
    out = tmp_path / "out"
    assert main(["segment", str(src), "--out", str(out), "--epochs", "1", "--progress", "none"]) == 0
    hierarchy = Hierarchy.load(out / "hierarchy.npz")
    args = ["binarize", str(out / "hierarchy.npz"), "--seed", "20,20,4"]

    assert main([*args, "--out", str(tmp_path / "auto.nrrd")]) == 0  # 1.6 mL under the seed: no closer look
    auto = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "auto.nrrd"))).astype(bool)
    voxels = read_image(src).array.reshape(8, 40, 40, 1)
    assert np.array_equal(
        auto,
        structure_at_seed(hierarchy.levels, (20, 20, 4), image=voxels, spacing_xyz=hierarchy.geometry.spacing).mask,
    )
    assert np.array_equal(structure_at_click(hierarchy, (20, 20, 4), read_image(src)).mask, auto)  # no encoder
    with pytest.raises(InputError, match="needs the segmented image"):
        structure_at_click(hierarchy, (20, 20, 4), look_closer=True)

    capsys.readouterr()
    assert main([*args, "--closer", "always", "--out", str(tmp_path / "closer.nrrd")]) == 0
    assert "mm box around the seed" in capsys.readouterr().err
    closer = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "closer.nrrd"))).astype(bool)
    expected = structure_at_click(
        hierarchy, (20, 20, 4), read_image(src), load_model(out / "model.safetensors"), device="cpu", look_closer=True
    )
    assert expected.box_mm is not None and closer[4, 20, 20]
    assert np.array_equal(closer, expected.mask)

    (out / "model.safetensors").rename(tmp_path / "elsewhere.safetensors")
    assert main([*args, "--closer", "always", "--out", str(tmp_path / "m.nrrd")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model MODEL" in err[0] and not (tmp_path / "m.nrrd").exists()
    given = ["--model", str(tmp_path / "elsewhere.safetensors"), "--image", str(src)]
    assert main([*args, "--closer", "always", *given, "--out", str(tmp_path / "given.nrrd")]) == 0
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "given.nrrd"))).astype(bool), closer)
    assert main([*args, "--closer", "always", "--level", "0", "--out", str(tmp_path / "m.nrrd")]) == 2


@pytest.mark.parametrize(
    "content,needle",
    [
        (None, "not found"),
        (b"", "empty"),
        (b"this is not an image", "cannot read"),
    ],
)
def test_segment_bad_input_one_line_nothing_written(tmp_path: Path, content, needle, capsys) -> None:
    src = tmp_path / "input.png"
    if content is not None:
        src.write_bytes(content)
    out = tmp_path / "out"
    code = main(["segment", str(src), "--out", str(out), "--progress", "none"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cuts: error:")
    assert needle in err[0].lower(), err[0]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["input.png"] if content is not None else [])


def test_constant_and_nan_inputs_are_refused(tmp_path: Path, capsys) -> None:
    const = tmp_path / "const.png"
    write_png(np.full((32, 32), 7, np.uint8), const)
    assert main(["segment", str(const), "--out", str(tmp_path / "o1"), "--progress", "none"]) == 2
    nan = tmp_path / "nan.nrrd"
    arr = np.random.default_rng(0).normal(size=(4, 16, 16)).astype(np.float32)
    arr[1, 2, 3] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(nan))
    assert main(["segment", str(nan), "--out", str(tmp_path / "o2"), "--progress", "none"]) == 2
    four_d = tmp_path / "t.nii.gz"
    sitk.WriteImage(sitk.JoinSeries([sitk.GetImageFromArray(arr + 0) for _ in range(3)]), str(four_d))
    assert main(["segment", str(four_d), "--out", str(tmp_path / "o3"), "--progress", "none"]) == 2
    err = capsys.readouterr().err
    assert "constant" in err.lower() and "nan" in err.lower() and "4d" in err.lower()


def test_python_dash_m_entry_point_reports_version() -> None:
    done = subprocess.run([sys.executable, "-m", "CUTSSegmentationLib", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and "cuts" in done.stdout
