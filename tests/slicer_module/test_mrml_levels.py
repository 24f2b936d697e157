"""CUTSSegmentationMRML.levels: level choice, panel text, levels and seed structures into segmentation nodes."""

from __future__ import annotations

import pytest
from CUTSSegmentationJobs.engine import InputError
from CUTSSegmentationMRML import (
    default_level,
    keep_structure_at_seed,
    level_description,
    level_label_map,
    parse_level,
    push_level,
    reference_volume_of,
    seed_voxel,
    volume_node_to_image,
)
from slicer_testdata import three_level_hierarchy


def test_levels_parse_describe_and_push(scene_and_volume):
    scene, volume = scene_and_volume
    hierarchy = three_level_hierarchy()
    assert parse_level(None) == "persistent" == parse_level(" Persistent ")
    assert parse_level("2") == 2 and parse_level(-1) == -1
    with pytest.raises(InputError, match="integer level index"):
        parse_level("coarse")
    with pytest.raises(InputError, match="out of range"):
        level_label_map(hierarchy, 3)
    assert default_level(hierarchy) == 1
    assert level_description(hierarchy, 0) == "Level 0 of 2 (0 = finest): 8 clusters"
    assert level_description(hierarchy, "persistent") == "Persistent structures: 2"

    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    for level, count in ((0, 8), (1, 4), (-1, 2), ("persistent", 2)):
        push_level(hierarchy, level, segmentation, volume)
        segments = segmentation.GetSegmentation()
        assert segments.GetNumberOfSegments() == count
    assert segments.GetNthSegment(0).GetName() == "Structure 1"
    push_level(hierarchy, 0, segmentation, volume)
    assert segmentation.GetSegmentation().GetNthSegment(0).GetName() == "Cluster 1"
    assert reference_volume_of(segmentation) is volume


def test_keep_structure_at_seed(scene_and_volume):
    scene, volume = scene_and_volume
    hierarchy = three_level_hierarchy()
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    label = keep_structure_at_seed(hierarchy, 1, (20, 15, 2), segmentation, volume)
    assert label == int(hierarchy.level(1)[2, 15, 20])
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 1
    assert segmentation.GetSegmentation().GetNthSegment(0).GetName() == f"Cluster {label}"
    with pytest.raises(InputError, match="unlabelled"):
        keep_structure_at_seed(hierarchy, "persistent", (20, 15, 2), segmentation, volume)
    with pytest.raises(InputError, match="outside"):
        keep_structure_at_seed(hierarchy, 0, (99, 0, 0), segmentation, volume)

    # A markups seed is mapped through the volume's oblique geometry to the voxel it lies in.
    markups = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    ras = volume_node_to_image(volume).geometry.index_to_ras((5, 3, 1))
    markups.AddControlPoint(*[float(v) for v in ras])
    assert seed_voxel(markups, volume) == (5, 3, 1)
    assert seed_voxel((4.6, 2.8), volume) == (5, 3, 0)
