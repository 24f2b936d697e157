"""The multigranular result of CUTS: nested label maps, the merge tree behind them, and the persistent map.

The design, its sources and the choices made: docs/architecture.md, section `condense/hierarchy.py`.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..core.errors import InputError, ResourceError
from ..core.imagedata import Geometry
from ..core.label_dtypes import smallest_uint
from ..io.memory import available_memory_bytes
from ..io.staging import atomic_write
from ..io.validation import check_geometry
from .level_stack import Levels, LevelStack

HIERARCHY_FORMAT = "cuts-hierarchy/2"
#: Formats `Hierarchy.load` reads: /1 files store every level; /2 files store them only where they are not
#: the merge tree's (`LevelStack` rebuilds those).
READABLE_FORMATS = ("cuts-hierarchy/1", HIERARCHY_FORMAT)
#: The level name of the persistent-structures map.
PERSISTENT = "persistent"
#: The level name of "the structure's own level", chosen per click (`condense.structures.structure_at_seed`).
AUTO = "auto"
#: A kept level's index (negative counts from the coarsest), `PERSISTENT` or `AUTO`.
LevelSpec = Union[int, str]


def parse_level(value: Union[None, int, str], name: str = "level") -> LevelSpec:
    """A level as users write it: ``"persistent"`` (or None), ``"auto"`` or an integer index, as text or a number.

    Parameters
    ----------
    value : None, int or str
        What the user gave.
    name : str
        How the user gave it (``"--level"`` on the command line), for the error message.

    Returns
    -------
    int, "persistent" or "auto"

    Raises
    ------
    InputError
        For anything else, in one line.

    Examples
    --------
    >>> parse_level("3"), parse_level(None), parse_level(" Persistent "), parse_level("auto")
    (3, 'persistent', 'persistent', 'auto')
    """
    if value is None:
        return PERSISTENT
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    text = str(value).strip().lower()
    if text in (PERSISTENT, AUTO):
        return text
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{name} must be an integer level index, 'auto' or 'persistent', got '{value}'") from None


def level_maps(
    atom_labels: np.ndarray, merge_tree: np.ndarray, level_events: Sequence[int], shape: Sequence[int]
) -> tuple[np.ndarray, LevelStack]:
    """(atom map, levels): the atoms as a label map of `shape`, and each kept level's labels (finest first).

    Level labels are cluster id + 1, so 0 stays free for "no label"; both take the smallest unsigned type. The
    levels are a `LevelStack`: read from the atom map when asked, never stored L times over.

    Examples
    --------
    >>> tree = np.array([[0, 1, 2], [0, 0, 1]])  # step 0: three clusters; step 1: atoms 0 and 1 merged
    >>> atoms, levels = level_maps(np.array([0, 1, 2, 2]), tree, [0, 1], (2, 2))
    >>> np.asarray(levels).tolist()
    [[[1, 2], [3, 3]], [[1, 1], [2, 2]]]
    """
    shape = tuple(int(s) for s in shape)
    atom_map = atom_labels.astype(smallest_uint(int(atom_labels.max()))).reshape(shape)
    return atom_map, LevelStack.from_merge_tree(atom_map, merge_tree, level_events)


@dataclass
class Hierarchy:
    """Kept levels (finest first), their cluster counts and steps, the atoms and merge tree, the persistent map.

    `levels` is a `LevelStack` when the levels are the merge tree's (what `segment` returns and `load` reads
    back): each level is computed when read. Label maps given as an array (a peer method's one map) are kept
    as they are.
    """

    levels: Levels
    n_clusters: np.ndarray
    level_steps: np.ndarray
    atom_map: np.ndarray
    merge_tree: np.ndarray
    persistent: Optional[np.ndarray] = None
    geometry: Geometry = field(default_factory=Geometry)
    is_2d: bool = True
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.levels, LevelStack):
            self.levels = np.asarray(self.levels)
        self.n_clusters = np.asarray(self.n_clusters, dtype=np.int64)
        self.level_steps = np.asarray(self.level_steps, dtype=np.int64)
        if self.levels.ndim < 3:
            raise ValueError("levels must be (L, *image shape)")
        if len(self.n_clusters) != len(self.levels) or len(self.level_steps) != len(self.levels):
            raise ValueError("levels, n_clusters and level_steps disagree in length")
        if self.atom_map.shape != self.shape:
            raise ValueError("atom_map must have the image shape")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.levels.shape[1:])

    @property
    def n_levels(self) -> int:
        return int(self.levels.shape[0])

    def level(self, index: int) -> np.ndarray:
        """Label map of kept level `index` (0 = finest; negative counts from the coarsest), computed when read."""
        return self.levels[index]

    def label_map(self, level: Union[None, int, str] = PERSISTENT, name: str = "level") -> np.ndarray:
        """The label map of `level` (see `parse_level`): a kept level or the persistent map, range-checked.

        Parameters
        ----------
        level : None, int or str
            Level index (0 = finest, negative from the coarsest) or ``"persistent"``.
        name : str
            How the user gave the level, for error messages.

        Returns
        -------
        numpy.ndarray
            The label map (the stored array where the map is stored, else computed from the atom map).

        Raises
        ------
        InputError
            Unreadable or out-of-range level, or no persistent map in this hierarchy.

        Examples
        --------
        >>> h = Hierarchy.load("hierarchy.npz")  # doctest: +SKIP
        >>> h.label_map("persistent").shape == h.shape  # doctest: +SKIP
        True
        """
        spec = parse_level(level, name)
        if spec == PERSISTENT:
            if self.persistent is None:
                raise InputError(f"this hierarchy has no persistent-structures map; choose {name} K instead")
            return self.persistent
        if spec == AUTO:
            raise InputError(
                f"{name} auto is chosen per click (structure_at_seed), not one label map; give K or persistent"
            )
        index = int(spec)
        if not -self.n_levels <= index < self.n_levels:
            raise InputError(f"{name} {index} is out of range: this hierarchy has levels 0..{self.n_levels - 1}")
        return self.levels[index]

    def step_map(self, step: int) -> np.ndarray:
        """Label map after any condensation step (levels are a subset of these)."""
        tree = self.merge_tree[step]
        return (tree[self.atom_map].astype(np.int64) + 1).astype(smallest_uint(int(tree.max()) + 1))

    def level_for_clusters(self, n: int) -> int:
        """Index of the kept level whose cluster count is closest to `n`."""
        return int(np.argmin(np.abs(self.n_clusters - n)))

    # ------------------------------------------------------------------ files
    def save(self, path: Union[str, Path]) -> Path:
        """Write a compressed .npz atomically (temp file + rename): no half-written file is ever left.

        Levels that are the merge tree's (a `LevelStack`) are not written: `load` rebuilds them from the atoms.
        """
        path = Path(path)
        arrays: dict[str, np.ndarray] = {
            "n_clusters": self.n_clusters,
            "level_steps": self.level_steps,
            "atom_map": self.atom_map,
            "merge_tree": self.merge_tree,
            "spacing": np.asarray(self.geometry.spacing, dtype=float),
            "origin": np.asarray(self.geometry.origin, dtype=float),
            "direction": np.asarray(self.geometry.direction, dtype=float),
            "is_2d": np.asarray(self.is_2d),
            "info": np.asarray(json.dumps({"format": HIERARCHY_FORMAT, **self.info}, default=str)),
        }
        if not isinstance(self.levels, LevelStack):
            arrays["levels"] = self.levels
        if self.persistent is not None:
            arrays["persistent"] = self.persistent

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, **arrays)

        return atomic_write(path, write)

    @staticmethod
    def load(path: Union[str, Path]) -> "Hierarchy":
        """Read a hierarchy.npz written by `save`; any problem is one `InputError` line naming the file.

        No pickles (allow_pickle=False); the arrays' declared sizes are checked against the file and the
        memory before anything is decompressed (a zip bomb is refused); the geometry, the 2D/3D flag and
        the index ranges are checked so a damaged file cannot reach ITK or an index error.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(f"hierarchy file not found: {path}")
        try:
            _check_npz_sizes(path)
            with np.load(path, allow_pickle=False) as data:
                info = json.loads(str(data["info"])) if "info" in data else {}
                if not isinstance(info, dict) or info.get("format") not in READABLE_FORMATS:
                    raise InputError(f"{path} is not a CUTS hierarchy file")
                info.pop("format", None)
                geometry = Geometry(
                    spacing=_three_floats(data["spacing"], 3),
                    origin=_three_floats(data["origin"], 3),
                    direction=_three_floats(data["direction"], 9),
                )
                check_geometry(geometry, str(path))
                integer_keys = [k for k in _INTEGER_ARRAYS if k in data] + (
                    ["persistent"] if "persistent" in data else []
                )
                if any(data[key].dtype.kind not in "iu" for key in integer_keys):
                    raise InputError(f"{path}: corrupt hierarchy file (label maps and counts must hold integers)")
                atom_map, merge_tree, level_steps = data["atom_map"], data["merge_tree"], data["level_steps"]
                _check_atoms(atom_map, merge_tree, level_steps, path)
                hierarchy = Hierarchy(
                    levels=data["levels"]
                    if "levels" in data
                    else LevelStack.from_merge_tree(atom_map, merge_tree, level_steps),
                    n_clusters=data["n_clusters"],
                    level_steps=level_steps,
                    atom_map=atom_map,
                    merge_tree=merge_tree,
                    persistent=data["persistent"] if "persistent" in data else None,
                    geometry=geometry,
                    is_2d=bool(data["is_2d"]),
                    info=info,
                )
        except (InputError, ResourceError):
            raise
        except Exception as exc:  # zip/npz/key/shape errors: a corrupt or foreign file
            raise InputError(f"cannot read hierarchy file {path}: {_first_line(exc)}") from None
        _check_consistent(hierarchy, path)
        return hierarchy


#: Arrays of a hierarchy file that hold integers (labels, counts, indices).
_INTEGER_ARRAYS = ("levels", "n_clusters", "level_steps", "atom_map", "merge_tree")


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:160]


