"""The module logic's work as plain functions on MRML nodes: the one implementation behind the console API,
the module panel and `Resources/Scripts/batch.py`.

Only Slicer's Qt-free core (`slicer` MRML classes, `vtk`), numpy, the MRML bridge and the engine are used:
no Qt, no `slicer.app`, no `slicer.mrmlScene` global (scenes are passed in or taken from nodes). That is
what lets CI run all of it against PyPI slicer-core, and the batch script run under plain `python`.

Levels are addressed as in the engine's command line: an integer index into the hierarchy's kept levels
(0 = finest, -1 = coarsest) or the string "persistent" for the persistent-structures map.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from CUTSSegmentationLib.core.errors import InputError
from CUTSSegmentationLib.condense.hierarchy import Hierarchy
from CUTSSegmentationLib.core.progress import CancelToken, ProgressCallback, no_progress

PERSISTENT = "persistent"
LevelSpec = Union[int, str]
SeedLike = Union[Sequence[float], Any]  # (x, y, z) voxel index or a markups node

#: File extensions the MRML volume storage node of Slicer's Qt-free core reads itself; anything else
#: (PNG, JPG, TIFF, .npy ...) is read by the engine and handed to MRML as an array.
MRML_VOLUME_EXTENSIONS = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


# --------------------------------------------------------------------------------------- levels
def parse_level(value: Union[None, int, str]) -> LevelSpec:
    """"persistent" / None -> "persistent"; "3" / 3 -> 3. Anything else: InputError (one line)."""
    if value is None:
        return PERSISTENT
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    text = str(value).strip().lower()
    if text == PERSISTENT:
        return PERSISTENT
    try:
        return int(text)
    except ValueError:
        raise InputError(f"level must be an integer level index or 'persistent', got '{value}'") from None


def level_label_map(hierarchy: Hierarchy, level: LevelSpec) -> np.ndarray:
    """The label map shown for `level` (cached in the hierarchy: no recomputation)."""
    level = parse_level(level)
    if level == PERSISTENT:
        if hierarchy.persistent is None:
            raise InputError("this hierarchy has no persistent-structures map; choose a level instead")
        return hierarchy.persistent
    if not -hierarchy.n_levels <= int(level) < hierarchy.n_levels:
        raise InputError(f"level {level} is out of range: this hierarchy has levels 0..{hierarchy.n_levels - 1}")
    return hierarchy.level(int(level))


def default_level(hierarchy: Hierarchy) -> int:
    """The level shown first after condensation: the middle of the hierarchy (neither all fragments nor one blob)."""
    return max(0, (hierarchy.n_levels - 1) // 2)


def count_structures(label_map: np.ndarray) -> int:
    """Number of distinct nonzero labels."""
    from CUTSSegmentationMRML.bridge import present_labels

    return int(len(present_labels(label_map)))


def level_description(hierarchy: Hierarchy, level: LevelSpec) -> str:
    """One line for the panel: "Level 3 of 6 (finest 0): 12 clusters" or "Persistent structures: 5"."""
    level = parse_level(level)
    if level == PERSISTENT:
        return f"Persistent structures: {count_structures(level_label_map(hierarchy, level))}"
    index = int(level) % hierarchy.n_levels
    clusters = int(hierarchy.n_clusters[index])
    return f"Level {index} of {hierarchy.n_levels - 1} (0 = finest): {clusters} cluster{'s' if clusters != 1 else ''}"


def segment_names(label_map: np.ndarray, level: LevelSpec) -> dict[int, str]:
    """Segment names: "Cluster N" on a level, "Structure N" on the persistent map (as `cuts segment` writes)."""
    from CUTSSegmentationMRML.bridge import present_labels

    prefix = "Structure" if parse_level(level) == PERSISTENT else "Cluster"
    return {int(v): f"{prefix} {int(v)}" for v in present_labels(label_map)}


# --------------------------------------------------------------------------------------- segmentations
def push_level(
    hierarchy: Hierarchy,
    level: LevelSpec,
    segmentation_node: Any,
    reference_volume_node: Any,
) -> list[str]:
    """Replace the segmentation's segments with the label map of `level` (fast: one shared labelmap layer)."""
    from CUTSSegmentationMRML.bridge import push_level_to_segmentation

    labels = level_label_map(hierarchy, level)
    return push_level_to_segmentation(
        labels, segmentation_node, reference_volume_node, names=segment_names(labels, level)
    )


