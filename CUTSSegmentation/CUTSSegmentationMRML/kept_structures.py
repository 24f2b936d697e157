"""Structures kept from a hierarchy: appended to a user's segmentation as named, tagged segments.

"Add to segmentation" never replaces or edits a segment that is already there: the new structure is a
segment of its own (its own binary labelmap layer), added after an undo checkpoint taken with Slicer's
`vtkSegmentationHistory`, the mechanism the Segment Editor uses (vtkSlicerSegmentEditorLogic saves the
segmentation's state before each change and restores it on Undo). Each kept segment records where it came
from in segment tags: the level (or "persistent"), the label at that level, its persistence (the number of
levels in which that label exists) and its voxel count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
import slicer
import vtk
from CUTSSegmentationJobs.engine import Hierarchy, InputError, LevelStack, binarize_at_seed
from CUTSSegmentationJobs.engine import structure_at_seed as engine_structure_at_seed

from .bridge import (
    LABEL_TAG,
    _array_of_image,
    _numpy_to_matrix,
    _set_image_from_array,
    _set_source_representation_to_labelmap,
    ensure_segmentation_converters,
    ijk_to_ras_of,
    volume_shape,
)
from .levels import PERSISTENT, level_label_map, parse_level
from .palette import label_colors

#: Segment tags of a kept structure (next to CUTS.Label, the label it had at its level).
LEVEL_TAG = "CUTS.Level"
PERSISTENCE_TAG = "CUTS.Persistence"
VOXELS_TAG = "CUTS.Voxels"
#: Segment ids of kept structures start with this; the level previews use "cuts_<label>".
KEPT_ID_PREFIX = "cuts_kept_"

_BINARY_LABELMAP = "Binary labelmap"
LevelChoice = Optional[Union[int, str]]


@dataclass(frozen=True)
class KeptStructure:
    """A structure added to a segmentation: its segment and where in the hierarchy it came from."""

    segmentation_node: Any
    segment_id: str
    name: str
    level: int | str
    label: int
    persistence: int
    voxels: int


@dataclass(frozen=True)
class StructureChoice:
    """The structure under a seed: its mask (Z, Y, X), the level it was taken from and its label there."""

    mask: np.ndarray
    level: int | str
    label: int


def _seed_in_bounds(seed_xyz: Sequence[float], shape: tuple[int, ...]) -> tuple[int, int, int]:
    x, y, z = (int(np.floor(float(v) + 0.5)) for v in (list(seed_xyz) + [0.0])[:3])
    if not (0 <= z < shape[0] and 0 <= y < shape[1] and 0 <= x < shape[2]):
        raise InputError(f"seed voxel ({x}, {y}, {z}) lies outside the image of shape {shape}")
    return x, y, z


def _levels_zyx(hierarchy: Hierarchy) -> Any:
    """The hierarchy's levels as (L, Z, Y, X): a 2D hierarchy's as one slice."""
    levels = hierarchy.levels
    return levels.reshape(levels.shape[0], 1, *levels.shape[1:]) if levels.ndim == 3 else levels


def choose_structure(
    hierarchy: Hierarchy, seed_xyz: Sequence[float], level: LevelChoice = None, image: Optional[np.ndarray] = None
) -> StructureChoice:
    """The structure under the seed voxel (x, y, z).

    `level` None lets the engine choose the level (the connected region under the seed, kept just before
    its first salient growth, or a finer one whose boundary is an edge in `image`, the volume's (Z, Y, X[, C])
    voxels) and grow the region out to that edge; an index takes the connected region at that level;
    "persistent" the structure of the persistent map. An engine without `structure_at_seed` keeps every voxel
    of the seed's label (at the middle level when none is given).
    """
    volume = _levels_zyx(hierarchy)
    x, y, z = _seed_in_bounds(seed_xyz, volume.shape[1:])
    if level is not None and parse_level(level) == PERSISTENT:
        labels = level_label_map(hierarchy, PERSISTENT).reshape(volume.shape[1:])
        label = int(labels[z, y, x])
        if label == 0:
            raise InputError("the seed lies outside every persistent structure: choose a level instead")
        return StructureChoice(labels == label, PERSISTENT, label)
    index = None if level is None else int(parse_level(level)) % hierarchy.n_levels
    if engine_structure_at_seed is not None:
        edges = image if index is None and image is not None and image.shape[:3] == volume.shape[1:] else None
        found = engine_structure_at_seed(
            volume, (x, y, z), level=index, image=edges, spacing_xyz=hierarchy.geometry.spacing
        )
        index = int(found.level) % hierarchy.n_levels
        mask = np.asarray(found.mask, dtype=bool).reshape(volume.shape[1:])
    else:
        index = max(0, (hierarchy.n_levels - 1) // 2) if index is None else index
        mask = binarize_at_seed(volume[index], (x, y, z))
    return StructureChoice(mask, index, int(volume[index, z, y, x]))


def _voxels(volume_node: Any) -> Optional[np.ndarray]:
    """(Z, Y, X, C) view of a volume node's voxels; None when it has none."""
    image = volume_node.GetImageData() if volume_node is not None else None
    if image is None or image.GetPointData().GetScalars() is None:
        return None
    return _array_of_image(image)


