"""MRML bridge: volume node <-> ImageData, label map -> segmentation node, seed markup -> voxel, .seg.nrrd export.

Only `slicer` (MRML core, segmentations logic), `vtk`, numpy and CUTSSegmentationLib are used, never Qt, so the
same code runs inside the Slicer application and under PyPI `slicer-core` (where the tests run against the real
MRML scene). No function relies on the `slicer.mrmlScene` global: the scene is always passed in or taken from a
node (`node.GetScene()`), which is what makes the module logic testable without the application.

Geometry conventions: MRML volumes carry an IJK -> RAS matrix (local coordinates of the node, i.e. before any
parent transform); the engine's `Geometry` is ITK/LPS. `Geometry.from_ijk_to_ras_matrix` / `ijk_to_ras_matrix`
convert between the two. numpy arrays of volumes are indexed (k, j, i) = (z, y, x); voxel indices handed to or
returned by this module are (x, y, z) = (i, j, k), as on the `cuts` command line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import slicer
import vtk
from CUTSSegmentationJobs.engine import Geometry, ImageData, InputError, atomic_write
from vtk.util import numpy_support

from .palette import RGB, label_colors

#: Segment tag holding the label value a segment came from, so export and round trips keep the engine's labels
#: even after Slicer renumbers the shared labelmap layer (segment editor operations may do that).
LABEL_TAG = "CUTS.Label"
#: Segment ids are derived from the label so a segment keeps its id (and the segment editor its selection)
#: when the slider moves to a level where the same cluster exists.
SEGMENT_ID_PREFIX = "cuts_"

_BINARY_LABELMAP = "Binary labelmap"


# --------------------------------------------------------------------------- segmentation converters
def ensure_segmentation_converters(scene: Any) -> None:
    """Register the segmentation representation converters when nothing has yet.

    Slicer's Segmentations module logic registers them when it gets its scene (RegisterNodes); undo states,
    closed surfaces and segmentation sequences need them. Slicer-core without the application has none,
    so the same logic is given the scene here; in the application the rules are already there.
    """
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if factory.GetConverterRules():
        return
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)


# --------------------------------------------------------------------------- small VTK helpers
def _matrix_to_numpy(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=float)


def _numpy_to_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def ijk_to_ras_of(volume_node: Any) -> np.ndarray:
    """The node's local IJK -> RAS matrix as a 4x4 numpy array."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return _matrix_to_numpy(matrix)


def volume_shape(volume_node: Any) -> tuple[int, int, int]:
    """(Z, Y, X) voxel shape of a volume node (the shape of its numpy array without components)."""
    image = volume_node.GetImageData() if volume_node is not None else None
    if image is None:
        raise InputError(f"volume '{_name(volume_node)}' has no voxels")
    x, y, z = image.GetDimensions()
    return int(z), int(y), int(x)


def _name(node: Any) -> str:
    return node.GetName() if node is not None and node.GetName() else "(unnamed)"


def _array_of_image(image: vtk.vtkImageData) -> np.ndarray:
    """numpy view (Z, Y, X, C) of a vtkImageData's scalars (no copy)."""
    scalars = image.GetPointData().GetScalars() if image is not None else None
    if scalars is None:
        raise InputError("the volume has no voxel values")
    x, y, z = image.GetDimensions()
    comps = image.GetNumberOfScalarComponents()
    return numpy_support.vtk_to_numpy(scalars).reshape(z, y, x, comps)


def _set_image_from_array(image: vtk.vtkImageData, array: np.ndarray) -> None:
    """Fill `image` with a deep copy of a (Z, Y, X) or (Z, Y, X, C) array (the array may be freed afterwards)."""
    if array.ndim == 3:
        array = array[..., np.newaxis]
    z, y, x, comps = array.shape
    flat = np.ascontiguousarray(array).reshape(-1, comps)
    if comps == 1:
        flat = flat.reshape(-1)
    vtk_array = numpy_support.numpy_to_vtk(flat, deep=1, array_type=numpy_support.get_vtk_array_type(array.dtype))
    image.SetDimensions(x, y, z)
    image.GetPointData().SetScalars(vtk_array)