def seed_voxel(seed: SeedLike, volume_node: Any, point_index: int = 0) -> tuple[int, int, int]:
    """Voxel index (x, y, z) of a seed given as a markups node (its point `point_index`) or as numbers."""
    if hasattr(seed, "GetNumberOfControlPoints"):
        from CUTSSegmentationMRML.bridge import seed_from_markup

        return seed_from_markup(seed, volume_node, point_index)
    try:
        values = [float(v) for v in seed]
    except TypeError:
        raise InputError(f"a seed is a markups point node or voxel indices (x, y, z), got {seed!r}") from None
    if len(values) == 2:
        values.append(0.0)
    if len(values) != 3:
        raise InputError(f"a seed needs (x, y) or (x, y, z) voxel indices, got {len(values)} numbers")
    return tuple(int(np.floor(v + 0.5)) for v in values)  # type: ignore[return-value]


def structure_at_seed(hierarchy: Hierarchy, level: LevelSpec, seed_xyz: Sequence[float]) -> tuple[int, np.ndarray]:
    """(label, label map with only that label kept) for the structure under the seed voxel."""
    from CUTSSegmentationLib.condense.binarize import binarize_at_seed

    labels = level_label_map(hierarchy, level)
    seed = tuple(seed_xyz)
    if labels.ndim == 2 and len(seed) == 3 and int(np.floor(float(seed[2]) + 0.5)) == 0:
        seed = seed[:2]
    mask = binarize_at_seed(labels, seed)
    label = int(labels[mask].flat[0])
    return label, np.where(mask, labels, 0).astype(labels.dtype, copy=False)


def keep_structure_at_seed(
    hierarchy: Hierarchy,
    level: LevelSpec,
    seed_xyz: Sequence[float],
    segmentation_node: Any,
    reference_volume_node: Any,
) -> int:
    """Replace the segmentation's segments with the one structure under the seed; returns its label.

    The kept segment has the same id, name and colour it has when the whole level is shown, so the
    Segment Editor and a user's eye keep recognising it.
    """
    from CUTSSegmentationMRML.bridge import push_level_to_segmentation

    label, kept = structure_at_seed(hierarchy, level, seed_xyz)
    names = segment_names(kept, level)
    push_level_to_segmentation(kept, segmentation_node, reference_volume_node, names=names)
    return label


def reference_volume_of(segmentation_node: Any) -> Optional[Any]:
    """The volume whose geometry a segmentation was given (Slicer's "referenceImageGeometryRef"), if any."""
    if segmentation_node is None:
        return None
    node = segmentation_node.GetNodeReference("referenceImageGeometryRef")
    return node if node is not None and node.IsA("vtkMRMLVolumeNode") else None


# --------------------------------------------------------------------------------------- volume files
def write_volume_file(volume_node: Any, path: Union[str, Path]) -> Path:
    """Write a volume node (scalar or vector) as an uncompressed NRRD for the engine's child process.

    Written through Slicer's own volume storage node, so the file carries the node's geometry exactly as
    Slicer saves it (IJK -> RAS converted to the file's LPS space); the node's own storage node and
    modified state are left alone. Uncompressed because the file lives only for the job.
    """
    import slicer

    if volume_node is None or volume_node.GetImageData() is None:
        raise InputError("select an input volume that has voxels")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.UseCompressionOff()
    if not storage.WriteData(volume_node):
        raise InputError(f"could not write volume '{volume_node.GetName()}' to {path}")
    return path


