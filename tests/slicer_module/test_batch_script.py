"""CUTSSegmentation/Resources/Scripts/batch.py run as `python batch.py ...` (the `slicer` of PyPI slicer-core).

The same script runs inside Slicer (`Slicer --no-main-window --python-script batch.py ...`); that cannot be
run here, but its one rule that matters there is: Slicer runs a --python-script and exits only on SystemExit
(its handler calls terminate(code)); after any other exception, or a script that just returns, Slicer keeps
running without a window. So every run here goes through `SLICER_LIKE_RUNNER`, which does the same and
turns "Slicer would keep running" into exit codes 98/99. Also checked: exit codes and one-line errors, and
the written .seg.nrrd read back by an independent reader (slicerio) and by Slicer's own segmentation storage
node, with the input's geometry (an oblique, anisotropic 3D volume catches axis-order and LPS/RAS mistakes).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BATCH = REPO / "CUTSSegmentation" / "Resources" / "Scripts" / "batch.py"

#: What Slicer does with `--python-script FILE ARGS`: run FILE as __main__; SystemExit ends the application
#: with its code; anything else leaves it running (98: the script returned, 99: an exception escaped).
SLICER_LIKE_RUNNER = """
import os, runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit:
    raise
except BaseException:
    import traceback
    traceback.print_exc()
    sys.stderr.flush()
    os._exit(99)
