"""Keep a CUTS hierarchy in the MRML scene, so a saved scene (.mrb or .mrml + files) reopens with a working slider.

Why these nodes: a scripted (Python) node cannot bring its own storage node, and node attributes are only XML
strings, so the arrays are put in nodes whose storage Slicer (and slicer-core) already know how to write and
read; saving the scene then copies them into the bundle like any other data:

- the hierarchy node is a vtkMRMLTableNode (.tsv): one row per kept level (level, step, clusters), plus
  attributes for the format, shape, 2D flag, ITK geometry, dtypes and the engine's info dictionary (JSON), and
  node references to the data nodes below and to the input volume;
- `atom_map` -> vtkMRMLLabelMapVolumeNode on the input grid (.nrrd), so it is also placed right in space;
- `merge_tree` (T steps x M atoms) -> vtkMRMLLabelMapVolumeNode of M x T x 1 voxels (.nrrd, compressed binary:
  a table of T x M cells would be slow to write and parse);
- `persistent` (when present) -> vtkMRMLLabelMapVolumeNode on the input grid;
- `levels` are not stored when they are what the merge tree says (`merge_tree[step][atom_map] + 1`, the
  Hierarchy contract): they are rebuilt on load. If they differ, they are stored as one labelmap stacking the
  L levels along z, so nothing is lost either way.

Every node carries the attribute CUTS.Role so a module GUI can keep them out of its input selectors.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import slicer
import vtk
from CUTSSegmentationJobs.engine import (
    HIERARCHY_FORMAT,
    READABLE_FORMATS,
    Geometry,
    Hierarchy,
    InputError,
    Levels,
    LevelStack,
    smallest_uint,
)

from .bridge import (
    _array_of_image,
    _name,
    _numpy_to_matrix,
    _set_image_from_array,
    ijk_to_ras_of,
    volume_shape,
)

ROLE = "CUTS.Role"
ROLE_HIERARCHY = "hierarchy"
_REF = {
    "atom_map": "cutsAtomMap",
    "merge_tree": "cutsMergeTree",
    "persistent": "cutsPersistent",
    "levels": "cutsLevels",
    "reference": "cutsReferenceVolume",
}


# --------------------------------------------------------------------------- helpers
def _as_unsigned(array: np.ndarray, what: str) -> np.ndarray:
    """Non-negative integers in the smallest unsigned type (NRRD stores these natively)."""
    array = np.asarray(array)
    if array.dtype.kind not in "ui":
        raise ValueError(f"hierarchy {what} must be integer, got {array.dtype}")
    if array.size and array.dtype.kind == "i" and int(array.min()) < 0:
        raise ValueError(f"hierarchy {what} must not be negative")
    return array.astype(smallest_uint(int(array.max(initial=0))), copy=False)


def _add_labelmap(scene: Any, name: str, role: str, array3d: np.ndarray, ijk_to_ras: np.ndarray) -> Any:
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name)
    image = vtk.vtkImageData()
    _set_image_from_array(image, array3d)
    node.SetAndObserveImageData(image)
    node.SetIJKToRASMatrix(_numpy_to_matrix(ijk_to_ras))
    node.SetAttribute(ROLE, role)
    node.AddDefaultStorageNode()
    return node


def _int_column(name: str, values: np.ndarray) -> vtk.vtkIntArray:
    column = vtk.vtkIntArray()
    column.SetName(name)
    for value in values:
        column.InsertNextValue(int(value))
    return column


def _read_labelmap(node: Any, what: str) -> np.ndarray:
    if node is None or node.GetImageData() is None:
        raise InputError(f"the CUTS hierarchy in this scene lacks its {what} data: was the scene saved completely?")
    return _array_of_image(node.GetImageData())[..., 0].copy()


# --------------------------------------------------------------------------- store / load
def store_hierarchy_in_scene(
    scene: Any,
    hierarchy: Hierarchy | str | Path,
    reference_volume_node: Any | None = None,
    name: str | None = None,
) -> Any:
    """Add `hierarchy` (or a hierarchy.npz path) to `scene`; returns the hierarchy (table) node.

    With `reference_volume_node` the voxel data nodes are put on that volume's grid and parent transform (and its
    shape is checked); otherwise they are placed with the hierarchy's own geometry.
    """
    if not isinstance(hierarchy, Hierarchy):
        hierarchy = Hierarchy.load(hierarchy)
    shape = hierarchy.shape
    grid = (1,) + tuple(shape) if len(shape) == 2 else tuple(shape)
    if reference_volume_node is not None:
        if volume_shape(reference_volume_node) != grid:
            raise InputError(
                f"the hierarchy was computed for {grid} voxels (z, y, x) but volume "
                f"'{_name(reference_volume_node)}' has {volume_shape(reference_volume_node)}"
            )
        ijk_to_ras = ijk_to_ras_of(reference_volume_node)
        transform_id = reference_volume_node.GetTransformNodeID()
    else:
        ijk_to_ras = hierarchy.geometry.ijk_to_ras_matrix()
        transform_id = None
    base = name or (f"CUTS hierarchy ({_name(reference_volume_node)})" if reference_volume_node else "CUTS hierarchy")

    atom_map = _as_unsigned(hierarchy.atom_map, "atom_map")
    merge_tree = _as_unsigned(np.atleast_2d(hierarchy.merge_tree), "merge_tree")
    try:
        levels_rebuildable = isinstance(hierarchy.levels, LevelStack) or all(
            np.array_equal(hierarchy.step_map(int(step)), hierarchy.levels[i])
            for i, step in enumerate(hierarchy.level_steps)
        )
    except IndexError:  # steps or atoms outside the merge tree: keep the levels themselves
        levels_rebuildable = False

    dtypes = {
        "atom_map": np.asarray(hierarchy.atom_map).dtype.name,
        "merge_tree": np.asarray(hierarchy.merge_tree).dtype.name,
        "levels": hierarchy.levels.dtype.name,
    }
    data_nodes: dict[str, Any] = {
        "atom_map": _add_labelmap(scene, f"{base} atoms", "atom_map", atom_map.reshape(grid), ijk_to_ras),
        # M x T x 1 voxels: numpy (z=1, y=T, x=M); identity geometry, it is not an image.
        "merge_tree": _add_labelmap(scene, f"{base} merge tree", "merge_tree", merge_tree[np.newaxis], np.eye(4)),
    }
    if hierarchy.persistent is not None:
        persistent = _as_unsigned(hierarchy.persistent, "persistent")
        dtypes["persistent"] = np.asarray(hierarchy.persistent).dtype.name
        data_nodes["persistent"] = _add_labelmap(
            scene,
            f"{base} persistent",
            "persistent",
            persistent.reshape(grid),
            ijk_to_ras,
        )
    if not levels_rebuildable:
        levels = _as_unsigned(hierarchy.levels, "levels").reshape((-1,) + grid[1:])
        data_nodes["levels"] = _add_labelmap(scene, f"{base} levels", "levels", levels, ijk_to_ras)
    for key in ("atom_map", "persistent", "levels"):
        if key in data_nodes and transform_id:
            data_nodes[key].SetAndObserveTransformNodeID(transform_id)

    table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", base)
    table = table_node.GetTable()
    table.AddColumn(_int_column("level", np.arange(hierarchy.n_levels)))
    table.AddColumn(_int_column("step", hierarchy.level_steps))
    table.AddColumn(_int_column("clusters", hierarchy.n_clusters))
    table_node.SetAttribute(ROLE, ROLE_HIERARCHY)
    table_node.SetAttribute("CUTS.Format", HIERARCHY_FORMAT)
    table_node.SetAttribute("CUTS.Shape", json.dumps(list(shape)))
    table_node.SetAttribute("CUTS.Is2D", "1" if hierarchy.is_2d else "0")
    table_node.SetAttribute(
        "CUTS.Geometry",
        json.dumps(
            {
                "spacing": list(hierarchy.geometry.spacing),
                "origin": list(hierarchy.geometry.origin),
                "direction": list(hierarchy.geometry.direction),
            }
        ),
    )
    table_node.SetAttribute("CUTS.Dtypes", json.dumps(dtypes))
    table_node.SetAttribute("CUTS.Info", json.dumps(hierarchy.info, default=str))
    for key, node in data_nodes.items():
        table_node.SetNodeReferenceID(_REF[key], node.GetID())
    if reference_volume_node is not None:
        table_node.SetNodeReferenceID(_REF["reference"], reference_volume_node.GetID())
    table_node.AddDefaultStorageNode()
    return table_node


def load_hierarchy_from_scene(hierarchy_node: Any) -> Hierarchy:
    """Rebuild the Hierarchy held by a node made by `store_hierarchy_in_scene` (also after a scene reload)."""
    if hierarchy_node is None or hierarchy_node.GetAttribute(ROLE) != ROLE_HIERARCHY:
        raise InputError("the selected node is not a CUTS hierarchy")
    if hierarchy_node.GetAttribute("CUTS.Format") not in READABLE_FORMATS:
        raise InputError(f"unsupported CUTS hierarchy format {hierarchy_node.GetAttribute('CUTS.Format')!r}")
    table = hierarchy_node.GetTable()

    def column(name: str) -> np.ndarray:
        array = table.GetColumnByName(name)
        if array is None:
            raise InputError(f"the CUTS hierarchy table lacks its '{name}' column")
        return np.array([int(array.GetVariantValue(r).ToInt()) for r in range(table.GetNumberOfRows())])

    level_steps = column("step")
    n_clusters = column("clusters")
    shape = tuple(int(s) for s in json.loads(hierarchy_node.GetAttribute("CUTS.Shape")))
    dtypes = json.loads(hierarchy_node.GetAttribute("CUTS.Dtypes") or "{}")
    geometry_json = json.loads(hierarchy_node.GetAttribute("CUTS.Geometry"))
    info = json.loads(hierarchy_node.GetAttribute("CUTS.Info") or "{}")

    stored_atoms = _read_labelmap(hierarchy_node.GetNodeReference(_REF["atom_map"]), "atom map").reshape(shape)
    atom_map = stored_atoms.astype(dtypes.get("atom_map", stored_atoms.dtype.name), copy=False)
    merge_tree = _read_labelmap(hierarchy_node.GetNodeReference(_REF["merge_tree"]), "merge tree")[0]
    merge_tree = merge_tree.astype(dtypes.get("merge_tree", merge_tree.dtype.name), copy=False)

    levels_dtype = np.dtype(dtypes.get("levels", "uint16"))
    levels_node = hierarchy_node.GetNodeReference(_REF["levels"])
    levels: Levels
    if levels_node is not None:
        levels = _read_labelmap(levels_node, "levels").reshape((len(level_steps),) + shape)
        levels = levels.astype(levels_dtype, copy=False)
    else:  # the merge tree's levels: read from the atom map when shown, never stored L times over
        levels = LevelStack.from_merge_tree(atom_map, merge_tree, level_steps, dtype=levels_dtype)

    persistent = None
    persistent_node = hierarchy_node.GetNodeReference(_REF["persistent"])
    if persistent_node is not None:
        persistent = _read_labelmap(persistent_node, "persistent structures").reshape(shape)
        persistent = persistent.astype(dtypes.get("persistent", persistent.dtype.name), copy=False)

    return Hierarchy(
        levels=levels,
        n_clusters=n_clusters,
        level_steps=level_steps,
        atom_map=atom_map,
        merge_tree=merge_tree,
        persistent=persistent,
        geometry=Geometry(
            spacing=tuple(float(v) for v in geometry_json["spacing"]),
            origin=tuple(float(v) for v in geometry_json["origin"]),
            direction=tuple(float(v) for v in geometry_json["direction"]),
        ),
        is_2d=hierarchy_node.GetAttribute("CUTS.Is2D") == "1",
        info=info,
    )


def find_hierarchy_nodes(scene: Any, reference_volume_node: Any | None = None) -> list[Any]:
    """Hierarchy nodes in the scene, newest last; only those made for `reference_volume_node` if given."""
    found = []
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLTableNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLTableNode")
        if node.GetAttribute(ROLE) != ROLE_HIERARCHY:
            continue
        wanted = reference_volume_node.GetID() if reference_volume_node is not None else None
        if wanted is not None and node.GetNodeReferenceID(_REF["reference"]) != wanted:
            continue
        found.append(node)
    return found


def remove_hierarchy_from_scene(hierarchy_node: Any) -> None:
    """Remove a hierarchy node and the data nodes it owns (never the referenced input volume)."""
    scene = hierarchy_node.GetScene()
    if scene is None:
        return
    for key in ("atom_map", "merge_tree", "persistent", "levels"):
        node = hierarchy_node.GetNodeReference(_REF[key])
        if node is not None:
            scene.RemoveNode(node)
    scene.RemoveNode(hierarchy_node)


# --------------------------------------------------------------------------- scene bundles
def write_scene_bundle(scene: Any, path: str | Path) -> Path:
    """Save the whole scene as a .mrb (what Slicer's 'Save scene as bundle' does); InputError if it fails."""
    path = Path(path)
    messages = slicer.vtkMRMLMessageCollection()
    if not scene.WriteToMRB(str(path), None, messages):
        raise InputError(f"could not save the scene to {path}: {messages.GetAllMessagesAsString()}")
    return path


def read_scene_bundle(scene: Any, path: str | Path, cache_directory: str | Path | None = None) -> None:
    """Load a .mrb into `scene` (added to what is there).

    The Slicer application gives every scene a data I/O manager with a cache folder, which ReadFromMRB unpacks
    into; a bare slicer-core scene has none, so one is attached here (in a temporary folder unless given).
    """
    if scene.GetDataIOManager() is None or scene.GetCacheManager() is None:
        cache = slicer.vtkCacheManager()
        cache.SetRemoteCacheDirectory(str(cache_directory or tempfile.mkdtemp(prefix="cuts-mrb-")))
        io_manager = slicer.vtkDataIOManager()
        io_manager.SetCacheManager(cache)
        scene.SetCacheManager(cache)
        scene.SetDataIOManager(io_manager)
    messages = slicer.vtkMRMLMessageCollection()
    if not scene.ReadFromMRB(str(path), False, messages):
        raise InputError(f"could not open {path}: {messages.GetAllMessagesAsString()}")
