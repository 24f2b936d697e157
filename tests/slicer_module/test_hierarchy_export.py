"""The hierarchy exported for Slicer users without this module, and Show 3D, on slicer-core's real MRML."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import slicer
from CUTSSegmentationModuleLib import SegmentationLogic
from CUTSSegmentationMRML import (
    merge_tree_rows,
    read_scene_bundle,
    segmentation_to_label_map,
    write_scene_bundle,
)
from slicer_testdata import three_level_hierarchy


def test_levels_reopen_as_a_sequence_of_segmentations_in_a_new_scene(scene_and_volume, tmp_path: Path):
    scene, volume = scene_and_volume
    hierarchy = three_level_hierarchy()
    logic = SegmentationLogic()
    logic.addHierarchyToScene(hierarchy, volume)
    sequence, browser, table = logic.exportHierarchy(hierarchy)
    assert browser.GetMasterSequenceNode() is sequence
    path = write_scene_bundle(scene, tmp_path / "levels.mrb")

    reopened = slicer.vtkMRMLScene()
    slicer.vtkSlicerSequencesLogic().SetMRMLScene(reopened)  # the Sequences module's node classes
    read_scene_bundle(reopened, path, tmp_path / "cache")
    sequence = reopened.GetFirstNodeByClass("vtkMRMLSequenceNode")
    volume = reopened.GetFirstNodeByName("input")
    assert sequence.GetIndexName() == "level" and sequence.GetNumberOfDataNodes() == hierarchy.n_levels
    for index in range(hierarchy.n_levels):
        frame = sequence.GetDataNodeAtValue(str(index))
        assert frame.GetSegmentation().GetNumberOfSegments() == hierarchy.n_clusters[index]
        np.testing.assert_array_equal(segmentation_to_label_map(frame, volume), hierarchy.level(index))
    assert reopened.GetFirstNodeByClass("vtkMRMLSequenceBrowserNode") is not None

    table = reopened.GetFirstNodeByName("CUTS merge tree")
    rows = merge_tree_rows(hierarchy)
    assert table.GetNumberOfRows() == len(rows) == sum(hierarchy.n_clusters)
    columns = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    assert columns == ["level", "label", "voxels", "parent", "persistence"]
    fine_1 = table.GetTable().GetRow(0)
    assert [fine_1.GetValue(c).ToInt() for c in range(5)] == [0, 1, 240, 1, 3]


def test_merge_tree_rows_name_each_cluster_and_the_one_it_merges_into():
    hierarchy = three_level_hierarchy()
    rows = merge_tree_rows(hierarchy)
    for level, label, voxels, parent, persistence in rows.tolist():
        region = hierarchy.level(level) == label
        assert voxels == int(region.sum())
        if level + 1 < hierarchy.n_levels:
            assert set(np.unique(hierarchy.level(level + 1)[region]).tolist()) == {parent}
        else:
            assert parent == 0
        assert persistence == sum(bool((hierarchy.level(i) == label).any()) for i in range(hierarchy.n_levels))


def test_show_3d_builds_surfaces_and_hides_them(scene_and_volume):
    _scene, volume = scene_and_volume
    hierarchy = three_level_hierarchy()
    logic = SegmentationLogic()
    logic.addHierarchyToScene(hierarchy, volume)
    preview = logic.previewSegmentation(volume)
    logic.pushLevel(hierarchy, 2, preview, volume)
    assert logic.showIn3D(preview)
    assert preview.GetSegmentation().ContainsRepresentation("Closed surface")
    segment = preview.GetSegmentation().GetNthSegment(0)
    surface = segment.GetRepresentation("Closed surface")
    assert surface.GetNumberOfPoints() > 0 and preview.GetDisplayNode().GetVisibility3D()
    assert logic.showIn3D(preview, False)
    assert not preview.GetSegmentation().ContainsRepresentation("Closed surface")
    assert not preview.GetDisplayNode().GetVisibility3D()
