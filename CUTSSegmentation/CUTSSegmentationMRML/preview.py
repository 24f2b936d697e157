"""The segmentation that previews hierarchy levels: owned by the module, never the user's.

Moving the granularity slider replaces every segment of the preview; a user's segmentation only ever
receives structures added on purpose (`kept_structures`). The preview is marked with the module's role
attribute, so it is recognisable in a saved scene and never offered as an input.
"""

from __future__ import annotations

from typing import Any

from .bridge import ensure_segmentation_converters
from .scene_store import ROLE

ROLE_PREVIEW = "preview"
PREVIEW_NAME = "CUTS preview"


def is_preview(node: Any) -> bool:
    """Whether a node is a module-owned preview segmentation."""
    return node is not None and node.GetAttribute(ROLE) == ROLE_PREVIEW


def preview_segmentation(volume_node: Any, current: Any = None) -> Any:
    """The preview segmentation for a volume: `current` when it is one, else the scene's, else a new one."""
    if is_preview(current) and current.GetScene() is not None:
        return current
    scene = volume_node.GetScene()
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLSegmentationNode")
        if is_preview(node) and node.GetNodeReferenceID("referenceImageGeometryRef") == volume_node.GetID():
            return node
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", PREVIEW_NAME)
    node.SetAttribute(ROLE, ROLE_PREVIEW)
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    return node


def show_in_3d(segmentation_node: Any, visible: bool = True) -> bool:
    """Show (or hide) the segments as surfaces in the 3D view, as the Segment Editor's "Show 3D" does."""
    if segmentation_node is None:
        return False
    if visible:
        ensure_segmentation_converters(segmentation_node.GetScene())
        if not segmentation_node.CreateClosedSurfaceRepresentation():
            return False
    else:
        segmentation_node.RemoveClosedSurfaceRepresentation()
    display = segmentation_node.GetDisplayNode()
    if display is None and segmentation_node.GetScene() is not None:
        segmentation_node.CreateDefaultDisplayNodes()
        display = segmentation_node.GetDisplayNode()
    if display is not None:
        display.SetVisibility3D(visible)
    return True
