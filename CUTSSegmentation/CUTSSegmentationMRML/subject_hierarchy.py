"""A result segmentation next to its volume: reference geometry and place in the subject hierarchy.

Slicer's DICOM SEG exporter takes the segmentation's referenced volume ("referenceImageGeometryRef") as the
source series and the study the segmentation sits in (the Data module's subject hierarchy) as the study
of the new series, so both are set here.
"""

from __future__ import annotations

from typing import Any

import slicer


def place_with_volume(segmentation_node: Any, volume_node: Any) -> None:
    """Reference the volume's geometry and move the segmentation under the volume's parent (its study)."""
    segmentation_node.SetNodeReferenceID("referenceImageGeometryRef", volume_node.GetID())
    scene = volume_node.GetScene()
    if scene is None:
        return
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if shNode is None:
        return
    volumeItem = shNode.GetItemByDataNode(volume_node)
    if not volumeItem:
        return
    parent = shNode.GetItemParent(volumeItem)
    segmentationItem = shNode.GetItemByDataNode(segmentation_node)
    if not segmentationItem:
        # The application's subject hierarchy plugins give every new node an item; a bare scene does not.
        shNode.CreateItem(parent, segmentation_node)
    elif shNode.GetItemParent(segmentationItem) != parent:
        shNode.SetItemParent(segmentationItem, parent)


def study_of(node: Any) -> int:
    """The subject hierarchy item a node sits under (0 without a scene or hierarchy)."""
    scene = node.GetScene()
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene) if scene is not None else None
    if shNode is None:
        return 0
    return int(shNode.GetItemParent(shNode.GetItemByDataNode(node)))
