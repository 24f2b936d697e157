"""CUTSSegmentationModuleLib.controller on slicer-core: what the panel enables, which level it shows, what a click
does. The logic, the scene and the background jobs are real; `PanelParameters` holds the parameter node's fields
(Slicer's parameter node wrapper needs Slicer's source: tests/slicer_module/test_slicer_conformance.py runs the
controller on the real wrapper when that source is given)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import slicer
from CUTSSegmentationJobs import Accelerators
from CUTSSegmentationJobs.engine import synthetic_image_2d
from CUTSSegmentationModuleLib import (
    DependencyInstaller,
    PanelController,
    SegmentationLogic,
    default_input_volume,
)
from CUTSSegmentationModuleLib.controller import STAGE_TITLES, progress_text
from CUTSSegmentationMRML import ROLE, find_hierarchy_nodes, image_to_volume_node
from slicer_testdata import MODULE_DIR, image_data, three_level_hierarchy


@dataclass
class PanelParameters:
    """The fields of CUTSSegmentationParameterNode with their defaults."""

    inputVolume: Any = None
    secondVolume: Any = None
    thirdVolume: Any = None
    epochs: int = 0
    device: str = "auto"
    modelPath: str = ""
    hierarchyNode: Any = None
    level: int = 0
    showPersistent: bool = False
    automaticLevel: bool = True
    seedPoints: Any = None
    outputSegmentation: Any = None
    previewSegmentation: Any = None


def make_logic(
    requirements: Path = MODULE_DIR / "Resources" / "requirements.txt",
    answer: bool = True,
):
    return SegmentationLogic(
        DependencyInstaller(requirements, lambda: None, lambda packages: None, lambda text: answer)
    )


def controller_on(scene, parameters=None, logic=None):
    controller = PanelController(logic or make_logic(), Accelerators())
    controller.setParameters(parameters or PanelParameters())
    return controller


def test_the_default_input_is_a_plain_scalar_or_vector_volume():
    scene = slicer.vtkMRMLScene()
    scene.AddNewNodeByClass("vtkMRMLDiffusionWeightedVolumeNode", "dwi")
    scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    own = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CUTS atom map")
    own.SetAttribute(ROLE, "atom_map")
    scene.AddNewNodeByClass("vtkMRMLDiffusionTensorVolumeNode", "dti")
    wanted = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "ct")
    scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "photo")
    assert default_input_volume(scene) is wanted
    parameters = PanelParameters()
    controller = controller_on(scene, parameters)
    controller.selectDefaultInput(scene)
    assert parameters.inputVolume is wanted
    chosen = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "chosen")
    parameters.inputVolume = chosen
    controller.selectDefaultInput(scene)
    assert parameters.inputVolume is chosen  # a choice is never overridden
    assert default_input_volume(slicer.vtkMRMLScene()) is None


def test_the_slider_range_follows_the_hierarchy_and_the_level_stays_inside(
    scene_and_volume,
):
    scene, volume = scene_and_volume
    logic = make_logic()
    parameters = PanelParameters(inputVolume=volume)
    controller = controller_on(scene, parameters, logic)
    state = controller.state()
    assert (state.levelEnabled, state.levelMaximum, state.level) == (False, 0, 0)
    assert state.trainEnabled and state.segmentEnabled and not state.cancelEnabled
    assert state.levelText == "no hierarchy yet: run condensation"

    hierarchyNode = logic.addHierarchyToScene(three_level_hierarchy(), volume)
    parameters.hierarchyNode = hierarchyNode
    parameters.level = 200  # a saved scene or a script may hold any level up to the wrapper's 255
    controller.refresh()
    state = controller.state()
    assert parameters.level == 2, "the controller keeps the level within the hierarchy"
    assert (state.levelEnabled, state.levelMaximum, state.level) == (True, 2, 2)
    assert state.level <= state.levelMaximum
    assert parameters.previewSegmentation.GetSegmentation().GetNumberOfSegments() == 2
    assert parameters.outputSegmentation is None, "levels are shown in the preview only"
    assert state.levelText == "Level 2 of 2 (0 = finest): 2 clusters" and state.persistentEnabled

    controller.chooseLevel(0.4)
    controller.refresh()
    assert parameters.level == 0 and parameters.previewSegmentation.GetSegmentation().GetNumberOfSegments() == 8
    parameters.showPersistent = True
    controller.refresh()
    assert controller.state().levelText == "Persistent structures: 2"
    assert parameters.previewSegmentation.GetSegmentation().GetNumberOfSegments() == 2
    controller.chooseLevel(7)  # past the end: the coarsest level, and the persistent map is left
    controller.refresh()
    assert (parameters.level, parameters.showPersistent) == (2, False)


def test_a_new_input_brings_its_own_hierarchy_and_its_own_range(scene_and_volume):
    scene, volume = scene_and_volume
    logic = make_logic()
    small = image_to_volume_node(scene, image_data(np.arange(2 * 20 * 24).reshape(2, 20, 24, 1)), name="small")
    two_levels = three_level_hierarchy(shape=(2, 20, 24))
    two_levels.levels = two_levels.levels[:2]
    two_levels.n_clusters = list(two_levels.n_clusters)[:2]
    two_levels.level_steps = list(two_levels.level_steps)[:2]
    two_levels.merge_tree = two_levels.merge_tree[:2]
    bigNode = logic.addHierarchyToScene(three_level_hierarchy(), volume)
    smallNode = logic.addHierarchyToScene(two_levels, small)
    parameters = PanelParameters(inputVolume=volume, hierarchyNode=bigNode, level=2)
    controller = controller_on(scene, parameters, logic)
    parameters.inputVolume = small
    controller.refresh()
    assert parameters.hierarchyNode is smallNode and parameters.level == 1
    assert controller.state().levelMaximum == 1
    parameters.inputVolume = image_to_volume_node(scene, image_data(np.ones((1, 4, 4, 1))), name="plain")
    controller.refresh()
    assert parameters.hierarchyNode is None and not controller.state().levelEnabled


def test_declining_the_install_starts_nothing_and_raises_nothing(scene_and_volume, tmp_path: Path):
    scene, volume = scene_and_volume
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("cuts-no-such-package>=1\n")
    parameters = PanelParameters(inputVolume=volume)
    controller = controller_on(scene, parameters, make_logic(requirements, answer=False))
    assert controller.segment() is False and controller.train() is False
    assert controller.job is None and "nothing was run" in controller.state().status


def test_run_condensation_shows_the_middle_level_and_cancel_changes_nothing(
    tmp_path: Path,
):
    """The panel's whole path minus Qt: volume -> child `cuts segment` -> hierarchy node -> output segmentation."""
    scene = slicer.vtkMRMLScene()
    image, _truth = synthetic_image_2d(size=40, seed=3)
    volume = image_to_volume_node(scene, image, name="phantom")
    parameters = PanelParameters(inputVolume=volume, epochs=1, device="cpu")
    controller = controller_on(scene, parameters)
    assert controller.segment() is True
    assert controller.state().cancelEnabled and not controller.state().segmentEnabled
    assert controller.segment() is False  # one job at a time
    deadline = time.monotonic() + 600
    result = None
    shown: list[tuple[int, str, str]] = []
    while result is None:
        assert time.monotonic() < deadline, "the background job did not finish"
        result = controller.poll()
        if result is None:
            state = controller.state()
            shown.append((state.progress, state.progressFormat, state.status))
        time.sleep(0.05)
    assert result.ok, result.message()
    # The bar shows the whole job (never going back) and the status line names the stage.
    # (Until the engine's first line the status says where the job runs.)
    reported = [entry for entry in shown if entry[2] != shown[0][2]]
    assert reported, "no progress was shown while the job ran"
    assert [value for value, _, _ in reported] == sorted(value for value, _, _ in reported)
    assert all(barFormat == "%p%" for _, barFormat, _ in reported)
    assert all(status.split(":")[0] in STAGE_TITLES.values() for _, _, status in reported), reported
    hierarchy = controller.logic.hierarchyForNode(parameters.hierarchyNode)
    assert parameters.level == max(0, (hierarchy.n_levels - 1) // 2)
    segments = parameters.previewSegmentation.GetSegmentation().GetNumberOfSegments()
    assert segments == int(hierarchy.n_clusters[parameters.level])
    state = controller.state()
    assert state.progress == 100 and state.levelMaximum == hierarchy.n_levels - 1 and not state.cancelEnabled

    nodes = scene.GetNumberOfNodes()
    parameters.epochs = 1000
    assert controller.segment() is True
    work_dir = controller.job.work_dir
    controller.cancel()
    assert controller.job is None and controller.state().status.startswith("Cancelled")
    assert not work_dir.exists() and scene.GetNumberOfNodes() == nodes
    assert find_hierarchy_nodes(scene, volume) == [parameters.hierarchyNode]


def test_the_preview_is_one_node_per_volume_and_made_again_when_removed(
    scene_and_volume,
):
    scene, volume = scene_and_volume
    logic = make_logic()
    hierarchyNode = logic.addHierarchyToScene(three_level_hierarchy(), volume)
    parameters = PanelParameters(inputVolume=volume, hierarchyNode=hierarchyNode)
    controller = controller_on(scene, parameters, logic)
    controller.refresh()
    first = parameters.previewSegmentation
    assert first.GetSegmentation().GetNumberOfSegments() == 8
    controller.chooseLevel(2)
    controller.refresh()
    assert parameters.previewSegmentation is first
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1

    scene.RemoveNode(first)
    parameters.previewSegmentation = None  # what the wrapper reads for a removed node
    controller.chooseLevel(1)
    controller.refresh()
    again = parameters.previewSegmentation
    assert again is not None and again.GetScene() is scene
    assert again.GetSegmentation().GetNumberOfSegments() == 4


def test_progress_text_shows_the_whole_job_the_stage_and_the_time_left():
    # The engine's whole-job lines: the bar is the job's, the status the stage, its message and the time left.
    assert progress_text("condense", 0.1, "pre-aggregating pixels into atoms", 0.734, 200.0) == (
        73,
        "%p%",
        "Condensation: pre-aggregating pixels into atoms (about 3 min left)",
    )
    assert progress_text("write", 1.0, "levels.png", 1.0, 0.0) == (100, "%p%", "Writing the results: levels.png")
    assert progress_text("embed", 0.2, "slice 1/5", 0.3, 12.0)[2] == "Embedding: slice 1/5 (less than a minute left)"
    # An engine without them: the stage's own bar, named in the bar.
    assert progress_text("train", 0.256, "epoch 1/4", None, None) == (26, "train: %p%", "Training: epoch 1/4")
    assert progress_text("s3net", 1.5, "", None, None) == (100, "s3net: %p%", "s3net")


def _finish(controller, timeout: float = 600) -> tuple[Any, list[str]]:
    """Poll the controller's job until it ends; (result, the status lines shown meanwhile)."""
    deadline = time.monotonic() + timeout
    statuses: list[str] = []
    result = None
    while result is None:
        assert time.monotonic() < deadline, "the background job did not finish"
        result = controller.poll()
        if result is None:
            statuses.append(controller.state().status)
        time.sleep(0.05)
    return result, statuses


def test_look_closer_adds_what_the_engine_finds_in_boxes_around_the_seed(tmp_path: Path):
    """Condensation keeps the self-trained encoder with the hierarchy; "Look closer" runs the engine's closer look
    (`cuts binarize --closer always`) in the background and appends its structure as one segment; Undo removes it."""
    from CUTSSegmentationJobs.engine import pipeline
    from CUTSSegmentationModuleLib.logic import ENCODER_ATTRIBUTE
    from CUTSSegmentationMRML import (
        LEVEL_TAG,
        VOXELS_TAG,
        segment_tag,
        segmentation_to_label_map,
        volume_node_to_image,
    )

    from CUTSSegmentationLib.evaluate.phantom import synthetic_phantom_3d
    from CUTSSegmentationLib.learn.modelfile import load_model

    scene = slicer.vtkMRMLScene()
    phantom, _truth = synthetic_phantom_3d(shape=(8, 40, 40), seed=1)
    volume = image_to_volume_node(scene, phantom, name="phantom")
    logic = make_logic()
    logic.modelsDirectory = str(tmp_path / "models")
    parameters = PanelParameters(inputVolume=volume, epochs=1, device="cpu")
    controller = controller_on(scene, parameters, logic)
    assert controller.segment() is True
    result, _ = _finish(controller)
    assert result.ok, result.message()
    encoder = parameters.hierarchyNode.GetAttribute(ENCODER_ATTRIBUTE)
    assert encoder and Path(encoder).parent == tmp_path / "models" and logic.encoderOf(parameters.hierarchyNode)
    assert not controller.state().lookCloserEnabled  # no seed yet

    seed = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    seed.AddControlPoint(*[float(v) for v in phantom.geometry.index_to_ras((20, 20, 4))])
    parameters.seedPoints = seed
    assert controller.state().lookCloserEnabled
    stages: list[str] = []
    shown = controller._onProgress
    controller._onProgress = lambda stage, *rest: (stages.append(stage), shown(stage, *rest))
    assert controller.lookCloser() is True and not controller.state().lookCloserEnabled  # one job at a time
    result, _ = _finish(controller)
    assert result.ok, result.message()
    assert "closer" in stages and STAGE_TITLES["closer"] == "Looking closer", stages

    segmentation = parameters.outputSegmentation
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 1
    segment = segmentation.GetSegmentation().GetNthSegment(0)
    assert segment_tag(segment, LEVEL_TAG) == "closer look"
    expected = pipeline().structure_at_click(
        logic.hierarchyForNode(parameters.hierarchyNode),
        (20, 20, 4),
        volume_node_to_image(volume),
        load_model(encoder),
        device="cpu",
        look_closer=True,
    )
    assert int(segment_tag(segment, VOXELS_TAG)) == expected.voxels > 0
    assert np.array_equal(segmentation_to_label_map(segmentation, volume) > 0, expected.mask)
    assert controller.undo() and segmentation.GetSegmentation().GetNumberOfSegments() == 0

    # "Add" with the automatic level (the default): the structure `cuts binarize --seed` keeps, in the background.
    hierarchy = logic.hierarchyForNode(parameters.hierarchyNode)
    image = volume_node_to_image(volume)
    assert parameters.automaticLevel and controller.addStructureAtSeed() is None
    assert not controller.state().addStructureEnabled  # one job at a time
    result, _ = _finish(controller)
    assert result.ok, result.message()
    segment = segmentation.GetSegmentation().GetNthSegment(0)
    assert segment.GetName() == "Structure (automatic level)" and segment_tag(segment, LEVEL_TAG) == "automatic level"
    expected = pipeline().structure_at_click(hierarchy, (20, 20, 4), image, load_model(encoder), device="cpu")
    assert int(segment_tag(segment, VOXELS_TAG)) == expected.voxels > 0
    assert np.array_equal(segmentation_to_label_map(segmentation, volume) > 0, expected.mask)
    assert controller.undo() and segmentation.GetSegmentation().GetNumberOfSegments() == 0

    parameters.hierarchyNode.RemoveAttribute(ENCODER_ATTRIBUTE)  # a hierarchy from before encoders were kept
    assert not controller.state().lookCloserEnabled
    assert controller.state().addStructureEnabled and controller.addStructureAtSeed() is None
    result, _ = _finish(controller)
    assert result.ok, result.message()
    without_encoder = pipeline().structure_at_click(hierarchy, (20, 20, 4), image)  # the hierarchy's own structure
    assert np.array_equal(segmentation_to_label_map(segmentation, volume) > 0, without_encoder.mask)

    parameters.automaticLevel = False  # the level shown, at once
    kept = controller.addStructureAtSeed()
    assert kept is not None and kept.level == parameters.level and controller.job is None
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 2
    parameters.inputVolume = None
    parameters.automaticLevel = True
    assert not controller.state().addStructureEnabled  # the automatic level reads the input's voxels
