"""Edge snap: a kept structure's outline moved out to the strongest edge just beyond it.

A structure the hierarchy keeps (and `edge_growth` grows) is a union of atoms whose outline lies where the
atoms' embeddings changed, which is often a voxel or two inside the organ's outline: the rim differs a
little from the core (a tumour's fading edema, a lung's dense periphery, a spleen's partial-volume rim). The
outline the eye draws is the ridge of the image's gradient. A marker-controlled watershed of the gradient
magnitude, flooded from the structure's inside and from beyond a thin band around it, puts the outline on
that ridge; only what it adds outside the structure is kept, so what the hierarchy holds is never cut. The
band is at most `SNAP_REACH_MM` and a fraction of the structure's depth: a thin structure (a spinal cord in
its sheath of fluid) keeps its own outline rather than jumping to the sheath's stronger one.

See docs/benchmarks.md ("3D volumes: snapping to the edge") for the measurements behind the rule, beside a
plain dilation.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from ..core.distances import squared_distance_to
from ..core.imagedata import voxel_size_zyx
from .boundary import boundary_contrast, region_box, robust_centre_and_spread, with_channels
from .edge_growth import GROWTH_SPREADS

#: The widest band (mm) around the structure the outline may move through.
SNAP_REACH_MM = 3.0
#: The band is at most this fraction of the structure's depth (its largest inscribed radius).
SNAP_DEPTH_FRACTION = 0.2
#: Scale (mm) of the Gaussian derivative the image's gradient is taken at.
GRADIENT_SIGMA_MM = 1.0
#: The snapped outline is kept only where it is an edge: the image changes across it by at least this many
#: robust spreads of the structure's own intensities (`boundary.boundary_contrast`), as a growth's must.
MIN_CONTRAST = GROWTH_SPREADS


def snap_outward(
    region: np.ndarray,
    image: np.ndarray,
    spacing_xyz: Optional[Sequence[float]] = None,
    *,
    reach_mm: float = SNAP_REACH_MM,
    depth_fraction: float = SNAP_DEPTH_FRACTION,
    min_contrast: float = MIN_CONTRAST,
) -> np.ndarray:
    """`region` with the voxels between its outline and the image's strongest edge just outside it.

    Parameters
    ----------
    region : np.ndarray
        Bool mask of the structure, (Y, X) or (Z, Y, X).
    image : np.ndarray
        Intensities on the same grid, `region.shape` or `region.shape + (C,)`; each channel's gradient is
        taken in units of its robust spread around the structure, and the channels' gradients add in
        quadrature.
    spacing_xyz : sequence of float, optional
        Voxel size (x, y[, z]) in mm (a third value of a 2D image is ignored); None: 1 along every axis.
    reach_mm, depth_fraction : float
        The band around the outline is ``min(reach_mm, depth_fraction * depth)`` wide on either side, where
        ``depth`` is the structure's largest inscribed radius (mm).
    min_contrast : float
        The snapped outline is kept only where the image changes across it by at least this many robust
        spreads (`boundary.boundary_contrast`): on an image with no edge there, the gradient's ridge is noise.

    Returns
    -------
    np.ndarray
        A new bool mask holding all of `region`; `region` unchanged (a copy) where the band is thinner than a
        voxel, the region is empty, or the snapped outline is no edge.

    Examples
    --------
    >>> image = np.zeros((1, 20)); image[0, 4:16] = 10.0; image[0, 4:6] = image[0, 14:16] = 7.0  # a dimmer rim
    >>> region = np.zeros((1, 20), dtype=bool); region[0, 6:14] = True  # the bright core only
    >>> np.flatnonzero(snap_outward(region, image, depth_fraction=0.5)[0]).tolist()  # out to the rim's edge
    [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    """
    region = np.asarray(region, dtype=bool)
    outline = snap_outline(region, image, spacing_xyz, reach_mm=reach_mm, depth_fraction=depth_fraction)
    out = region.copy()
    if outline is None:
        return out
    box, within = outline
    snapped = region[box] | within
    if boundary_contrast(snapped, np.asarray(image)[box]) >= min_contrast:
        out[box] = snapped
    return out


def snap_outline(
    region: np.ndarray,
    image: np.ndarray,
    spacing_xyz: Optional[Sequence[float]] = None,
    *,
    reach_mm: float = SNAP_REACH_MM,
    depth_fraction: float = SNAP_DEPTH_FRACTION,
) -> Optional[tuple[tuple[slice, ...], np.ndarray]]:
    """The watershed's outline around `region`, both ways: what lies inside the image's strongest edge in the
    band around the region's outline, which may also leave out some of the region (`snap_outward` keeps only
    what it adds).

    Parameters
    ----------
    region, image, spacing_xyz, reach_mm, depth_fraction
        As `snap_outward`'s.

    Returns
    -------
    (tuple of slice, np.ndarray) or None
        The box around the region the snap works in (the band and the gradient's support beyond it) and the
        bool mask, in that box, of the watershed's inside (flooded from the voxels deeper inside the region
        than the band); None where the region is empty or the band is thinner than a voxel.

    Examples
    --------
    >>> image = np.zeros((1, 30)); image[0, 8:22] = 10.0
    >>> region = np.zeros((1, 30), dtype=bool); region[0, 6:24] = True  # two voxels beyond the edge each side
    >>> box, within = snap_outline(region, image, depth_fraction=0.5)
    >>> box
    (slice(0, 1, None), slice(0, 30, None))
    >>> np.flatnonzero(within[0]).tolist()  # back to the edge, inside the region
    [8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]
    """
    region = np.asarray(region, dtype=bool)
    image = with_channels(image, region.ndim)
    spacing = voxel_size_zyx(spacing_xyz, region.ndim)
    box = region_box(region, spacing, reach_mm + 4.0 * GRADIENT_SIGMA_MM)  # the band and the Gaussian's support
    if box is None:
        return None
    inside = region[box]
    depth_in = squared_distance_to(~inside, spacing)  # squared mm to the nearest voxel outside
    band = min(float(reach_mm), depth_fraction * float(np.sqrt(depth_in.max())))
    if band < min(spacing):
        return None
    depth_out = squared_distance_to(inside, spacing)
    # Only the band and the markers' voxels next to it take part: deeper marker voxels could only flood
    # voxels already marked, and leaving them out keeps the watershed to the band (seconds on a thorax CT).
    shell = (band + max(spacing)) ** 2
    near = (depth_in <= shell) & (depth_out <= shell)
    markers = np.zeros(inside.shape, dtype=np.uint8)
    markers[depth_in > band**2] = 1
    markers[depth_out > band**2] = 2
    del depth_in, depth_out
    within = watershed(gradient_magnitude(image[box], inside, spacing), markers, mask=near) == 1
    within |= markers == 1  # the deep inside left out of the flood is the watershed's inside too
    return box, within


def gradient_magnitude(image: np.ndarray, inside: np.ndarray, spacing_zyx: Sequence[float]) -> np.ndarray:
    """float32 (...,): the image's Gaussian gradient magnitude at `GRADIENT_SIGMA_MM`, each channel of `image`
    (..., C) in units of its robust spread over `inside` (`boundary.robust_centre_and_spread`; not empty), added
    in quadrature.

    Examples
    --------
    >>> step = np.repeat([0.0, 1.0], 10)[None, :]
    >>> int(np.argmax(gradient_magnitude(step[..., None], step > 0, (1.0, 1.0))[0]))  # the step's edge
    9
    """
    sigma = [GRADIENT_SIGMA_MM / float(s) for s in spacing_zyx]
    total = np.zeros(image.shape[:-1], dtype=np.float32)
    for channel in range(image.shape[-1]):
        values = image[..., channel].astype(np.float32)
        _centre, spread = robust_centre_and_spread(values[inside])
        total += np.square(ndi.gaussian_gradient_magnitude(values / np.float32(spread), sigma=sigma))
    return np.sqrt(total, out=total)