def persistence_of(hierarchy: Hierarchy, label: int) -> int:
    """How many levels of the hierarchy hold `label` (the engine's persistence of a structure).

    A hierarchy whose levels are a `LevelStack` answers from its (levels, atoms) table: no level is built.
    """
    if isinstance(hierarchy.levels, LevelStack):
        return int(hierarchy.levels.levels_holding(int(label)).sum())
    return int(sum(bool(np.any(hierarchy.level(i) == label)) for i in range(hierarchy.n_levels)))


def default_structure_name(level: int | str, label: int) -> str:
    """ "Structure 7 (level 3)" or "Structure 7 (persistent)": readable, and unique per level and label."""
    where = "persistent" if level == PERSISTENT else f"level {level}"
    return f"Structure {label} ({where})"


def _unique_segment_id(segmentation: Any, level: int | str, label: int) -> str:
    base = f"{KEPT_ID_PREFIX}{'p' if level == PERSISTENT else level}_{label}"
    candidate, number = base, 1
    while segmentation.GetSegment(candidate) is not None:
        number += 1
        candidate = f"{base}_{number}"
    return candidate


def _check_same_frame(segmentation_node: Any, reference_volume_node: Any) -> None:
    """A segment's voxels are placed with the volume's IJK -> RAS; both nodes must sit under one transform."""
    has_segments = segmentation_node.GetSegmentation().GetNumberOfSegments() > 0
    if segmentation_node.GetTransformNodeID() != reference_volume_node.GetTransformNodeID():
        if has_segments:
            raise InputError(
                f"segmentation '{segmentation_node.GetName()}' and volume '{reference_volume_node.GetName()}' are "
                "under different transforms: harden or match the transforms first"
            )
        segmentation_node.SetAndObserveTransformNodeID(reference_volume_node.GetTransformNodeID())


def check_appendable(segmentation_node: Any, reference_volume_node: Any) -> None:
    """InputError (nothing changed) when a structure of this volume cannot be added to this segmentation."""
    if segmentation_node is None or not segmentation_node.IsA("vtkMRMLSegmentationNode"):
        raise InputError("select a segmentation to add the structure to")
    _check_same_frame(segmentation_node, reference_volume_node)
    segmentation = segmentation_node.GetSegmentation()
    source_name = getattr(segmentation, "GetSourceRepresentationName", None) or segmentation.GetMasterRepresentationName
    if segmentation.GetNumberOfSegments() > 0 and source_name() != _BINARY_LABELMAP:
        raise InputError(
            f"segmentation '{segmentation_node.GetName()}' is edited as '{source_name()}'; make binary labelmap "
            "its source representation (Segmentations module) to add structures to it"
        )


