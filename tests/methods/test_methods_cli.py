"""`cuts train/segment --objective` and `cuts segment --method`: the same output files for every method."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from CUTSSegmentationLib.cli import main
from CUTSSegmentationLib.condense.hierarchy import Hierarchy
from CUTSSegmentationLib.evaluate.phantom import synthetic_image_2d
from CUTSSegmentationLib.io.writing import write_png

OUTPUTS = {"hierarchy.npz", "persistent.nrrd", "segmentation.seg.nrrd", "levels.png"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("peers")
    image, truth = synthetic_image_2d(48, seed=4)
    atlas, atlas_truth = synthetic_image_2d(48, seed=5)
    write_png(image.array[0].astype(np.uint8), folder / "image.png")
    write_png(atlas.array[0].astype(np.uint8), folder / "atlas.png")
    np.save(folder / "atlas_labels.npy", atlas_truth)
    return {"image": folder / "image.png", "atlas": folder / "atlas.png", "labels": folder / "atlas_labels.npy"}


def run(*args: str) -> int:
    return main([*args, "--progress", "none", "--device", "cpu"])


def test_train_with_objective_and_segment_with_the_model(inputs, tmp_path) -> None:
    model = tmp_path / "iic.safetensors"
    assert (
        run(
            "train", str(inputs["image"]), "--objective", "iic", "--clusters", "6", "--epochs", "2", "--out", str(model)
        )
        == 0
    )
    card = json.loads(model.with_suffix(".json").read_text())
    assert card["objective"]["name"] == "iic" and card["cluster_head"] == {"n_clusters": 6}
    out = tmp_path / "seg"
    assert run("segment", str(inputs["image"]), "--model", str(model), "--out", str(out)) == 0
    assert {p.name for p in out.iterdir()} == OUTPUTS | {"clusters.nrrd", "model.safetensors", "model.json"}
    kept = json.loads((out / "model.json").read_text())  # the encoder used, kept beside the hierarchy
    assert kept["objective"]["name"] == "iic" and kept["cluster_head"] == {"n_clusters": 6}
    clusters = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "clusters.nrrd")))
    assert clusters.squeeze().shape == (48, 48) and 1 <= clusters.min() and clusters.max() <= 6
    hierarchy = Hierarchy.load(out / "hierarchy.npz")
    assert hierarchy.info["model"]["objective"]["name"] == "iic"


def test_objective_must_match_the_model(inputs, tmp_path, capsys) -> None:
    model = tmp_path / "cgc.safetensors"
    assert run("train", str(inputs["image"]), "--objective", "cgc", "--epochs", "1", "--out", str(model)) == 0
    capsys.readouterr()
    out = tmp_path / "seg"
    assert run("segment", str(inputs["image"]), "--model", str(model), "--objective", "infomax", "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained with 'cgc'" in err[0] and not out.exists()


@pytest.mark.parametrize("method, extra", [("gmm", []), ("s3net", ["--epochs", "3"])])
def test_per_image_methods_write_the_same_files(inputs, tmp_path, method, extra) -> None:
    out = tmp_path / method
    assert run("segment", str(inputs["image"]), "--method", method, *extra, "--out", str(out)) == 0
    assert {p.name for p in out.iterdir()} == OUTPUTS
    hierarchy = Hierarchy.load(out / "hierarchy.npz")
    assert hierarchy.n_levels == 1 and hierarchy.info["method"] == method
    assert np.array_equal(hierarchy.persistent, hierarchy.levels[0]) and hierarchy.levels.min() >= 1
    persistent = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "persistent.nrrd"))).squeeze()
    assert np.array_equal(persistent, hierarchy.levels[0])


def test_atlas_method_with_an_atlas(inputs, tmp_path) -> None:
    out = tmp_path / "atlas"
    atlas = f"{inputs['atlas']},{inputs['labels']}"
    assert (
        run("segment", str(inputs["image"]), "--method", "atlas", "--atlas", atlas, "--epochs", "3", "--out", str(out))
        == 0
    )
    assert {p.name for p in out.iterdir()} == OUTPUTS
    hierarchy = Hierarchy.load(out / "hierarchy.npz")
    assert hierarchy.n_levels == 1 and set(np.unique(hierarchy.levels[0])) <= {1, 2, 3, 4, 5}
    assert hierarchy.info["method"] == "atlas" and hierarchy.info["atlas"] == atlas


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--method", "atlas"], "needs one labelled reference: --atlas IMAGE,LABELS"),
        (["--method", "s3net", "--atlas", "a.png,b.npy"], "--atlas is only used by --method atlas"),
        (["--method", "gmm", "--model", "m.safetensors"], "--model applies to --method cuts"),
        (["--method", "s3net", "--objective", "infomax"], "--objective applies to --method cuts"),
    ],
)
def test_bad_method_arguments_one_line(inputs, tmp_path, capsys, args, needle) -> None:
    out = tmp_path / "never"
    assert run("segment", str(inputs["image"]), *args, "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not out.exists()
