"""CUTSSegmentationModuleLib.logic: the console API and the self-test checks, on slicer-core's real MRML."""

from __future__ import annotations

from pathlib import Path

import slicer
from CUTSSegmentationJobs import card_path
from CUTSSegmentationJobs.engine import synthetic_image_2d
from CUTSSegmentationModuleLib import SegmentationLogic, selftest
from CUTSSegmentationMRML import find_hierarchy_nodes, image_to_volume_node


def test_self_test_level_push_runs_on_slicer_core():
    selftest.check_push_level(SegmentationLogic(), slicer.vtkMRMLScene())


def test_console_api_runs_on_a_real_scene(tmp_path: Path):
    scene = slicer.vtkMRMLScene()
    logic = SegmentationLogic()
    assert logic.missingDependencies() == [] and logic.installDependencies() is True
    image, _truth = synthetic_image_2d(size=40, seed=5)
    volume = image_to_volume_node(scene, image, name="phantom")

    model = logic.train(volume, epochs=1, device="cpu")
    model_path = logic.saveModel(model, str(tmp_path / "encoder.safetensors"))
    assert Path(model_path).is_file() and card_path(model_path).is_file()

    hierarchy = logic.segment(volume, model=logic.loadModel(model_path), device="cpu")
    assert len(find_hierarchy_nodes(scene, volume)) == 1
    segmentation = logic.pushLevel(hierarchy, 0)  # reference volume remembered from segment()
    assert segmentation.GetSegmentation().GetNumberOfSegments() == int(hierarchy.n_clusters[0])
    logic.pushLevel(hierarchy, -1, segmentation)
    assert segmentation.GetSegmentation().GetNumberOfSegments() == int(hierarchy.n_clusters[-1])

    markups = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    markups.AddControlPoint(*[float(v) for v in image.geometry.index_to_ras((20, 20, 0))])
    kept = logic.binarizeAtSeed(hierarchy, markups, level=0, segmentationNode=segmentation)
    assert kept is segmentation and segmentation.GetSegmentation().GetNumberOfSegments() == 1

    # A second segmentation replaces the first hierarchy kept for this volume.
    logic.segment(volume, model=model_path, device="cpu")
    assert len(find_hierarchy_nodes(scene, volume)) == 1

    # The panel's background path: write the volume, run `cuts segment` in a child, import the hierarchy.
    logic.modelsDirectory = str(tmp_path / "models")
    job = logic.startSegmentationJob(volume, modelPath=model_path, device="cpu")
    result = job.wait(timeout=600)
    assert result.ok, result.message()
    hierarchy_node = logic.finishSegmentationJob(job, volume)
    job.cleanup()
    assert logic.hierarchyForNode(hierarchy_node).n_levels >= 1
    assert find_hierarchy_nodes(scene, volume) == [hierarchy_node]
