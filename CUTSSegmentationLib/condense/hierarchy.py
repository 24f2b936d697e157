"""The multigranular result of CUTS: nested label maps, the merge tree behind them, and the persistent map.

The design, its sources and the choices made: docs/architecture.md, section `condense/hierarchy.py`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..core.errors import InputError
from ..core.imagedata import Geometry
from ..core.label_dtypes import smallest_uint

HIERARCHY_FORMAT = "cuts-hierarchy/1"
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


@dataclass
class Hierarchy:
    levels: np.ndarray
    n_clusters: np.ndarray
    level_steps: np.ndarray
    atom_map: np.ndarray
    merge_tree: np.ndarray
    persistent: Optional[np.ndarray] = None
    geometry: Geometry = field(default_factory=Geometry)
    is_2d: bool = True
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
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
        """Label map of kept level `index` (0 = finest). Negative indices count from the coarsest."""
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
            The stored label map (not a copy).

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
        """Write a compressed .npz atomically (temp file + rename): no half-written file is ever left."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "levels": self.levels,
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
        if self.persistent is not None:
            arrays["persistent"] = self.persistent
        fd, tmp = tempfile.mkstemp(prefix=".hierarchy-", suffix=".npz", dir=str(path.parent))
        os.close(fd)
        try:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @staticmethod
    def load(path: Union[str, Path]) -> "Hierarchy":
        """Read a hierarchy.npz written by `save` (no pickles: allow_pickle=False)."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"hierarchy file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                info = json.loads(str(data["info"])) if "info" in data else {}
                if info.get("format") != HIERARCHY_FORMAT:
                    raise InputError(f"{path} is not a CUTS hierarchy file")
                info.pop("format", None)
                return Hierarchy(
                    levels=data["levels"],
                    n_clusters=data["n_clusters"],
                    level_steps=data["level_steps"],
                    atom_map=data["atom_map"],
                    merge_tree=data["merge_tree"],
                    persistent=data["persistent"] if "persistent" in data else None,
                    geometry=Geometry(
                        spacing=tuple(float(v) for v in data["spacing"]),
                        origin=tuple(float(v) for v in data["origin"]),
                        direction=tuple(float(v) for v in data["direction"]),
                    ),
                    is_2d=bool(data["is_2d"]),
                    info=info,
                )
        except InputError:
            raise
        except Exception as exc:  # zip/npz/key errors: a corrupt or foreign file
            raise InputError(f"cannot read hierarchy file {path}: {exc}") from exc