# --------------------------------------------------------------------------- volumes
def volume_node_to_image(volume_node: Any) -> ImageData:
    """Convert a scalar (C=1) or vector/RGB (C=3) volume node to the engine's ImageData.

    The geometry is the node's own IJK -> RAS (as saved in its file), converted to ITK/LPS; parent transforms are
    not baked in because results go back onto the same node's grid. A single-slice volume (how Slicer loads a PNG
    or JPG) becomes a 2D image. An alpha channel (RGBA images) is dropped. Everything else (empty, NaN, constant,
    channel count) is validated by the engine, not here.
    """
    if volume_node is None or not volume_node.IsA("vtkMRMLVolumeNode"):
        raise InputError("select a volume to segment")
    if volume_node.IsA("vtkMRMLDiffusionTensorVolumeNode"):
        raise InputError(f"'{_name(volume_node)}' is a tensor volume; CUTS segments scalar or RGB images")
    image = volume_node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise InputError(f"volume '{_name(volume_node)}' has no voxels")
    raw = _array_of_image(image)
    source_dtype = raw.dtype.name
    if raw.shape[3] == 4 and volume_node.IsA("vtkMRMLVectorVolumeNode"):
        raw = raw[..., :3]
    array = raw.astype(np.float32, copy=True)
    geometry = Geometry.from_ijk_to_ras_matrix(ijk_to_ras_of(volume_node))
    return ImageData(
        array=array,
        geometry=geometry,
        is_2d=array.shape[0] == 1,
        source=_name(volume_node),
        source_dtype=source_dtype,
    )


def image_to_volume_node(scene: Any, image: ImageData, name: str = "CUTS input") -> Any:
    """Add `image` to `scene` as a scalar (C=1) or vector (C>1) volume node with the image's geometry.

    Used by the batch path and tests. Voxels are cast back to `image.source_dtype` when it is an integer type the
    values fit into (a uint8 PNG stays uint8), otherwise kept float32.
    """
    array = image.array
    dtype = np.dtype(np.float32)
    if image.source_dtype:
        candidate = np.dtype(image.source_dtype)
        if candidate.kind in "ui" and array.size:
            info = np.iinfo(candidate)
            if float(array.min()) >= info.min and float(array.max()) <= info.max:
                dtype = candidate
    data = np.rint(array).astype(dtype) if dtype.kind in "ui" else array.astype(dtype, copy=False)
    class_name = "vtkMRMLScalarVolumeNode" if image.channels == 1 else "vtkMRMLVectorVolumeNode"
    node = scene.AddNewNodeByClass(class_name, name)
    vtk_image = vtk.vtkImageData()
    _set_image_from_array(vtk_image, data if image.channels > 1 else data[..., 0])
    node.SetAndObserveImageData(vtk_image)
    node.SetIJKToRASMatrix(_numpy_to_matrix(image.geometry.ijk_to_ras_matrix()))
    node.CreateDefaultDisplayNodes()
    return node


def label_map_to_volume_node(
    scene: Any,
    label_map: np.ndarray,
    reference_volume_node: Any,
    name: str = "CUTS labels",
) -> Any:
    """Add a label map as a vtkMRMLLabelMapVolumeNode on the reference volume's grid (batch path, hand-off)."""
    labels = _as_volume_labels(label_map, reference_volume_node)
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name)
    vtk_image = vtk.vtkImageData()
    _set_image_from_array(vtk_image, labels)
    node.SetAndObserveImageData(vtk_image)
    node.SetIJKToRASMatrix(_numpy_to_matrix(ijk_to_ras_of(reference_volume_node)))
    node.SetAndObserveTransformNodeID(reference_volume_node.GetTransformNodeID())
    return node


