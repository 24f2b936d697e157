"""The hierarchy in forms Slicer shows without this module: a sequence of segmentations and a table.

- The levels become a sequence (Sequences module) of segmentation nodes, indexed by level, with a sequence
  browser: Slicer's sequence toolbar then steps through the levels as the granularity slider does.
- The merge tree becomes a table node: one row per cluster of each level, with the cluster it merges into
  at the next coarser level, its size and its persistence.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import slicer
import vtk
from CUTSSegmentationJobs.engine import Hierarchy

from .bridge import (
    ensure_segmentation_converters,
    present_labels,
    push_level_to_segmentation,
)
from .levels import segment_names
from .subject_hierarchy import place_with_volume

#: Columns of the merge-tree table, in order.
MERGE_TREE_COLUMNS = ("level", "label", "voxels", "parent", "persistence")
LEVEL_INDEX_NAME = "level"


def levels_to_sequence(hierarchy: Hierarchy, volume_node: Any, name: str = "CUTS levels") -> tuple[Any, Any]:
    """A sequence node holding one segmentation per level (index value = level) and a browser over it.

    Returns (sequence node, sequence browser node). The browser's proxy segmentation is placed next to
    the volume in the subject hierarchy.
    """
    scene = volume_node.GetScene()
    ensure_segmentation_converters(scene)
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName(LEVEL_INDEX_NAME)
    sequence.SetIndexUnit("")
    sequence.SetIndexType(slicer.vtkMRMLSequenceNode.NumericIndex)
    for index in range(hierarchy.n_levels):
        frame = slicer.vtkMRMLSegmentationNode()
        labels = hierarchy.level(index).reshape(_volume_labels_shape(hierarchy, volume_node))
        push_level_to_segmentation(labels, frame, volume_node, names=segment_names(labels, index))
        frame.SetName(f"{name} {index}")
        sequence.SetDataNodeAtValue(frame, str(index))
    logic = slicer.vtkSlicerSequencesLogic()
    logic.SetMRMLScene(scene)  # registers the browser node class, as the Sequences module does in Slicer
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    logic.UpdateProxyNodesFromSequences(browser)
    proxy = browser.GetProxyNode(sequence)
    if proxy is not None:
        proxy.SetName(name)
        place_with_volume(proxy, volume_node)
    return sequence, browser


def _volume_labels_shape(hierarchy: Hierarchy, volume_node: Any) -> tuple[int, ...]:
    image = volume_node.GetImageData()
    x, y, z = image.GetDimensions()
    return (z, y, x)


def merge_tree_rows(hierarchy: Hierarchy) -> np.ndarray:
    """(rows, 5) int64: level, label, voxels, parent label at the next coarser level (0: none), persistence."""
    levels = hierarchy.levels.reshape(hierarchy.n_levels, -1)
    persistence: dict[int, int] = {}
    present = [present_labels(level) for level in levels]
    for labels in present:
        for label in labels.tolist():
            persistence[label] = persistence.get(label, 0) + 1
    rows = []
    for index, level in enumerate(levels):
        counts = np.bincount(level, minlength=int(level.max(initial=0)) + 1)
        labels = present[index]
        if index + 1 < hierarchy.n_levels:
            _, first = np.unique(level, return_index=True)
            first_of = dict(zip(np.unique(level).tolist(), first.tolist()))
            parents = [int(levels[index + 1][first_of[int(label)]]) for label in labels]
        else:
            parents = [0] * len(labels)
        for label, parent in zip(labels.tolist(), parents):
            rows.append((index, label, int(counts[label]), parent, persistence[label]))
    return np.asarray(rows, dtype=np.int64).reshape(-1, len(MERGE_TREE_COLUMNS))


def merge_tree_table(hierarchy: Hierarchy, scene: Any, name: str = "CUTS merge tree") -> Any:
    """A table node of `merge_tree_rows`, one integer column per field."""
    rows = merge_tree_rows(hierarchy)
    table = vtk.vtkTable()
    for column, title in enumerate(MERGE_TREE_COLUMNS):
        array = vtk.vtkIntArray()
        array.SetName(title)
        array.SetNumberOfValues(len(rows))
        for row, value in enumerate(rows[:, column].tolist()):
            array.SetValue(row, value)
        table.AddColumn(array)
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    node.SetAndObserveTable(table)
    return node
