"""The module's parameters, kept in the scene by Slicer's parameter node wrapper (Slicer only).

Each field is written into a new parameter node with its default, so every default must be a value its
serializer accepts: a node field that may be empty is `Optional[...]` (a Union of node types takes its
first member's default, None, which only a None member of the Union can serialize).
"""

from typing import Annotated, Optional, Union

from CUTSSegmentationJobs import DEVICE_CHOICES
from slicer import (
    vtkMRMLMarkupsFiducialNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
    vtkMRMLVectorVolumeNode,
)
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

#: The largest level index a parameter node holds (hierarchies keep far fewer levels).
MAX_LEVEL = 255
#: The most training epochs the panel offers; 0 means "auto".
MAX_EPOCHS = 1000


@parameterNodeWrapper
class CUTSSegmentationParameterNode:
    """The parameters of the module, saved with the scene.

    inputVolume - The scalar or RGB vector volume to segment (its grid is the grid of every result).
    secondVolume, thirdVolume - Optional other sequences of the same case (scalar volumes on inputVolume's grid),
        stacked after it as channels. Two fields, not a list: Slicer's wrapper binds no widget to a list of nodes.
        (A vector volume, a subclass, passes the wrapper; the controller refuses it among several sequences.)
    epochs - Training epochs; 0 means "auto" (the engine picks for the device).
    device - "auto", "cpu", "cuda" or "mps" (cuda and mps fall back to the CPU without that GPU).
    modelPath - The encoder (.safetensors) used by condensation; empty: train on the input first.
    hierarchyNode - The table node holding the hierarchy computed for inputVolume (see CUTSSegmentationMRML).
    level - The hierarchy level shown (0 = finest); the panel keeps it within the hierarchy's levels.
    showPersistent - Show the persistent-structures map instead of a level.
    automaticLevel - "Add to segmentation" keeps the structure under the seed at its own level, chosen by the
        engine and grown and snapped to the image's edge, or looked at closer where the hierarchy is too coarse
        (`cuts binarize --seed`, in the background); off: the structure at the level (or map) shown, at once.
    seedPoints - Markups point list whose first point selects the structure to keep.
    outputSegmentation - The user's segmentation that "Add to segmentation" appends structures to.
    previewSegmentation - The module-owned segmentation that shows the chosen level (never the user's).
    """

    # typing.Optional/Union, not "X | None": the wrapper of Slicer 5.8 (Python 3.9) reads typing.Union only.
    inputVolume: Optional[Union[vtkMRMLScalarVolumeNode, vtkMRMLVectorVolumeNode]]
    secondVolume: Optional[vtkMRMLScalarVolumeNode]
    thirdVolume: Optional[vtkMRMLScalarVolumeNode]
    epochs: Annotated[int, WithinRange(0, MAX_EPOCHS)] = 0
    device: Annotated[str, Choice(list(DEVICE_CHOICES))] = "auto"
    modelPath: str = ""
    hierarchyNode: vtkMRMLTableNode
    level: Annotated[int, WithinRange(0, MAX_LEVEL)] = 0
    showPersistent: bool = False
    automaticLevel: bool = True
    seedPoints: vtkMRMLMarkupsFiducialNode
    outputSegmentation: vtkMRMLSegmentationNode
    previewSegmentation: vtkMRMLSegmentationNode
