"""Volume nodes to and from image files: the input file of a background job, the input of the batch script."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import slicer
from CUTSSegmentationJobs.engine import InputError, image_reader

from .bridge import image_to_volume_node

#: File extensions the MRML volume storage node of Slicer's Qt-free core reads itself; anything else
#: (PNG, JPG, TIFF, .npy ...) is read by the engine and handed to MRML as an array.
MRML_VOLUME_EXTENSIONS = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


# --------------------------------------------------------------------------------------- volume files
def write_volume_file(volume_node: Any, path: str | Path) -> Path:
    """Write a volume node (scalar or vector) as an uncompressed NRRD for the engine's child process.

    Written through Slicer's own volume storage node, so the file carries the node's geometry exactly as
    Slicer saves it (IJK -> RAS converted to the file's LPS space); the node's own storage node and
    modified state are left alone. Uncompressed because the file lives only for the job.
    """
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


def sequence_file_names(volume_nodes: Sequence[Any]) -> list[str]:
    """File names for one case's volumes in a job folder: "input.nrrd" for one, the node names for several.

    Named after the nodes so that the model card a job writes lists the sequences by the names the user sees
    ("flair.nrrd", "t1c.nrrd"); characters a file name may not hold become "_", repeats get a number.
    """
    if len(volume_nodes) == 1:
        return ["input.nrrd"]
    names: list[str] = []
    for index, node in enumerate(volume_nodes):
        safe = "".join(c if (c.isascii() and c.isalnum()) or c in "._-" else "_" for c in node.GetName() or "")
        stem = safe.strip("._") or f"sequence{index + 1}"
        name = f"{stem}.nrrd"
        names.append(f"{stem}-{index + 1}.nrrd" if name in names else name)
    return names


def _extension(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def read_volume_file(scene: Any, path: str | Path, name: str | None = None) -> Any:
    """Load an image file into `scene` as a scalar or vector volume node.

    The engine reads and validates the file first (one clear InputError line for a missing, unreadable,
    empty or constant image), then MRML formats are read by Slicer's volume storage node (geometry exactly
    as Slicer loads the file) and other formats (PNG, JPG, TIFF, .npy, which Slicer's Qt-free core has no
    reader for) are handed to MRML from the engine's array.
    """
    path = Path(path)
    reader = image_reader()
    image = reader.validate_image(reader.read_image(path))
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