def _as_volume_labels(label_map: np.ndarray, reference_volume_node: Any) -> np.ndarray:
    """Label map as (Z, Y, X) unsigned integers on the reference grid; (Y, X) is accepted for 2D images."""
    labels = np.asarray(label_map)
    shape = volume_shape(reference_volume_node)
    if labels.ndim == 2 and shape[0] == 1:
        labels = labels.reshape(shape)
    if labels.shape != shape:
        raise InputError(
            f"the label map has shape {tuple(labels.shape)} but volume '{_name(reference_volume_node)}' has "
            f"{shape} voxels (z, y, x): was the segmentation computed for another volume?"
        )
    if labels.dtype.kind not in "ui":
        raise ValueError(f"label maps must be integer, got {labels.dtype}")
    if labels.dtype.kind == "i":
        if labels.size and int(labels.min()) < 0:
            raise ValueError("label maps must not contain negative labels")
        labels = labels.astype(np.uint32 if int(labels.max(initial=0)) > 65535 else np.uint16)
    return labels


# --------------------------------------------------------------------------- label maps -> segmentation
def present_labels(label_map: np.ndarray) -> np.ndarray:
    """Sorted distinct nonzero labels, in one pass and without sorting the volume (np.unique would)."""
    flat = np.asarray(label_map).reshape(-1)
    if flat.size == 0:
        return np.zeros(0, dtype=np.int64)
    top = int(flat.max())
    if top <= (1 << 24):
        present = np.zeros(top + 1, dtype=bool)
        present[flat] = True
        present[0] = False
        return np.flatnonzero(present)
    values = np.unique(flat)
    return values[values != 0].astype(np.int64)


def _pick(option: None | Mapping[int, Any] | Sequence[Any], label: int, position: int) -> Any:
    """names/colors may be a mapping label -> value or a sequence in ascending label order."""
    if option is None:
        return None
    if isinstance(option, Mapping):
        return option.get(label)
    return option[position] if position < len(option) else None


def _set_source_representation_to_labelmap(segmentation_node: Any) -> None:
    """Slicer >= 5.4 says 'source', older releases 'master'; support both."""
    setter = (
        getattr(segmentation_node, "SetSourceRepresentationToBinaryLabelmap", None)
        or segmentation_node.SetMasterRepresentationToBinaryLabelmap
    )
    setter()


def push_level_to_segmentation(
    label_map: np.ndarray,
    segmentation_node: Any,
    reference_volume_node: Any,
    names: None | Mapping[int, str] | Sequence[str] = None,
    colors: None | Mapping[int, RGB] | Sequence[RGB] = None,
) -> list[str]:
    """Replace all segments of `segmentation_node` with one segment per nonzero label of `label_map`.

    Why it is fast enough for a slider (well under 0.2 s for 256x256x128 and ~20 clusters): the label map is
    copied once into a single vtkOrientedImageData that all new segments share as one labelmap layer, each
    segment only pointing at its label value; no per-segment full-volume pass happens, neither to add nor to
    remove segments (old segments are detached from their layers first: `vtkSegmentation::RemoveSegment` would
    otherwise separate every shared segment into its own labelmap). Node modified events are batched with
    StartModify/EndModify. Only this node is touched; other segmentation nodes are never looked at.

    The segmentation gets the reference volume's geometry (SetReferenceImageGeometryParameterFromVolumeNode) and
    parent transform, so the labels sit exactly on the input voxels. Segment names default to "Cluster <label>",
    colours come from the fixed palette keyed by label (a cluster keeps its colour across levels), segment ids
    are "cuts_<label>" and the label is kept in the segment tag CUTS.Label.

    `label_map` is (Z, Y, X) (or (Y, X) for a 2D image) on the reference volume's grid. Returns the segment ids
    in ascending label order.
    """
    if segmentation_node is None or not segmentation_node.IsA("vtkMRMLSegmentationNode"):
        raise InputError("select an output segmentation")
    labels = _as_volume_labels(label_map, reference_volume_node)
    values = present_labels(labels)
    default_colors = label_colors(values)  # also fills labels a partial names/colors argument leaves out

    layer = slicer.vtkOrientedImageData()
    _set_image_from_array(layer, labels)
    layer.SetExtent(reference_volume_node.GetImageData().GetExtent())
    layer.SetImageToWorldMatrix(_numpy_to_matrix(ijk_to_ras_of(reference_volume_node)))

    was_modifying = segmentation_node.StartModify()
    try:
        if segmentation_node.GetTransformNodeID() != reference_volume_node.GetTransformNodeID():
            segmentation_node.SetAndObserveTransformNodeID(reference_volume_node.GetTransformNodeID())
        _set_source_representation_to_labelmap(segmentation_node)
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
        if segmentation_node.GetScene() is not None and segmentation_node.GetDisplayNode() is None:
            segmentation_node.CreateDefaultDisplayNodes()
        segmentation = segmentation_node.GetSegmentation()
        clear_segments(segmentation_node)
        segment_ids: list[str] = []
        for position, value in enumerate(values):
            value = int(value)
            segment = slicer.vtkSegment()
            segment.SetName(_pick(names, value, position) or f"Cluster {value}")
            colour = _pick(colors, value, position) or default_colors[value]
            segment.SetColor(float(colour[0]), float(colour[1]), float(colour[2]))
            # Deliberate names/colours: Slicer must not replace them (e.g. from a terminology) on its own.
            segment.SetNameAutoGenerated(False)
            segment.SetColorAutoGenerated(False)
            segment.SetLabelValue(value)
            segment.SetTag(LABEL_TAG, str(value))
            segment.AddRepresentation(_BINARY_LABELMAP, layer)
            segment_id = f"{SEGMENT_ID_PREFIX}{value}"
            if not segmentation.AddSegment(segment, segment_id):
                raise RuntimeError(f"could not add segment {segment_id} to '{_name(segmentation_node)}'")
            segment_ids.append(segment_id)
    finally:
        segmentation_node.EndModify(was_modifying)
    return segment_ids


