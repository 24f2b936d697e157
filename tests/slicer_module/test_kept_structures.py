"""Preview levels, then add structures to a user's segmentation: on slicer-core's real MRML.

The user's own segments are made with Slicer's own calls (AddEmptySegment + SetBinaryLabelmapToSegment, what
`slicer.util.updateSegmentBinaryLabelmapFromArray` does) and compared voxel by voxel, with their names,
colours and tags, before and after every step.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import slicer
import slicerio
from CUTSSegmentationJobs import Accelerators
from CUTSSegmentationJobs.engine import Hierarchy, InputError, LevelStack
from CUTSSegmentationModuleLib import PanelController, SegmentationLogic
from CUTSSegmentationMRML import (
    LABEL_TAG,
    LEVEL_TAG,
    PERSISTENCE_TAG,
    VOXELS_TAG,
    ensure_segmentation_converters,
    export_segmentation,
    image_to_volume_node,
    is_preview,
    segment_tag,
    study_of,
)
from CUTSSegmentationMRML.bridge import _array_of_image, ijk_to_ras_of
from CUTSSegmentationMRML.kept_structures import persistence_of
from slicer_testdata import (
    add_user_segment,
    image_data,
    oblique_geometry,
    three_level_hierarchy,
)
from test_panel_controller import PanelParameters

#: (seed x, y, z; level shown; voxels of the region): three disjoint regions of the three-level hierarchy.
ADDITIONS = [
    ((1, 1, 0), 0, 6 * 10 * 4),
    ((20, 1, 0), 1, 12 * 10 * 4),
    ((1, 15, 0), 2, 24 * 10 * 4),
]


def segment_snapshot(segmentation_node, segment_id: str) -> tuple:
    """Everything a user sees of one segment: name, colour, tags, and its voxels (bytes, with their extent)."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    image = slicer.vtkOrientedImageData()
    slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
        segmentation_node, segment_id, image
    )
    tags = {key: segment_tag(segment, key) for key in (LABEL_TAG, LEVEL_TAG, "UserTag")}
    voxels = _array_of_image(image)[..., 0].astype(bool)
    return (
        segment.GetName(),
        tuple(round(c, 6) for c in segment.GetColor()),
        tuple(sorted(tags.items(), key=lambda kv: kv[0])),
        tuple(image.GetExtent()),
        voxels.tobytes(),
    )


def segmentation_snapshot(segmentation_node) -> dict:
    segmentation = segmentation_node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    return {segment_id: segment_snapshot(segmentation_node, segment_id) for segment_id in ids}


def place_seed(markups, volume, xyz) -> None:
    ras = ijk_to_ras_of(volume) @ np.array([*xyz, 1.0])
    markups.RemoveAllControlPoints()
    markups.AddControlPoint(float(ras[0]), float(ras[1]), float(ras[2]))


@pytest.fixture()
def study_scene():
    """A volume under patient/study in the subject hierarchy, its hierarchy, and a user's 2-segment segmentation."""
    scene = slicer.vtkMRMLScene()
    rng = np.random.default_rng(0)
    volume = image_to_volume_node(scene, image_data(rng.integers(0, 200, size=(4, 20, 24, 1)), oblique_geometry()))
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = shNode.CreateSubjectItem(shNode.GetSceneItemID(), "Patient 1")
    study = shNode.CreateStudyItem(patient, "MR study")
    shNode.CreateItem(study, volume)  # the application's subject hierarchy plugins do this on NodeAdded
    ensure_segmentation_converters(scene)  # the application's Segmentations module does this at startup
    user = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "My segmentation")
    user.CreateDefaultDisplayNodes()
    user.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    _z, y, x = np.mgrid[0:4, 0:20, 0:24]
    add_user_segment(user, volume, "lesion", "Lesion", (x - 8) ** 2 + (y - 9) ** 2 < 16)
    add_user_segment(user, volume, "cord", "Cord", (x > 15) & (y > 12))
    user.GetSegmentation().GetSegment("cord").SetTag("UserTag", "mine")
    return scene, volume, study, user