def _three_floats(values: np.ndarray, count: int) -> tuple[float, ...]:
    flat = np.asarray(values).reshape(-1)
    if flat.size != count or flat.dtype.kind not in "biuf":
        raise ValueError(f"geometry entry has {flat.size} values of type {flat.dtype}, expected {count} numbers")
    return tuple(float(v) for v in flat)


def _check_npz_sizes(path: Path) -> None:
    """Refuse an .npz whose arrays would not fit in memory, or whose headers claim more than the archive holds.

    Reads only the zip directory and each array's .npy header: nothing large is decompressed.
    """
    total = 0
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            with archive.open(member) as stream:
                version = np.lib.format.read_magic(stream)
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(stream)
            declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            if declared > member.file_size:
                raise InputError(f"{path}: corrupt hierarchy file ({member.filename} claims more data than it holds)")
            total += member.file_size
    available = available_memory_bytes()
    if available is not None and total > available:
        raise ResourceError(
            f"{path}: the hierarchy needs {total / 2**30:.1f} GiB when decompressed, more than the "
            f"{available / 2**30:.1f} GiB of memory available"
        )


def _check_atoms(atoms: np.ndarray, tree: np.ndarray, steps: np.ndarray, path: Path) -> None:
    """The index ranges that `step_map` and a `LevelStack` rely on: atoms and steps inside the merge tree."""
    if tree.ndim != 2 or (atoms.size and (int(atoms.min()) < 0 or int(atoms.max()) >= tree.shape[1])):
        raise InputError(f"{path}: corrupt hierarchy file (the atom map does not index the merge tree)")
    if steps.ndim != 1 or (steps.size and (int(steps.min()) < 0 or int(steps.max()) >= tree.shape[0])):
        raise InputError(f"{path}: corrupt hierarchy file (a level's step is not in the merge tree)")


def _check_consistent(hierarchy: Hierarchy, path: Path) -> None:
    """Shapes that label maps and masks rely on."""
    levels = hierarchy.levels
    spatial = levels.ndim - 1
    if hierarchy.is_2d and not (spatial == 2 or (spatial == 3 and levels.shape[1] == 1)):
        raise InputError(f"{path}: corrupt hierarchy file (marked 2D but its maps are {levels.shape[1:]})")
    if not hierarchy.is_2d and spatial != 3:
        raise InputError(f"{path}: corrupt hierarchy file (marked 3D but its maps are {levels.shape[1:]})")
    if hierarchy.n_levels < 1 or min(levels.shape[1:]) < 1:
        raise InputError(f"{path}: corrupt hierarchy file (no label maps)")
    if hierarchy.persistent is not None and hierarchy.persistent.shape != hierarchy.shape:
        raise InputError(f"{path}: corrupt hierarchy file (the persistent map's shape differs from the levels')")
