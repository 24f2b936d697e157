"""Small hand-made data for the Slicer module's tests: a 3-level hierarchy, an oblique geometry, images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from CUTSSegmentationJobs.engine import Geometry, Hierarchy, ImageData

REPO = Path(__file__).resolve().parents[2]
MODULE_NAME = "CUTSSegmentation"
MODULE_DIR = REPO / MODULE_NAME


def oblique_geometry() -> Geometry:
    """Anisotropic spacing, an offset origin and a rotation about z: catches axis-order and LPS/RAS mistakes."""
    c, s = np.cos(0.3), np.sin(0.3)
    return Geometry(
        spacing=(0.8, 0.6, 2.0),
        origin=(-12.0, 30.5, 7.0),
        direction=(c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0),
    )


def image_data(array: np.ndarray, geometry: Geometry | None = None, is_2d: bool = False) -> ImageData:
    """An engine image of a (z, y, x, channels) array."""
    return ImageData(
        array=np.asarray(array, dtype=np.float32),
        geometry=geometry or Geometry(),
        is_2d=is_2d,
        source="test",
        source_dtype="uint8",
    )


def three_level_hierarchy(shape=(4, 20, 24), geometry: Geometry | None = None, persistent: bool = True) -> Hierarchy:
    """8 blocks -> 4 -> 2, plus a persistent map of the two first blocks."""
    _z, y, x = shape
    blocks = (np.arange(x) * 4 // x)[None, None, :] + 4 * (np.arange(y) * 2 // y)[None, :, None]
    fine = np.broadcast_to(blocks, shape).astype(np.uint16) + 1
    middle = ((fine - 1) // 2 + 1).astype(np.uint16)
    coarse = ((fine - 1) // 4 + 1).astype(np.uint16)
    return Hierarchy(
        levels=np.stack([fine, middle, coarse]),
        n_clusters=[8, 4, 2],
        level_steps=[0, 1, 2],
        atom_map=(fine - 1).astype(np.uint32),
        merge_tree=np.stack([np.arange(8), np.arange(8) // 2, np.arange(8) // 4]).astype(np.uint32),
        persistent=np.where(fine <= 2, fine, 0).astype(np.uint16) if persistent else None,
        geometry=geometry or Geometry(),
        is_2d=False,
    )


def add_user_segment(segmentation_node, volume_node, segment_id: str, name: str, mask: np.ndarray) -> None:
    """A segment as a user makes it in Slicer: an empty segment, then a labelmap written into it
    (what slicer.util.updateSegmentBinaryLabelmapFromArray does)."""
    import slicer
    from CUTSSegmentationMRML import ensure_segmentation_converters
    from CUTSSegmentationMRML.bridge import (
        _numpy_to_matrix,
        _set_image_from_array,
        ijk_to_ras_of,
    )

    ensure_segmentation_converters(volume_node.GetScene())  # the application's Segmentations module does this
    segmentation_node.GetSegmentation().AddEmptySegment(segment_id, name, [0.9, 0.1, 0.5])
    image = slicer.vtkOrientedImageData()
    _set_image_from_array(image, np.asarray(mask).astype(np.uint8))
    image.SetImageToWorldMatrix(_numpy_to_matrix(ijk_to_ras_of(volume_node)))
    slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        image,
        segmentation_node,
        segment_id,
        slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE,
    )
