"""The in-memory image every module trades in: pixels plus the physical geometry they came with.

Arrays are always 4D `(Z, Y, X, C)` float32 (Z = 1 for a 2D image, C = 1 for grey, 3 for RGB), so the encoder,
embeddings and condensation never branch on 2D vs 3D. Geometry follows ITK/SimpleITK (and NRRD, NIfTI via
ITK): physical points are LPS millimetres, `point = origin + direction @ (spacing * index)` with index in
(x, y, z) order. 3D Slicer shows RAS, which flips the first two axes; `ras_to_index` does that conversion
for seeds placed in Slicer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from .errors import InputError

#: LPS <-> RAS: negate the first two physical axes.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Geometry:
    """Where the voxel grid sits in space (ITK convention, LPS millimetres, index order x, y, z)."""

    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def index_to_lps(self, index_xyz: Sequence[float]) -> np.ndarray:
        idx = np.asarray(index_xyz, dtype=float)
        return np.asarray(self.origin) + self.direction_matrix @ (np.asarray(self.spacing) * idx)

    def lps_to_index(self, point_lps: Sequence[float]) -> np.ndarray:
        """Continuous (x, y, z) index of a physical LPS point."""
        offset = np.asarray(point_lps, dtype=float) - np.asarray(self.origin)
        return np.linalg.solve(self.direction_matrix, offset) / np.asarray(self.spacing)

    def index_to_ras(self, index_xyz: Sequence[float]) -> np.ndarray:
        return _LPS_TO_RAS @ self.index_to_lps(index_xyz)

    def ras_to_index(self, point_ras: Sequence[float]) -> np.ndarray:
        return self.lps_to_index(_LPS_TO_RAS @ np.asarray(point_ras, dtype=float))

    def ijk_to_ras_matrix(self) -> np.ndarray:
        """4x4 homogeneous IJK -> RAS matrix, as a Slicer volume node's SetIJKToRASMatrix expects."""
        m = np.eye(4)
        m[:3, :3] = _LPS_TO_RAS @ self.direction_matrix @ np.diag(self.spacing)
        m[:3, 3] = _LPS_TO_RAS @ np.asarray(self.origin, dtype=float)
        return m

    @staticmethod
    def from_ijk_to_ras_matrix(matrix: np.ndarray) -> "Geometry":
        """Inverse of `ijk_to_ras_matrix` (spacing from column norms, direction from normalised columns)."""
        m = np.asarray(matrix, dtype=float)
        lps = _LPS_TO_RAS @ m[:3, :3]
        spacing = np.linalg.norm(lps, axis=0)
        spacing[spacing == 0] = 1.0
        direction = lps / spacing
        origin = _LPS_TO_RAS @ m[:3, 3]
        return Geometry(
            spacing=tuple(float(s) for s in spacing),
            origin=tuple(float(o) for o in origin),
            direction=tuple(float(d) for d in direction.reshape(-1)),
        )


def voxel_size_zyx(spacing_xyz: Optional[Sequence[float]], ndim: int) -> tuple[float, ...]:
    """Voxel size (mm) along an array's axes, (Z, Y, X) or (Y, X), from a spacing in (x, y[, z]) order.

    Masks and arrays are indexed (z, y, x) while spacings come as images give them (x, y, z). Without a spacing
    every axis is 1 (distances in voxels). A 2D array takes (x, y) or (x, y, z) (z unused); a 3D array needs
    (x, y, z); every size must be positive and finite, else InputError.

    Examples
    --------
    >>> voxel_size_zyx((0.8, 0.8, 6.5), 3)
    (6.5, 0.8, 0.8)
    >>> voxel_size_zyx((0.8, 0.7, 6.5), 2)
    (0.7, 0.8)
    >>> voxel_size_zyx(None, 3)
    (1.0, 1.0, 1.0)
    """
    if spacing_xyz is None:
        return (1.0,) * ndim
    sizes = [float(s) for s in spacing_xyz]
    if not ndim <= len(sizes) <= 3:
        raise InputError(f"spacing {tuple(sizes)} does not fit a {ndim}D array (give x, y[, z] in mm)")
    if not all(math.isfinite(s) and s > 0 for s in sizes):
        raise InputError(f"spacing must be positive and finite, got {tuple(sizes)}")
    return tuple(reversed(sizes[:ndim]))


@dataclass
class ImageData:
    """Pixels as float32 `(Z, Y, X, C)` plus geometry; `is_2d` marks a single 2D image (Z == 1)."""

    array: np.ndarray
    geometry: Geometry = field(default_factory=Geometry)
    is_2d: bool = False
    source: Optional[str] = None
    #: numpy dtype name of the pixels as stored in the file ("uint8" for PNG/JPG); picks the normalisation.
    source_dtype: Optional[str] = None
    #: Where each channel came from when co-registered sequences were stacked (`io.sequences`), in channel
    #: order; empty for an image read from one file.
    sequences: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.array.ndim != 4:
            raise ValueError(f"ImageData.array must be (Z, Y, X, C), got shape {self.array.shape}")
        if self.is_2d and self.array.shape[0] != 1:
            raise ValueError("a 2D ImageData has exactly one slice")

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """(Y, X) for a 2D image, (Z, Y, X) for a volume: the shape of every label map made from it."""
        z, y, x, _ = self.array.shape
        return (y, x) if self.is_2d else (z, y, x)

    @property
    def channels(self) -> int:
        return int(self.array.shape[3])

    @property
    def n_pixels(self) -> int:
        z, y, x, _ = self.array.shape
        return int(z * y * x)

    def label_volume(self, labels: np.ndarray) -> np.ndarray:
        """View a label map of `spatial_shape` as (Z, Y, X) so 2D and 3D code paths are the same."""
        return labels.reshape(self.array.shape[:3])