def clear_segments(segmentation_node: Any) -> None:
    """Remove all segments of one segmentation node without a per-segment pass over shared labelmaps.

    Detaching the binary labelmap of each segment before removal turns `RemoveSegment` into a constant-time
    operation (there is nothing left to separate from a shared layer).
    """
    segmentation = segmentation_node.GetSegmentation()
    was_modifying = segmentation_node.StartModify()
    try:
        for index in range(segmentation.GetNumberOfSegments()):
            segment = segmentation.GetNthSegment(index)
            if segment is not None and segment.GetRepresentation(_BINARY_LABELMAP) is not None:
                segment.RemoveRepresentation(_BINARY_LABELMAP)
        segmentation.RemoveAllSegments()
    finally:
        segmentation_node.EndModify(was_modifying)


def segment_label(segment: Any, default: int) -> int:
    """The engine label of a segment: the CUTS.Label tag if present, else `default`."""
    tag = vtk.reference("")
    if segment.GetTag(LABEL_TAG, tag):
        try:
            return int(str(tag))
        except ValueError:
            pass
    return int(default)


def segmentation_to_label_map(segmentation_node: Any, reference_volume_node: Any) -> np.ndarray:
    """Merged label map (Z, Y, X) of all segments, resampled by Slicer onto the reference volume's grid.

    Each segment is written with its CUTS.Label tag (segments we did not create: their label value, or their
    1-based position when that is 0). Slicer merges into a signed-short image, so labels are merged as segment
    positions and mapped back to the labels here: labels above 32767 survive. Later segments win where segments
    overlap, as in Slicer's own export. dtype uint16 (uint32 past 65535).
    """
    segmentation = segmentation_node.GetSegmentation()
    count = segmentation.GetNumberOfSegments()
    shape = volume_shape(reference_volume_node)
    ids = vtk.vtkStringArray()
    positions = vtk.vtkIntArray()
    lut = np.zeros(count + 1, dtype=np.int64)
    for index in range(count):
        segment_id = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segment_id)
        ids.InsertNextValue(segment_id)
        positions.InsertNextValue(index + 1)
        lut[index + 1] = segment_label(segment, segment.GetLabelValue() or index + 1)
    dtype = np.uint32 if int(lut.max(initial=0)) > 65535 else np.uint16
    if count == 0:
        return np.zeros(shape, dtype=dtype)
    if count > 32767:
        raise ValueError("more than 32767 segments cannot be merged by Slicer")
    merged = slicer.vtkOrientedImageData()
    slicer.vtkSlicerSegmentationsModuleLogic.GenerateMergedLabelmapInReferenceGeometry(
        segmentation_node,
        reference_volume_node,
        ids,
        slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY,
        merged,
        positions,
    )
    if merged.GetPointData().GetScalars() is None:
        return np.zeros(shape, dtype=dtype)
    index_map = _array_of_image(merged)[..., 0]
    if index_map.shape != shape:
        raise RuntimeError(f"merged labelmap has shape {index_map.shape}, expected {shape}")
    return lut.astype(dtype)[index_map]


