"""Several co-registered volume nodes of one case (FLAIR + contrast T1, T1 + T2) as the channels of one image.

The grids are compared from the nodes' geometry alone (no voxels copied), so a mismatch is refused before a
background job writes any file; the words of the refusal name this application's resampling module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from CUTSSegmentationJobs.engine import (
    MAX_SEQUENCES,
    Geometry,
    Grid,
    ImageData,
    InputError,
    check_same_grid,
    stack_sequences,
)

from .bridge import ijk_to_ras_of, volume_node_to_image, volume_shape

#: How a user of 3D Slicer puts a volume on the first one's grid.
SLICER_RESAMPLE_HINT = (
    "resample it onto the first volume with Modules > Resample Scalar/Vector/DWI Volume "
    "(reference volume: the first one)"
)


def _name(node: Any) -> str:
    return f"'{node.GetName()}'" if node is not None and node.GetName() else "(unnamed volume)"


def sequence_volumes(volumes: Any, extraVolumes: Sequence[Any] | None = None) -> list[Any]:
    """The volume nodes of one case in channel order: `volumes` (one node or a list) then `extraVolumes`.

    Empty entries are dropped and a node given twice is kept once, so a panel with unused selectors or the
    same volume picked twice passes its fields as they are.
    """
    if volumes is None or hasattr(volumes, "GetID"):
        nodes = [volumes]
    else:
        nodes = list(volumes)
    nodes += list(extraVolumes or [])
    kept: list[Any] = []
    for node in nodes:
        if node is not None and all(node.GetID() != other.GetID() for other in kept):
            kept.append(node)
    return kept


def volume_grid(volume_node: Any) -> Grid:
    """The voxel grid of a volume node (shape and geometry as the engine sees them), without its voxels."""
    shape = volume_shape(volume_node)
    return Grid(shape, Geometry.from_ijk_to_ras_matrix(ijk_to_ras_of(volume_node)), shape[0] == 1)


def check_sequence_volumes(volume_nodes: Sequence[Any]) -> None:
    """Refuse, in one `InputError` line, volumes that cannot be stacked as channels (before any job starts).

    One volume always passes. Several must be at most `MAX_SEQUENCES` scalar volumes on the first one's grid
    (size, spacing, origin, direction within the engine's tolerance).
    """
    if not volume_nodes:
        raise InputError("select a volume to segment")
    if len(volume_nodes) == 1:
        return
    if len(volume_nodes) > MAX_SEQUENCES:
        raise InputError(f"{len(volume_nodes)} volumes selected; at most {MAX_SEQUENCES} can be stacked as channels")
    for node in volume_nodes:
        if node.GetClassName() != "vtkMRMLScalarVolumeNode":
            raise InputError(
                f"{_name(node)} is not a scalar volume (an RGB or vector volume?); each of several sequences "
                "must be a grey-level volume"
            )
    first = volume_nodes[0]
    first_grid = volume_grid(first)
    for node in volume_nodes[1:]:
        check_same_grid(_name(first), first_grid, _name(node), volume_grid(node), SLICER_RESAMPLE_HINT)


def volumes_to_image(volume_nodes: Sequence[Any]) -> ImageData:
    """The volumes of one case as one engine image, their voxels as channels in the order given.

    One volume is `volume_node_to_image`; several are checked by `check_sequence_volumes` first.
    """
    check_sequence_volumes(volume_nodes)
    return stack_sequences([volume_node_to_image(node) for node in volume_nodes], SLICER_RESAMPLE_HINT)
