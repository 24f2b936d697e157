"""MRML side of the CUTSSegmentation module: engine arrays <-> Slicer nodes, using only slicer's Qt-free core.

Runs unchanged inside the Slicer application and under PyPI `slicer-core` (CI):
- `bridge`: volumes, segmentations, seeds and export;
- `levels`: hierarchy levels and seed-point structures into segmentation nodes, the panel's level text;
- `scene_store`: a hierarchy kept in a (saved) scene;
- `volume_files`: volume nodes to and from image files;
- `sequences`: several co-registered volumes of one case as channels, their grids checked before any job;
- `in_process`: the engine run in this process on volume nodes (console and batch use);
- `preview`: the module-owned segmentation that previews levels, Show 3D;
- `kept_structures`: structures appended to a user's segmentation as named, tagged segments, with undo;
- `subject_hierarchy`: a result placed next to its volume (reference, study);
- `hierarchy_export`: the levels as a sequence of segmentations, the merge tree as a table.
"""

from .bridge import (
    LABEL_TAG,
    clear_segments,
    ensure_segmentation_converters,
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
from .hierarchy_export import levels_to_sequence, merge_tree_rows, merge_tree_table
from .kept_structures import (
    AUTOMATIC_LEVEL,
    CLOSER_LOOK,
    LEVEL_TAG,
    PERSISTENCE_TAG,
    VOXELS_TAG,
    KeptStructure,
    SegmentationUndo,
    add_clicked_structure,
    add_found_structure,
    add_structure,
    choose_structure,
    segment_tag,
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
from .preview import is_preview, preview_segmentation, show_in_3d
from .scene_store import (
    ROLE,
    find_hierarchy_nodes,
    load_hierarchy_from_scene,
    read_scene_bundle,
    remove_hierarchy_from_scene,
    store_hierarchy_in_scene,
    write_scene_bundle,
)
from .subject_hierarchy import place_with_volume, study_of

__all__ = [
    "LABEL_TAG",
    "LEVEL_TAG",
    "PALETTE",
    "PERSISTENCE_TAG",
    "PERSISTENT",
    "ROLE",
    "VOXELS_TAG",
    "KeptStructure",
    "SegmentationUndo",
    "AUTOMATIC_LEVEL",
    "CLOSER_LOOK",
    "add_clicked_structure",
    "add_found_structure",
    "add_structure",
    "choose_structure",
    "clear_segments",
    "default_level",
    "ensure_segmentation_converters",
    "export_segmentation",
    "find_hierarchy_nodes",
    "image_to_volume_node",
    "is_preview",
    "keep_structure_at_seed",
    "label_at_seed",
    "label_colors",
    "label_map_to_volume_node",
    "level_description",
    "level_label_map",
    "levels_to_sequence",
    "load_hierarchy_from_scene",
    "merge_tree_rows",
    "merge_tree_table",
    "parse_level",
    "place_with_volume",
    "present_labels",
    "preview_segmentation",
    "push_level",
    "push_level_to_segmentation",
    "read_scene_bundle",
    "reference_volume_of",
    "remove_hierarchy_from_scene",
    "seed_from_markup",
    "seed_voxel",
    "segment_tag",
    "segmentation_to_label_map",
    "show_in_3d",
    "store_hierarchy_in_scene",
    "structure_at_seed",
    "study_of",
    "volume_node_to_image",
    "write_scene_bundle",
]