# --------------------------------------------------------------------------- seeds
def seed_from_markup(markups_node: Any, volume_node: Any, point_index: int = 0) -> tuple[int, int, int]:
    """Voxel index (x, y, z) of a markup control point in `volume_node`.

    The point's world position (parent transforms of the markup applied) is taken into the volume's local frame
    (inverse of the volume's parent transforms, linear or not) and then through RAS -> IJK, rounded to the
    nearest voxel. A point outside the volume is the user's to fix, hence InputError.
    """
    if markups_node is None or markups_node.GetNumberOfControlPoints() <= point_index or point_index < 0:
        raise InputError("place a seed point on the structure first")
    world = [0.0, 0.0, 0.0]
    markups_node.GetNthControlPointPositionWorld(point_index, world)
    local = list(world)
    parent = volume_node.GetParentTransformNode()
    if parent is not None:
        world_to_local = vtk.vtkGeneralTransform()
        slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(None, parent, world_to_local)
        local = list(world_to_local.TransformPoint(world))
    ras_to_ijk = np.linalg.inv(ijk_to_ras_of(volume_node))
    ijk = ras_to_ijk @ np.array([local[0], local[1], local[2], 1.0])
    index = tuple(int(v) for v in np.floor(ijk[:3] + 0.5))
    z, y, x = volume_shape(volume_node)
    if not (0 <= index[0] < x and 0 <= index[1] < y and 0 <= index[2] < z):
        raise InputError(
            f"the seed point (RAS {world[0]:.1f}, {world[1]:.1f}, {world[2]:.1f}) lies outside volume "
            f"'{_name(volume_node)}'"
        )
    return index  # type: ignore[return-value]


def label_at_seed(label_map: np.ndarray, seed_xyz: Sequence[int]) -> int:
    """Label under a voxel index (x, y, z); a 2D (Y, X) label map takes z == 0."""
    labels = np.asarray(label_map)
    x, y, z = (int(v) for v in seed_xyz)
    volume = labels.reshape((1,) + labels.shape) if labels.ndim == 2 else labels
    if not (0 <= z < volume.shape[0] and 0 <= y < volume.shape[1] and 0 <= x < volume.shape[2]):
        raise InputError(f"seed voxel ({x}, {y}, {z}) lies outside the label map of shape {labels.shape}")
    return int(volume[z, y, x])


# --------------------------------------------------------------------------- files
def read_segmentation_file(scene: Any, path: str | Path, name: str | None = None) -> Any:
    """Read a .seg.nrrd into a new segmentation node through Slicer's segmentation storage node."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"segmentation file not found: {path}")
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or path.name.split(".")[0])
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        raise InputError(f"could not read the segmentation {path}")
    return node


def export_segmentation(segmentation_node: Any, path: str | Path) -> Path:
    """Write the segmentation as a Slicer .seg.nrrd through vtkMRMLSegmentationStorageNode.

    A private storage node is used so the node's own storage (where a saved scene puts it) is left alone. The
    file is written to a temporary name in the target folder and renamed, so no half-written file is left.
    """
    path = Path(path)
    if not path.name.lower().endswith(".seg.nrrd"):
        raise InputError(f"segmentations are exported as .seg.nrrd, not {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        storage = slicer.vtkMRMLSegmentationStorageNode()
        storage.SetFileName(str(tmp))
        storage.SetUseCompression(True)
        storage.SetCropToMinimumExtent(False)
        if not storage.WriteData(segmentation_node):
            raise InputError(f"could not write {path}")

    atomic_write(path, write)
    return path
