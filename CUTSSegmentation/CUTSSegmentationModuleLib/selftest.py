"""The module's self-test checks, on any MRML scene: Slicer's "Reload and Test" and pytest run the same code."""

from __future__ import annotations

from typing import Any

import numpy as np
import vtk
from CUTSSegmentationJobs.engine import Geometry, Hierarchy, synthetic_image_2d
from CUTSSegmentationMRML import find_hierarchy_nodes, image_to_volume_node


def phantom_volume(scene: Any, size: int = 64) -> tuple[Any, np.ndarray]:
    """A small synthetic image as a volume node, and its true labels."""
    image, truth = synthetic_image_2d(size=size, seed=0)
    return image_to_volume_node(scene, image, name="CUTS phantom"), truth


def check_push_level(logic: Any, scene: Any) -> None:
    """Levels go into the segmentation and a seed keeps one structure (no torch needed)."""
    volumeNode, truth = phantom_volume(scene)
    fine = truth.astype(np.uint16) + 1
    coarse = np.where(fine > fine.min(), 2, 1).astype(np.uint16)  # background vs the rest
    hierarchy = Hierarchy(
        levels=np.stack([fine, coarse]),
        n_clusters=[len(np.unique(fine)), 2],
        level_steps=[0, 1],
        atom_map=fine.astype(np.uint32),
        merge_tree=np.zeros((2, int(fine.max()) + 1), dtype=np.uint32),
        geometry=Geometry(),
        is_2d=True,
    )
    segmentationNode = logic.pushLevel(hierarchy, 0, referenceVolumeNode=volumeNode)
    assert segmentationNode.GetSegmentation().GetNumberOfSegments() == len(np.unique(fine))
    logic.pushLevel(hierarchy, 1, segmentationNode, volumeNode)
    assert segmentationNode.GetSegmentation().GetNumberOfSegments() == 2

    seedNode = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    ys, xs = np.nonzero(fine == fine.max())
    ras = [0.0, 0.0, 0.0, 1.0]
    ijkToRas = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(ijkToRas)
    ijkToRas.MultiplyPoint([float(xs[len(xs) // 2]), float(ys[len(ys) // 2]), 0.0, 1.0], ras)
    seedNode.AddControlPoint(ras[:3])
    logic.binarizeAtSeed(hierarchy, seedNode, 0, segmentationNode, volumeNode)
    assert segmentationNode.GetSegmentation().GetNumberOfSegments() == 1

    # Added structures come on top of the segments there; Undo takes the last one back.
    for level in (0, 1):
        logic.addStructure(hierarchy, seedNode, segmentationNode, level, volumeNode)
    assert segmentationNode.GetSegmentation().GetNumberOfSegments() == 3
    assert logic.undo(segmentationNode)
    assert segmentationNode.GetSegmentation().GetNumberOfSegments() == 2


def check_end_to_end(logic: Any, scene: Any) -> None:
    """Train briefly and condense in this process, then show a level (needs torch)."""
    volumeNode, _truth = phantom_volume(scene)
    segmentationNode = logic.createSegmentationNode(volumeNode)
    hierarchy = logic.segment(volumeNode, epochs=2, device="cpu", segmentationNode=segmentationNode)
    assert hierarchy.n_levels >= 1
    assert segmentationNode.GetSegmentation().GetNumberOfSegments() > 0
    assert len(find_hierarchy_nodes(scene, volumeNode)) == 1
