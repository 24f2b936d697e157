"""The per-image methods by name (``cuts segment --method``): each turns one image into one label map.

``"cuts"`` is not here: it is the encoder + condensation pipeline (`pipeline.segment`). See
docs/peer-methods.md for what each method is and how they compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from ..core.imagedata import ImageData
from ..core.progress import ProgressCallback, no_progress
from . import atlas, gmm, s3net


@dataclass(frozen=True)
class MethodOptions:
    """What the command line passes to a per-image method.

    Attributes
    ----------
    seed : int
        Random seed.
    device : str
        Torch device ("auto", "cpu", "cuda", "mps").
    iterations : int or None
        Optimisation iterations (None: the method's default); ``--epochs`` on the command line.
    atlas : str or None
        ``IMAGE,LABELS`` of the labelled reference (only ``"atlas"`` uses it).
    progress : ProgressCallback
        Progress callback.
    """

    seed: int = 0
    device: str = "auto"
    iterations: Optional[int] = None
    atlas: Optional[str] = None
    progress: ProgressCallback = no_progress


#: (image, options) -> (label map >= 1 of `image.spatial_shape`, what the run records in the hierarchy info).
PerImageMethod = Callable[[ImageData, MethodOptions], tuple[np.ndarray, dict[str, Any]]]


def _run_s3net(image: ImageData, options: MethodOptions) -> tuple[np.ndarray, dict[str, Any]]:
    iterations = options.iterations if options.iterations is not None else s3net.S3_ITERATIONS
    labels = s3net.segment_image_s3net(
        image, iterations=iterations, seed=options.seed, device=options.device, progress=options.progress
    )
    info = s3net.describe()
    info["iterations"] = iterations
    return labels, info


def _run_gmm(image: ImageData, options: MethodOptions) -> tuple[np.ndarray, dict[str, Any]]:
    labels = gmm.segment_image_gmm(image, seed=options.seed)
    return labels, {"method": "gmm", "n_components": 3, "component": "brightest", "threshold": 0.5}


def _run_atlas(image: ImageData, options: MethodOptions) -> tuple[np.ndarray, dict[str, Any]]:
    atlas_image, atlas_labels = atlas.parse_atlas_argument(options.atlas)
    iterations = options.iterations if options.iterations is not None else atlas.ATLAS_ITERATIONS
    labels = atlas.segment_image_atlas(
        image,
        atlas_image,
        atlas_labels,
        iterations=iterations,
        seed=options.seed,
        device=options.device,
        progress=options.progress,
    )
    info = atlas.describe()
    info["atlas"] = options.atlas
    return labels, info


PER_IMAGE_METHODS: dict[str, PerImageMethod] = {"s3net": _run_s3net, "gmm": _run_gmm, "atlas": _run_atlas}
#: Every ``--method`` name, CUTS first.
METHODS: tuple[str, ...] = ("cuts", *PER_IMAGE_METHODS)


def segment_per_image(name: str, image: ImageData, options: MethodOptions) -> tuple[np.ndarray, dict[str, Any]]:
    """Run the per-image method `name` on `image`.

    Parameters
    ----------
    name : str
        A key of `PER_IMAGE_METHODS` ("s3net", "gmm", "atlas").
    image : ImageData
        A validated 2D image.
    options : MethodOptions
        Seed, device, iterations, atlas, progress.

    Returns
    -------
    labels : numpy.ndarray
        Label map (values >= 1) of `image.spatial_shape`.
    info : dict
        The method's settings, recorded in the hierarchy.

    Examples
    --------
    >>> from CUTSSegmentationLib.evaluate.phantom import synthetic_image_2d
    >>> image, _ = synthetic_image_2d()
    >>> labels, info = segment_per_image("gmm", image, MethodOptions(seed=0))
    >>> info["method"], labels.shape == image.spatial_shape
    ('gmm', True)
    """
    return PER_IMAGE_METHODS[name](image, options)