def append_segment(
    segmentation_node: Any,
    mask: np.ndarray,
    reference_volume_node: Any,
    name: str,
    color: Sequence[float],
    tags: dict[str, str],
    segment_id: str,
) -> str:
    """Add one segment with its own labelmap layer; the segments already there are not touched.

    A segmentation without segments takes the volume's geometry as its reference geometry, as the
    Segment Editor does; one with segments keeps its own (the new layer carries the volume's geometry).
    """
    check_appendable(segmentation_node, reference_volume_node)
    shape = volume_shape(reference_volume_node)
    mask = np.asarray(mask, dtype=bool).reshape(shape)
    if not mask.any():
        raise InputError("the structure under the seed is empty")
    segmentation = segmentation_node.GetSegmentation()
    layer = slicer.vtkOrientedImageData()
    _set_image_from_array(layer, mask.astype(np.uint8))
    layer.SetExtent(reference_volume_node.GetImageData().GetExtent())
    layer.SetImageToWorldMatrix(_numpy_to_matrix(ijk_to_ras_of(reference_volume_node)))

    was_modifying = segmentation_node.StartModify()
    try:
        if segmentation.GetNumberOfSegments() == 0:
            _set_source_representation_to_labelmap(segmentation_node)
            segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
        if segmentation_node.GetScene() is not None and segmentation_node.GetDisplayNode() is None:
            segmentation_node.CreateDefaultDisplayNodes()
        segment = slicer.vtkSegment()
        segment.SetName(name)
        segment.SetColor(float(color[0]), float(color[1]), float(color[2]))
        segment.SetNameAutoGenerated(False)
        segment.SetColorAutoGenerated(False)
        segment.SetLabelValue(1)
        for key, value in tags.items():
            segment.SetTag(key, value)
        segment.AddRepresentation(_BINARY_LABELMAP, layer)
        if not segmentation.AddSegment(segment, segment_id):
            raise RuntimeError(f"could not add segment {segment_id} to '{segmentation_node.GetName()}'")
    finally:
        segmentation_node.EndModify(was_modifying)
    return segment_id


def add_structure(
    hierarchy: Hierarchy,
    seed_xyz: Sequence[float],
    segmentation_node: Any,
    reference_volume_node: Any,
    level: LevelChoice = None,
    name: str | None = None,
    color: Sequence[float] | None = None,
    undo: SegmentationUndo | None = None,
    choice: StructureChoice | None = None,
) -> KeptStructure:
    """Append the structure under the seed to the segmentation as one named, tagged segment.

    With `undo`, a checkpoint of the segmentation is saved first, so `undo.undo(segmentation_node)`
    restores it as it was. `choice` is the structure when the caller has chosen it already (`level` is then
    not read); else `choose_structure` chooses it, reading the image's edges from the reference volume.
    """
    if choice is None:
        choice = choose_structure(hierarchy, seed_xyz, level, _voxels(reference_volume_node))
    persistence = persistence_of(hierarchy, choice.label)
    voxels = int(np.count_nonzero(choice.mask))
    name = name or default_structure_name(choice.level, choice.label)
    color = color if color is not None else label_colors([choice.label])[choice.label]
    tags = {
        LABEL_TAG: str(choice.label),
        LEVEL_TAG: str(choice.level),
        PERSISTENCE_TAG: str(persistence),
        VOXELS_TAG: str(voxels),
    }
    segment_id = _keep(
        segmentation_node, reference_volume_node, choice.mask, name, color, tags, (choice.level, choice.label), undo
    )
    return KeptStructure(
        segmentation_node,
        segment_id,
        name,
        choice.level,
        choice.label,
        persistence,
        voxels,
    )


def _keep(
    segmentation_node: Any,
    reference_volume_node: Any,
    mask: np.ndarray,
    name: str,
    color: Sequence[float],
    tags: dict[str, str],
    id_parts: tuple[int | str, int],
    undo: SegmentationUndo | None,
) -> str:
    """Check, take the undo checkpoint, append the segment; its id."""
    check_appendable(segmentation_node, reference_volume_node)
    if undo is not None:
        undo.checkpoint(segmentation_node)
    segment_id = _unique_segment_id(segmentation_node.GetSegmentation(), *id_parts)
    return append_segment(segmentation_node, mask, reference_volume_node, name, color, tags, segment_id)


#: The level tag of a structure a closer look around the seed found (it is no level of the hierarchy).
CLOSER_LOOK = "closer look"
#: The level tag of a structure the engine kept at its own level (`cuts binarize --seed`): a level of the
#: hierarchy or a closer look, grown and snapped to the image's edge.
AUTOMATIC_LEVEL = "automatic level"


