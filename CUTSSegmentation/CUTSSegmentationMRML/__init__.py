"""MRML bridge of the CUTSSegmentation extension: engine arrays <-> Slicer nodes, using only slicer's Qt-free core.

Runs unchanged inside the Slicer application and under PyPI `slicer-core` (CI). See `bridge` for volumes,
segmentations, seeds and export, and `scene_store` for keeping a hierarchy in a (saved) scene.
"""

from .bridge import (
    LABEL_TAG,
    clear_segments,
    export_segmentation,
    image_to_volume_node,
    label_at_seed,
    label_map_to_volume_node,
    present_labels,
    push_level_to_segmentation,
    seed_from_markup,
    segmentation_to_label_map,
    volume_node_to_image,
)
from .palette import PALETTE, label_colors
from .scene_store import (
    find_hierarchy_nodes,
    load_hierarchy_from_scene,
    read_scene_bundle,
    remove_hierarchy_from_scene,
    store_hierarchy_in_scene,
    write_scene_bundle,
)

__all__ = [
    "LABEL_TAG",
    "PALETTE",
    "clear_segments",
    "export_segmentation",
    "find_hierarchy_nodes",
    "image_to_volume_node",
    "label_at_seed",
    "label_colors",
    "label_map_to_volume_node",
    "load_hierarchy_from_scene",
    "present_labels",
    "push_level_to_segmentation",
    "read_scene_bundle",
    "remove_hierarchy_from_scene",
    "seed_from_markup",
    "segmentation_to_label_map",
    "store_hierarchy_in_scene",
    "volume_node_to_image",
    "write_scene_bundle",
]
