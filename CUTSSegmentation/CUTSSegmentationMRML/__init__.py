# ruff: noqa: N999  (Slicer names a module's packages <ModuleName><Part>)
"""MRML side of the CUTSSegmentation module: engine arrays <-> Slicer nodes, using only slicer's Qt-free core.

Runs unchanged inside the Slicer application and under PyPI `slicer-core` (CI):
- `bridge`: volumes, segmentations, seeds and export;
- `levels`: hierarchy levels and seed-point structures into segmentation nodes, the panel's level text;
- `scene_store`: a hierarchy kept in a (saved) scene;
- `volume_files`: volume nodes to and from image files;
- `in_process`: the engine run in this process on volume nodes (console and batch use).
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
from .levels import (
    PERSISTENT,
    default_level,
    keep_structure_at_seed,
    level_description,
    level_label_map,
    parse_level,
    push_level,
    reference_volume_of,
    seed_voxel,
    structure_at_seed,
)
from .palette import PALETTE, label_colors
from .scene_store import (
    ROLE,
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
    "PERSISTENT",
    "ROLE",
    "clear_segments",
    "default_level",
    "export_segmentation",
    "find_hierarchy_nodes",
    "image_to_volume_node",
    "keep_structure_at_seed",
    "label_at_seed",
    "label_colors",
    "label_map_to_volume_node",
    "level_description",
    "level_label_map",
    "load_hierarchy_from_scene",
    "parse_level",
    "present_labels",
    "push_level",
    "push_level_to_segmentation",
    "read_scene_bundle",
    "reference_volume_of",
    "remove_hierarchy_from_scene",
    "seed_from_markup",
    "seed_voxel",
    "segmentation_to_label_map",
    "store_hierarchy_in_scene",
    "structure_at_seed",
    "volume_node_to_image",
    "write_scene_bundle",
]
