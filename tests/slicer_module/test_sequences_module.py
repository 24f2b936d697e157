"""Several sequences of one case in the module (slicer-core): the console API, the background jobs' arguments,
and the panel controller; sequences on different grids are refused before any job starts. Real MRI: BraTS
pat0001 FLAIR + contrast T1 (cropped, one grid) and the spine T1 (another grid)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from CUTSSegmentationJobs.engine import InputError, image_reader
from CUTSSegmentationMRML import find_hierarchy_nodes, image_to_volume_node
from CUTSSegmentationMRML.sequences import sequence_volumes
from CUTSSegmentationMRML.volume_files import read_volume_file, sequence_file_names
from slicer_testdata import image_data
from test_panel_controller import PanelParameters, controller_on, make_logic

VOLUMES = Path(__file__).resolve().parents[3] / "shared" / "data" / "volumes"
BRATS = VOLUMES / "brats" / "pat0001"


@pytest.fixture(scope="module")
def case_files(tmp_path_factory) -> dict[str, Path]:
    """FLAIR and contrast T1 cropped to 32 x 32 x 4 through the tumour (one grid), and the spine T1."""
    folder = tmp_path_factory.mktemp("sequences")
    files = {"t1": VOLUMES / "spine" / "t1.nii.gz"}
    for name in ("flair", "t1c"):
        path = folder / f"{name}.nii.gz"
        sitk.WriteImage(sitk.ReadImage(str(BRATS / f"{name}.nii.gz"))[58:90, 108:140, 64:68], str(path))
        files[name] = path
    return files


@pytest.fixture()
def scene_with_case(case_files):
    scene = slicer.vtkMRMLScene()
    nodes = {name: read_volume_file(scene, path, name=name) for name, path in case_files.items()}
    return scene, nodes


def _wait(job, seconds: float = 300):
    deadline = time.monotonic() + seconds
    while (result := job.poll()) is None:
        assert time.monotonic() < deadline, "the background job did not finish"
        time.sleep(0.05)
    return result


def test_console_segment_stacks_the_extra_volumes(scene_with_case) -> None:
    scene, nodes = scene_with_case
    logic = make_logic()
    hierarchy = logic.segment(nodes["flair"], epochs=1, device="cpu", extraVolumes=[nodes["t1c"]])
    assert hierarchy.levels.shape[1:] == (4, 32, 32)
    card = hierarchy.info["model"]
    assert card["channels"] == 2 and card["sequences"] == ["flair", "t1c"]
    assert len(find_hierarchy_nodes(scene, nodes["flair"])) == 1, "the hierarchy belongs to the first volume"
    assert find_hierarchy_nodes(scene, nodes["t1c"]) == []


def test_segmentation_job_writes_and_passes_every_sequence(scene_with_case) -> None:
    scene, nodes = scene_with_case
    logic = make_logic()
    job = logic.startSegmentationJob(nodes["flair"], epochs=1, device="cpu", extraVolumes=[nodes["t1c"]])
    try:
        command = job.command
        inputs = command[command.index("segment") + 1 : command.index("--out")]
        assert inputs == [str(job.path("flair.nrrd")), str(job.path("t1c.nrrd"))]
        result = _wait(job)
        assert result.ok, result.message()
        hierarchyNode = logic.finishSegmentationJob(job, nodes["flair"])
    finally:
        job.cleanup()
    hierarchy = logic.hierarchyForNode(hierarchyNode)
    assert hierarchy.levels.shape[1:] == (4, 32, 32)
    assert hierarchy.info["model"]["sequences"] == ["flair.nrrd", "t1c.nrrd"]


def test_training_job_groups_each_case_sequences(scene_with_case) -> None:
    _, nodes = scene_with_case
    job = make_logic().startTrainingJob([[nodes["flair"], nodes["t1c"]]], epochs=1, device="cpu")
    try:
        command = job.command
        assert command[command.index("--sequences") + 1] == "2"
        inputs = command[command.index("train") + 1 : command.index("--out")]
        assert inputs == [str(job.path("case0", "flair.nrrd")), str(job.path("case0", "t1c.nrrd"))]
        assert all(Path(p).is_file() for p in inputs)
    finally:
        job.cancel()


def test_mismatched_grids_are_refused_before_any_job(scene_with_case, tmp_path: Path, monkeypatch) -> None:
    _, nodes = scene_with_case
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where a job would make its work folder
    logic = make_logic()
    with pytest.raises(InputError) as error:
        logic.startSegmentationJob(nodes["flair"], epochs=1, device="cpu", extraVolumes=[nodes["t1"]])
    message = str(error.value)
    assert "\n" not in message and "'t1' does not lie on the voxel grid of 'flair'" in message
    assert "size 42x76x77 vs 32x32x4" in message
    assert "resample it onto the first volume with Modules > Resample Scalar/Vector/DWI Volume" in message
    with pytest.raises(InputError, match="'t1' does not lie on the voxel grid of 'flair'"):
        logic.startTrainingJob([[nodes["flair"], nodes["t1"]]], epochs=1, device="cpu")
    with pytest.raises(InputError, match="Resample Scalar/Vector/DWI Volume"):
        logic.segment([nodes["flair"], nodes["t1"]], epochs=1, device="cpu")
    assert list(tmp_path.iterdir()) == [], "a job folder was made"


def test_panel_offers_and_checks_the_other_sequences(scene_with_case, tmp_path: Path, monkeypatch) -> None:
    scene, nodes = scene_with_case
    parameters = PanelParameters(inputVolume=nodes["flair"], secondVolume=nodes["t1"], epochs=1, device="cpu")
    controller = controller_on(scene, parameters)
    state = controller.state()
    assert not state.segmentEnabled and not state.trainEnabled
    assert "'t1' does not lie on the voxel grid of 'flair'" in state.status
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(InputError):
        controller.segment()
    assert controller.job is None and list(tmp_path.iterdir()) == []
    monkeypatch.undo()

    rgb = image_to_volume_node(scene, image_data(np.zeros((4, 32, 32, 3)) + np.arange(3)), name="photo")
    parameters.secondVolume, parameters.thirdVolume = nodes["t1c"], rgb
    assert "'photo' is not a scalar volume" in controller.state().status

    parameters.thirdVolume = nodes["flair"]  # the input picked again counts once
    assert controller.sequenceVolumes() == [nodes["flair"], nodes["t1c"]]
    state = controller.state()
    assert state.segmentEnabled and state.trainEnabled
    assert controller.segment() is True
    try:
        command = controller.job.command
        assert command[command.index("segment") + 1 : command.index("--out")] == [
            str(controller.job.path("flair.nrrd")),
            str(controller.job.path("t1c.nrrd")),
        ]
    finally:
        controller.cancel()


def test_sequence_lists_and_file_names(scene_with_case) -> None:
    scene, nodes = scene_with_case
    flair, t1c = nodes["flair"], nodes["t1c"]
    assert sequence_volumes(flair) == [flair]
    assert sequence_volumes([flair, t1c]) == sequence_volumes(flair, [None, t1c, flair]) == [flair, t1c]
    assert sequence_file_names([flair]) == ["input.nrrd"]
    other = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "T1 post/contrast")
    same = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "flair")
    assert sequence_file_names([flair, other, same]) == ["flair.nrrd", "T1_post_contrast.nrrd", "flair-3.nrrd"]


def test_batch_script_takes_several_inputs(case_files, tmp_path: Path) -> None:
    from test_batch_script import error_line, read_seg, run_batch

    out = tmp_path / "case.seg.nrrd"
    common = ["--output", out, "--epochs", "1", "--device", "cpu"]
    refused = run_batch("--input", case_files["flair"], "--input", case_files["t1"], *common)
    assert refused.returncode == 2 and not out.exists()
    line = error_line(refused)
    assert "'t1' does not lie on the voxel grid of 'flair'" in line and "Resample Scalar/Vector/DWI Volume" in line

    done = run_batch("--input", case_files["flair"], "--input", case_files["t1c"], "--level", "0", *common)
    assert done.returncode == 0, done.stderr
    clusters = int(done.stderr.splitlines()[-1].split(": ")[1].split(" cluster")[0])
    segmentation = read_seg(out)
    assert len(segmentation["segments"]) == clusters >= 2
    source = image_reader().read_image(case_files["flair"])
    expected = np.diag([-1.0, -1.0, 1.0, 1.0]) @ source.geometry.ijk_to_ras_matrix()  # RAS -> LPS
    np.testing.assert_allclose(segmentation["ijkToLPS"], expected, atol=1e-4)