def add_found_structure(
    mask: np.ndarray,
    segmentation_node: Any,
    reference_volume_node: Any,
    name: str | None = None,
    color: Sequence[float] | None = None,
    undo: SegmentationUndo | None = None,
    level_tag: str = CLOSER_LOOK,
) -> KeptStructure:
    """Append a structure the engine found from a seed (`cuts binarize --seed`) as one segment.

    Its level tag is `level_tag` ("closer look": `--closer always`; `AUTOMATIC_LEVEL`: the structure at its own
    level, `--closer auto`) and it has no label tag (label 0 in the returned record): the engine's mask is no
    single label of a level (a box's hierarchy, or a region grown to the image's edge). Default name
    "Structure (<level tag>)". Same checks, undo checkpoint and segment layout as `add_structure`.
    """
    mask = np.asarray(mask, dtype=bool)
    voxels = int(np.count_nonzero(mask))
    name = name or f"Structure ({level_tag})"
    color = color if color is not None else label_colors([1])[1]
    tags = {LEVEL_TAG: level_tag, PERSISTENCE_TAG: "1", VOXELS_TAG: str(voxels)}
    id_part = "closer" if level_tag == CLOSER_LOOK else "auto"
    segment_id = _keep(segmentation_node, reference_volume_node, mask, name, color, tags, (id_part, 0), undo)
    return KeptStructure(segmentation_node, segment_id, name, level_tag, 0, 1, voxels)


def add_clicked_structure(
    hierarchy: Hierarchy,
    seed_xyz: Sequence[float],
    structure: Any,
    segmentation_node: Any,
    reference_volume_node: Any,
    undo: SegmentationUndo | None = None,
) -> KeptStructure:
    """Append what the engine's click kept (`pipeline.structure_at_click`'s Structure for this seed) as it is.

    A closer look's structure (`box_mm` set) is added as `add_found_structure` adds it; the hierarchy's own
    structure as `add_structure` adds a chosen one, with its level and its label there. Nothing is chosen
    again: the click read every sequence's edges, where `add_structure` alone would read the reference's.
    """
    if structure.box_mm is not None:
        return add_found_structure(structure.mask, segmentation_node, reference_volume_node, undo=undo)
    volume = _levels_zyx(hierarchy)
    x, y, z = _seed_in_bounds(seed_xyz, volume.shape[1:])
    index = int(structure.level) % hierarchy.n_levels
    label = int(volume[index, z, y, x])
    mask = np.asarray(structure.mask, dtype=bool).reshape(volume.shape[1:])
    return add_structure(
        hierarchy,
        seed_xyz,
        segmentation_node,
        reference_volume_node,
        undo=undo,
        choice=StructureChoice(mask, index, label),
    )


def segment_tag(segment: Any, key: str) -> str | None:
    """A segment's tag value, None when the segment has no such tag."""
    value = vtk.reference("")
    return str(value) if segment.GetTag(key, value) else None


class SegmentationUndo:
    """Undo checkpoints of segmentation nodes, one `vtkSegmentationHistory` per node (as the Segment Editor).

    Parameters
    ----------
    max_states
        How many checkpoints each segmentation keeps (the Segment Editor's default is 10).
    """

    def __init__(self, max_states: int = 10) -> None:
        self.max_states = max_states
        self._histories: dict[str, Any] = {}

    def _history(self, segmentation_node: Any) -> Any:
        key = segmentation_node.GetID() or str(id(segmentation_node))
        history = self._histories.get(key)
        if history is None or history.GetSegmentation() is not segmentation_node.GetSegmentation():
            history = slicer.vtkSegmentationHistory()
            history.SetMaximumNumberOfStates(self.max_states)
            history.SetSegmentation(segmentation_node.GetSegmentation())
            self._histories[key] = history
        return history

    def checkpoint(self, segmentation_node: Any) -> None:
        """Save the segmentation's current segments; call before changing them."""
        ensure_segmentation_converters(segmentation_node.GetScene())  # states are deep copies of layers
        if not self._history(segmentation_node).SaveState():
            raise RuntimeError(f"could not save an undo state of '{segmentation_node.GetName()}'")

    def can_undo(self, segmentation_node: Any) -> bool:
        """Whether a checkpoint of this segmentation is there to go back to."""
        return segmentation_node is not None and bool(
            self._history(segmentation_node).IsRestorePreviousStateAvailable()
        )

    def undo(self, segmentation_node: Any) -> bool:
        """Restore the segmentation to its last checkpoint; False when there is none."""
        if not self.can_undo(segmentation_node):
            return False
        was_modifying = segmentation_node.StartModify()
        try:
            restored = bool(self._history(segmentation_node).RestorePreviousState())
        finally:
            segmentation_node.EndModify(was_modifying)
        return restored

    def forget(self) -> None:
        """Drop every checkpoint (the scene is closing)."""
        self._histories.clear()