def test_every_level_previewed_then_three_structures_added_and_undone(study_scene, tmp_path: Path):
    scene, volume, _study, user = study_scene
    hierarchy = three_level_hierarchy()
    logic = SegmentationLogic()
    markups = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seed")
    parameters = PanelParameters(
        inputVolume=volume,
        hierarchyNode=logic.addHierarchyToScene(hierarchy, volume),
        seedPoints=markups,
        outputSegmentation=user,
        automaticLevel=False,  # each structure at the level shown
    )
    controller = PanelController(logic, Accelerators())
    controller.setParameters(parameters)
    users_own = segmentation_snapshot(user)
    assert list(users_own) == ["lesion", "cord"] and users_own["cord"][4].count(1) > 0

    for level in range(hierarchy.n_levels):
        controller.chooseLevel(level)
        controller.refresh()
        preview = parameters.previewSegmentation
        assert is_preview(preview) and preview is not user
        assert preview.GetSegmentation().GetNumberOfSegments() == hierarchy.n_clusters[level]
        assert segmentation_snapshot(user) == users_own, "previewing a level touched the user's segmentation"
    assert not controller.state().undoEnabled

    states = [segmentation_snapshot(user)]
    for seed, level, voxels in ADDITIONS:
        place_seed(markups, volume, seed)
        controller.chooseLevel(level)
        controller.refresh()
        kept = controller.addStructureAtSeed()
        assert (kept.level, kept.voxels) == (level, voxels)
        states.append(segmentation_snapshot(user))

    now = segmentation_snapshot(user)
    assert len(now) == 5
    for segment_id in users_own:
        assert now[segment_id] == users_own[segment_id], f"user segment {segment_id} changed"
    added = [segment_id for segment_id in now if segment_id not in users_own]
    segmentation = user.GetSegmentation()
    labels = [hierarchy.level(level)[seed[2], seed[1], seed[0]] for seed, level, _ in ADDITIONS]
    stack = LevelStack.from_merge_tree(hierarchy.atom_map, hierarchy.merge_tree, hierarchy.level_steps)
    as_stack = dataclasses.replace(hierarchy, levels=stack)
    for segment_id, (_seed, level, voxels), label in zip(added, ADDITIONS, labels):
        segment = segmentation.GetSegment(segment_id)
        assert segment.GetName() == f"Structure {label} (level {level})"
        assert segment_tag(segment, LEVEL_TAG) == str(level) and segment_tag(segment, LABEL_TAG) == str(label)
        assert segment_tag(segment, VOXELS_TAG) == str(voxels)
        persistence = sum(bool((hierarchy.level(i) == label).any()) for i in range(hierarchy.n_levels))
        assert segment_tag(segment, PERSISTENCE_TAG) == str(persistence)
        assert persistence_of(as_stack, label) == persistence  # from the stack's table, no level built
        mask = np.frombuffer(now[segment_id][4], dtype=bool)
        assert mask.sum() == voxels  # each structure is its own layer, exactly its region
    assert controller.state().undoEnabled

    for expected in reversed(states[:-1]):
        assert controller.undo()
        assert segmentation_snapshot(user) == expected
    assert segmentation_snapshot(user) == users_own

    # The file a user exports holds the same segments: checked with slicerio, not with Slicer.
    for seed, level, _ in ADDITIONS:
        place_seed(markups, volume, seed)
        controller.chooseLevel(level)
        controller.refresh()
        controller.addStructureAtSeed()
    path = export_segmentation(user, tmp_path / "result.seg.nrrd")
    read = slicerio.read_segmentation(str(path))
    by_name = {s["name"]: s for s in read["segments"]}
    assert {"Lesion", "Cord"} <= set(by_name) and len(by_name) == 5
    for (_seed, level, voxels), label in zip(ADDITIONS, labels):
        found = by_name[f"Structure {label} (level {level})"]
        tags = found.get("tags", {})
        assert tags.get(LEVEL_TAG) == str(level) and tags.get(VOXELS_TAG) == str(voxels)
        assert slicerio.extract_segments(read, [(found["name"], 1)])["voxels"].sum() == voxels
    assert by_name["Cord"].get("tags", {}).get("UserTag") == "mine"


def test_a_new_output_references_the_volume_and_sits_in_its_study(study_scene):
    _scene, volume, study, _user = study_scene
    logic = SegmentationLogic()
    hierarchy = three_level_hierarchy()
    logic.addHierarchyToScene(hierarchy, volume)
    kept = logic.addStructure(hierarchy, (7, 1, 0), level="persistent", referenceVolumeNode=volume)
    assert (kept.level, kept.label, kept.voxels) == ("persistent", 2, 6 * 10 * 4)
    output = kept.segmentation_node
    assert output.GetSegmentation().GetNumberOfSegments() == 1
    assert output.GetNodeReference("referenceImageGeometryRef") is volume
    assert study_of(output) == study
    assert not is_preview(output)
    with pytest.raises(InputError, match="outside every persistent structure"):
        logic.addStructure(hierarchy, (20, 15, 3), output, level="persistent")
    assert output.GetSegmentation().GetNumberOfSegments() == 1


def test_the_engine_chooses_the_level_when_none_is_given(study_scene):
    _scene, volume, _study, user = study_scene
    logic = SegmentationLogic()
    hierarchy = three_level_hierarchy()
    logic.addHierarchyToScene(hierarchy, volume)
    kept = logic.addStructure(hierarchy, (1, 1, 0), user)
    assert isinstance(kept.level, int) and 0 <= kept.level < hierarchy.n_levels
    region = hierarchy.level(kept.level) == kept.label
    assert 0 < kept.voxels <= int(region.sum())
    assert logic.undo(user) and user.GetSegmentation().GetNumberOfSegments() == 2