sys.stderr.flush()
os._exit(98)
"""


def run_batch(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SLICER_LIKE_RUNNER, str(BATCH), *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(REPO.parent),  # not the repository: the script must find its packages by itself
        env=env,
    )


def error_line(completed: subprocess.CompletedProcess) -> str:
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert lines, "no message on stderr"
    assert "Traceback" not in completed.stderr, completed.stderr
    return lines[-1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    import SimpleITK as sitk

    from CUTSSegmentationLib.evaluate.phantom import (
        oblique_direction,
        synthetic_image_2d,
        synthetic_phantom_3d,
    )
    from CUTSSegmentationLib.io.writing import itk_image_from_volume, write_png

    folder = tmp_path_factory.mktemp("batch-inputs")
    image, _ = synthetic_image_2d(size=40, seed=2)
    png = write_png(image.array[0, ..., 0].astype(np.uint8), folder / "phantom.png")
    volume, _ = synthetic_phantom_3d(shape=(6, 36, 32), seed=1, direction=oblique_direction(25.0))
    nrrd = folder / "phantom3d.nrrd"
    sitk.WriteImage(
        itk_image_from_volume(volume.array[..., 0].astype(np.int16), volume.geometry),
        str(nrrd),
    )
    return {"png": Path(png), "nrrd": nrrd}


def read_seg(path: Path):
    import slicerio

    return slicerio.read_segmentation(str(path))


def test_png_persistent_structures(inputs, tmp_path: Path):
    out = tmp_path / "out.seg.nrrd"
    completed = run_batch("--input", inputs["png"], "--output", out, "--epochs", "1", "--device", "cpu")
    assert completed.returncode == 0, completed.stderr
    assert "Persistent structures" in completed.stderr.splitlines()[-1]
    segmentation = read_seg(out)
    names = [segment["name"] for segment in segmentation["segments"]]
    assert names and all(name.startswith("Structure ") for name in names)
    assert segmentation["voxels"].shape == (40, 40, 1)  # (i, j, k): one slice


def test_oblique_volume_level_and_seed_keep_the_input_geometry(inputs, tmp_path: Path):
    import slicer
    from CUTSSegmentationJobs.engine import image_reader

    source = image_reader().read_image(inputs["nrrd"])
    out = tmp_path / "level0.seg.nrrd"
    completed = run_batch(
        "--input",
        inputs["nrrd"],
        "--output",
        out,
        "--level",
        "0",
        "--epochs",
        "1",
        "--device",
        "cpu",
    )
    assert completed.returncode == 0, completed.stderr
    summary = completed.stderr.splitlines()[-1]
    clusters = int(summary.split(": ")[1].split(" cluster")[0])

    # Read back with Slicer's own storage node: one segment per cluster, on the input's voxel grid.
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(out))
    assert storage.ReadData(node)
    assert node.GetSegmentation().GetNumberOfSegments() == clusters

    segmentation = read_seg(out)
    ijk_to_lps = segmentation["ijkToLPS"]
    expected = np.diag([-1.0, -1.0, 1.0, 1.0]) @ source.geometry.ijk_to_ras_matrix()  # RAS -> LPS
    np.testing.assert_allclose(ijk_to_lps, expected, atol=1e-4)

    # --seed keeps exactly the structure under that voxel.
    seeded = tmp_path / "seed.seg.nrrd"
    completed = run_batch(
        "--input",
        inputs["nrrd"],
        "--output",
        seeded,
        "--level",
        "0",
        "--seed",
        "16,18,3",
        "--epochs",
        "1",
        "--device",
        "cpu",
    )
    assert completed.returncode == 0, completed.stderr
    kept = read_seg(seeded)
    assert len(kept["segments"]) == 1
    label = kept["segments"][0]["labelValue"]
    voxels = kept["voxels"]
    assert voxels.shape == source.array.shape[2::-1]  # slicerio: (i, j, k) = (x, y, z) order
    assert voxels[16, 18, 3] == label


def test_keep_seed_appends_to_an_existing_segmentation_and_leaves_its_segments(inputs, tmp_path: Path):
    import slicer
    import slicerio
    from CUTSSegmentationMRML import export_segmentation
    from CUTSSegmentationMRML.volume_files import read_volume_file
    from slicer_testdata import add_user_segment

    # A user's segmentation of the input, made and saved with Slicer's own calls.
    scene = slicer.vtkMRMLScene()
    volume = read_volume_file(scene, inputs["png"])
    user = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    user.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    _z, y, x = np.mgrid[0:1, 0:40, 0:40]
    add_user_segment(user, volume, "ring", "Ring", (x - 20) ** 2 + (y - 20) ** 2 < 36)
    add_user_segment(user, volume, "corner", "Corner", (x < 8) & (y < 8))
    out = export_segmentation(user, tmp_path / "mine.seg.nrrd")
    before = slicerio.read_segmentation(str(out))

    completed = run_batch(
        "--input", inputs["png"], "--output", out, "--keep-seed", "30,30",
        "--keep-seed", "5,35", "--epochs", "1", "--device", "cpu",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr.splitlines()[-1].startswith("added 'Structure ")
    after = slicerio.read_segmentation(str(out))
    names = [segment["name"] for segment in after["segments"]]
    assert names[:2] == ["Ring", "Corner"] and len(names) == 4
    for name in ("Ring", "Corner"):
        old = slicerio.extract_segments(before, [(name, 1)])["voxels"]
        new = slicerio.extract_segments(after, [(name, 1)])["voxels"]
        np.testing.assert_array_equal(new, old)
    for segment, (i, j) in zip(after["segments"][2:], [(30, 30), (5, 35)]):
        assert segment["name"].startswith("Structure ") and "CUTS.Level" in segment.get("tags", {})
        kept = slicerio.extract_segments(after, [(segment["name"], 1)])["voxels"]
        assert kept[i, j, 0] == 1 and int(segment["tags"]["CUTS.Voxels"]) == int(kept.sum())


def test_trained_model_is_used(inputs, tmp_path: Path):
    model = tmp_path / "encoder.safetensors"
    trained = subprocess.run(
        [
            sys.executable,
            "-m",
            "CUTSSegmentationLib",
            "train",
            str(inputs["png"]),
            "--out",
            str(model),
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--progress",
            "none",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert trained.returncode == 0, trained.stderr
    out = tmp_path / "with-model.seg.nrrd"
    completed = run_batch(
        "--input",
        inputs["png"],
        "--output",
        out,
        "--model",
        model,
        "--level",
        "-1",
        "--device",
        "cpu",
    )
    assert completed.returncode == 0, completed.stderr
    stages = [line.split()[0] for line in completed.stderr.splitlines() if line.strip()]
    assert "train" not in stages and "embed" in stages, "a model was given: nothing should be trained"
    assert len(read_seg(out)["segments"]) >= 1


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--input", "{missing}", "--output", "{out}"], 2, "not found"),
        (
            ["--input", "{png}", "--output", "{tmp}/out.nrrd"],
            2,
            "must end in .seg.nrrd",
        ),
        (["--input", "{png}", "--output", "{out}", "--level", "coarse"], 2, "level"),
        (["--input", "{png}", "--output", "{out}", "--seed", "1,2,3,4"], 2, "--seed"),
        (
            [
                "--input",
                "{png}",
                "--output",
                "{out}",
                "--seed",
                "1,2",
                "--keep-seed",
                "3,4",
            ],
            2,
            "not both",
        ),
        (["--input", "{png}", "--output", "{out}", "--model", "{bad_model}"], 3, ""),
        (["--input", "{png}"], 2, "--output"),
    ],
    ids=[
        "missing-input",
        "wrong-suffix",
        "bad-level",
        "bad-seed",
        "seed-and-keep-seed",
        "bad-model",
        "missing-option",
    ],
)
def test_bad_input_fails_with_one_clear_line(inputs, tmp_path: Path, args, code, message):
    bad_model = tmp_path / "bad.safetensors"
    bad_model.write_text("not a model")
    values = {
        "missing": tmp_path / "missing.nrrd",
        "out": tmp_path / "out.seg.nrrd",
        "tmp": tmp_path,
        "png": inputs["png"],
        "bad_model": bad_model,
    }
    completed = run_batch(*[a.format(**values) for a in args])
    assert completed.returncode == code, completed.stderr
    line = error_line(completed)
    assert line.startswith("batch.py: error:") and message in line
    assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr
    assert not (tmp_path / "out.seg.nrrd").exists()


def test_level_out_of_range_is_reported_after_segmenting(inputs, tmp_path: Path):
    out = tmp_path / "out.seg.nrrd"
    completed = run_batch(
        "--input",
        inputs["png"],
        "--output",
        out,
        "--level",
        "99",
        "--epochs",
        "1",
        "--device",
        "cpu",
    )
    assert completed.returncode == 2
    assert "out of range" in error_line(completed)
    assert not out.exists()


def test_a_missing_package_ends_the_run_with_exit_code_1(inputs, tmp_path: Path):
    """A failure that is not the engine's own (here: torch cannot be imported) still ends in sys.exit."""
    fake = tmp_path / "no-torch"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n"
    )
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")]),
    )
    out = tmp_path / "out.seg.nrrd"
    completed = run_batch(
        "--input",
        inputs["png"],
        "--output",
        out,
        "--epochs",
        "1",
        "--device",
        "cpu",
        env=env,
    )
    assert completed.returncode == 1, completed.stderr
    assert completed.stderr.strip().splitlines()[-1] == "batch.py: error: ModuleNotFoundError: No module named 'torch'"
    assert not out.exists()


