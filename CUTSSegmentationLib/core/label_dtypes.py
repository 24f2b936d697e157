"""The integer types label maps are stored in: never wider than the labels need.

Hierarchy levels are uint16 (uint32 past 65535 labels); files written for Slicer use the smallest of
uint8/uint16/uint32, as Slicer itself does.
"""

from __future__ import annotations

import numpy as np

_UNSIGNED = (np.uint8, np.uint16, np.uint32)


def smallest_uint(max_value: int) -> np.dtype:
    """uint16 while labels fit, uint32 beyond: the type of hierarchy levels and per-image label maps.

    Examples
    --------
    >>> smallest_uint(40), smallest_uint(70_000)
    (dtype('uint16'), dtype('uint32'))
    """
    return np.dtype(np.uint16) if max_value <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


def label_dtype(labels: np.ndarray, keep_unsigned: bool = False) -> np.dtype:
    """The smallest of uint8, uint16, uint32 that holds every value of `labels`.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer or bool label map, no negative values.
    keep_unsigned : bool
        Keep a map that already is uint8, uint16 or uint32 as it is.

    Returns
    -------
    numpy.dtype

    Raises
    ------
    ValueError
        Non-integer or negative labels, or a value past uint32.

    Examples
    --------
    >>> label_dtype(np.array([0, 3], dtype=np.int64)), label_dtype(np.array([0, 3], dtype=np.uint16), True)
    (dtype('uint8'), dtype('uint16'))
    """
    if keep_unsigned and labels.dtype in _UNSIGNED:
        return labels.dtype
    if labels.dtype.kind not in "biu":
        raise ValueError(f"label maps must be integer or bool, got {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError("label maps cannot hold negative values")
    top = int(labels.max()) if labels.size else 0
    for dtype in _UNSIGNED:
        if top <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"label value {top} does not fit in uint32")