def test_a_segmentation_edited_as_surfaces_is_refused_and_left_alone(study_scene):
    _scene, volume, _study, user = study_scene
    logic = SegmentationLogic()
    hierarchy = three_level_hierarchy()
    logic.addHierarchyToScene(hierarchy, volume)
    assert user.CreateClosedSurfaceRepresentation()
    user.GetSegmentation().SetSourceRepresentationName("Closed surface")
    before = user.GetSegmentation().GetNumberOfSegments()
    with pytest.raises(InputError, match="source representation"):
        logic.addStructure(hierarchy, (1, 1, 0), user, level=0)
    assert user.GetSegmentation().GetNumberOfSegments() == before
    assert not logic.canUndo(user)


def test_the_engine_level_ends_at_the_volumes_edge(study_scene):
    """A bright block whose region under the seed next merges with a dim one (2x, no salient growth), then
    with everything (4x): region sizes keep the two blocks; the volume's voxels keep the bright one."""
    scene, _volume, _study, user = study_scene
    three = three_level_hierarchy()
    levels = three.levels.copy()
    levels[2] = 1  # the coarsest level: one region
    hierarchy = Hierarchy(
        levels=levels,
        n_clusters=[8, 4, 1],
        level_steps=[0, 1, 2],
        atom_map=three.atom_map,
        merge_tree=np.stack([np.arange(8), np.arange(8) // 2, np.zeros(8)]).astype(np.uint32),
        persistent=None,
        geometry=three.geometry,
        is_2d=False,
    )
    block = levels[0] == 1
    rng = np.random.default_rng(1)
    voxels = np.where(block, 200.0, 50.0) + rng.normal(0.0, 5.0, block.shape)
    edged = image_to_volume_node(scene, image_data(voxels[..., None], oblique_geometry()))
    flat = image_to_volume_node(scene, image_data(rng.normal(100.0, 5.0, (*block.shape, 1)), oblique_geometry()))
    logic = SegmentationLogic()
    on_flat = logic.addStructure(hierarchy, (1, 1, 0), user, referenceVolumeNode=flat)
    on_edge = logic.addStructure(hierarchy, (1, 1, 0), user, referenceVolumeNode=edged)
    assert (on_flat.level, on_flat.voxels) == (1, 2 * int(block.sum()))
    assert (on_edge.level, on_edge.voxels) == (0, int(block.sum()))


def test_the_kept_structure_grows_to_the_edge_of_a_real_ct(tmp_path: Path):
    """The spleen of a real CT, with a hierarchy whose region stops two voxels short of its rim: the segment
    the panel adds is the region grown back to the spleen's outline (`edge_growth`, `edge_snap`), on the volume's grid."""
    import sys

    from scipy import ndimage as ndi

    from CUTSSegmentationLib.condense.edge_growth import grow_to_edge
    from CUTSSegmentationLib.condense.edge_snap import snap_outward
    from CUTSSegmentationLib.io.reading import read_image

    benchmarks = Path(__file__).resolve().parents[2] / "benchmarks"
    sys.path.insert(0, str(benchmarks))
    try:
        from volume_cases import load_reference, select_cases, volumes_dir
        from volume_engine import innermost_point
    finally:
        sys.path.remove(str(benchmarks))
    case = select_cases(["spleen2-ct-spleen"])[0]
    image = read_image(case.paths(volumes_dir())[0])
    truth = load_reference(case, volumes_dir()).astype(bool)
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = ndi.generate_binary_structure(2, 1)
    region = ndi.binary_erosion(truth, in_plane, iterations=2)
    levels = np.stack([np.where(region, 1, 2), np.ones(truth.shape)]).astype(np.uint16)
    hierarchy = Hierarchy(
        levels=levels,
        n_clusters=[2, 1],
        level_steps=[0, 1],
        atom_map=(levels[0] - 1).astype(np.uint32),
        merge_tree=np.array([[0, 1], [0, 0]], dtype=np.uint32),
        persistent=None,
        geometry=image.geometry,
        is_2d=False,
    )
    scene = slicer.vtkMRMLScene()
    volume = image_to_volume_node(scene, image)
    ensure_segmentation_converters(scene)
    user = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Spleen")
    user.CreateDefaultDisplayNodes()
    user.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    intensities = image.array.reshape(truth.shape)
    grown, _reach = grow_to_edge(region, intensities, image.geometry.spacing)
    grown = snap_outward(grown, intensities, image.geometry.spacing)
    assert int(grown.sum()) > int(region.sum())
    kept = SegmentationLogic().addStructure(
        hierarchy, innermost_point(truth, image.geometry.spacing), user, referenceVolumeNode=volume
    )
    assert kept.level == 0 and kept.voxels == int(grown.sum())
    segment = slicer.vtkOrientedImageData()
    slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(user, kept.segment_id, segment)
    assert int(np.count_nonzero(_array_of_image(segment))) == int(grown.sum())