def _extension(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def read_volume_file(scene: Any, path: Union[str, Path], name: Optional[str] = None) -> Any:
    """Load an image file into `scene` as a scalar or vector volume node.

    The engine reads and validates the file first (one clear InputError line for a missing, unreadable,
    empty or constant image), then MRML formats are read by Slicer's volume storage node (geometry exactly
    as Slicer loads the file) and other formats (PNG, JPG, TIFF, .npy, which Slicer's Qt-free core has no
    reader for) are handed to MRML from the engine's array.
    """
    import slicer

    from CUTSSegmentationLib.io.reading import read_image
    from CUTSSegmentationLib.io.validation import validate_image
    from CUTSSegmentationMRML.bridge import image_to_volume_node

    path = Path(path)
    image = validate_image(read_image(path))
    node_name = name or path.name.split(".")[0] or "CUTS input"
    if _extension(path) in MRML_VOLUME_EXTENSIONS:
        class_name = "vtkMRMLScalarVolumeNode" if image.channels == 1 else "vtkMRMLVectorVolumeNode"
        node = scene.AddNewNodeByClass(class_name, node_name)
        storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
        storage.SetFileName(str(path))
        node.SetAndObserveStorageNodeID(storage.GetID())
        if storage.ReadData(node) and node.GetImageData() is not None:
            node.CreateDefaultDisplayNodes()
            return node
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
    return image_to_volume_node(scene, image, name=node_name)


# --------------------------------------------------------------------------------------- in-process engine
def segment_volume(
    volume_node: Any,
    model: Any = None,
    *,
    device: str = "auto",
    epochs: Optional[int] = None,
    seed: int = 0,
    progress: ProgressCallback = no_progress,
    cancel: Optional[CancelToken] = None,
) -> Hierarchy:
    """Segment a volume node in this process (blocks the caller: console and batch use).

    `model` is a TrainedModel, a path to a .safetensors model, or None (train on this volume first).
    """
    from CUTSSegmentationLib import pipeline
    from CUTSSegmentationMRML.bridge import volume_node_to_image

    image = volume_node_to_image(volume_node)
    if isinstance(model, (str, os.PathLike)):
        model = load_model_file(model)
    return pipeline.segment(
        image, model, device=device, train_epochs=epochs or None, seed=seed, progress=progress, cancel=cancel
    )


def train_on_volumes(
    volume_nodes: Sequence[Any],
    *,
    epochs: Optional[int] = None,
    device: str = "auto",
    seed: int = 0,
    progress: ProgressCallback = no_progress,
    cancel: Optional[CancelToken] = None,
) -> Any:
    """Train an encoder on one or more volume nodes in this process; returns the engine's TrainedModel."""
    from CUTSSegmentationLib import pipeline
    from CUTSSegmentationMRML.bridge import volume_node_to_image

    if volume_nodes is None or (hasattr(volume_nodes, "IsA") and volume_nodes.IsA("vtkMRMLVolumeNode")):
        volume_nodes = [volume_nodes]
    images = [volume_node_to_image(node) for node in volume_nodes]
    return pipeline.train(images, epochs=epochs or None, device=device, seed=seed, progress=progress, cancel=cancel)


def load_model_file(path: Union[str, Path]) -> Any:
    """Read a .safetensors encoder written by `cuts train` / Save encoder (ModelFileError if it is not one)."""
    from CUTSSegmentationLib.learn.modelfile import load_model

    return load_model(path, device="cpu")


def save_model_file(model: Any, path: Union[str, Path]) -> Path:
    """Write a TrainedModel as MODEL.safetensors + MODEL.json card."""
    from CUTSSegmentationLib.learn.modelfile import save_model

    return Path(save_model(model, path))


# --------------------------------------------------------------------------------------- job outputs
def card_path(model_path: Union[str, Path]) -> Path:
    """The JSON card beside a model file (same stem), as CUTSSegmentationLib.modelfile names it.

    Computed here instead of imported so that the panel need not import torch to copy a model.
    """
    return Path(model_path).with_suffix(".json")


def copy_model_file(source: Union[str, Path], destination: Union[str, Path]) -> Path:
    """Copy a model (weights + its card, if present) to `destination`, atomically per file.

    Used by "Save encoder..." and to move a freshly trained model out of the job's temporary folder.
    """
    source, destination = Path(source), Path(destination)
    if destination.suffix != ".safetensors":
        destination = destination.with_suffix(".safetensors")
    if not source.is_file():
        raise InputError(f"encoder file not found: {source}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    pairs = [(source, destination)]
    if card_path(source).is_file():
        pairs.append((card_path(source), card_path(destination)))
    for src, dst in pairs:
        if src.resolve() == dst.resolve():
            continue
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}-", dir=str(dst.parent))
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return destination


def load_job_hierarchy(out_dir: Union[str, Path]) -> Hierarchy:
    """The hierarchy a `cuts segment` job wrote (DIR/hierarchy.npz)."""
    path = Path(out_dir) / "hierarchy.npz"
    if not path.is_file():
        raise InputError(f"the segmentation job wrote no hierarchy ({path} is missing)")
    return Hierarchy.load(path)