def test_help_exits_with_code_0():
    completed = run_batch("--help")
    assert completed.returncode == 0 and "--input" in completed.stdout


def test_keep_seed_of_two_sequences_keeps_what_cuts_binarize_keeps(inputs, tmp_path: Path):
    """--keep-seed on several sequences reads every sequence's edges, as `cuts binarize --seed --image A B`."""
    import SimpleITK as sitk
    import slicerio

    from CUTSSegmentationLib.evaluate.phantom import oblique_direction, synthetic_phantom_3d
    from CUTSSegmentationLib.io.writing import itk_image_from_volume

    # A second sequence of the same phantom in which the brain's two halves differ (an edge the first lacks):
    # read from the first sequence alone, the click at (22, 16, 2) grows over that edge (1,674 voxels, not 756).
    first, labels = synthetic_phantom_3d(shape=(6, 36, 32), seed=1, direction=oblique_direction(25.0))
    x = np.arange(labels.shape[2])[None, None, :]
    values = np.where(labels == 3, np.where(x < 16, 200, 500), labels * 100.0)
    values = values + np.random.default_rng(7).normal(0.0, 15.0, labels.shape)
    second = tmp_path / "second.nrrd"
    sitk.WriteImage(itk_image_from_volume(values.astype(np.int16), first.geometry), str(second))
    sequences = [str(inputs["nrrd"]), str(second)]
    seed = "22,16,2"
    common = ["--device", "cpu"]
    engine = [sys.executable, "-m", "CUTSSegmentationLib"]
    run = {"check": False, "capture_output": True, "text": True, "timeout": 600}
    segmented = subprocess.run(
        [
            *engine,
            "segment",
            *sequences,
            "--out",
            str(tmp_path / "run"),
            "--epochs",
            "1",
            "--progress",
            "none",
            *common,
        ],
        **run,
    )
    assert segmented.returncode == 0, segmented.stderr
    mask_file = tmp_path / "click.nrrd"
    clicked = subprocess.run(
        [*engine, "binarize", str(tmp_path / "run" / "hierarchy.npz"), "--seed", seed, "--image", *sequences,
         "--out", str(mask_file), *common],
        **run,
    )  # fmt: skip
    assert clicked.returncode == 0, clicked.stderr
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(mask_file))).astype(bool)  # (z, y, x)

    out = tmp_path / "kept.seg.nrrd"
    completed = run_batch(
        "--input", sequences[0], "--input", sequences[1], "--output", out, "--keep-seed", seed,
        "--epochs", "1", *common,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    segmentation = read_seg(out)
    (segment,) = segmentation["segments"]
    kept = slicerio.extract_segments(segmentation, [(segment["name"], 1)])["voxels"].transpose(2, 1, 0) > 0
    assert kept.any() and int(segment["tags"]["CUTS.Voxels"]) == int(kept.sum())
    np.testing.assert_array_equal(kept, expected)
