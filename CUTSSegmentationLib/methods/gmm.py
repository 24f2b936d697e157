"""CGC's "GMM with threshold" baseline: the brightest component's posterior of a per-image mixture, > 0.5.

The design, its sources and the choices made: docs/peer-methods.md, section `methods/gmm.py`.
"""

from __future__ import annotations

from typing import Union

import numpy as np

from ..core.imagedata import ImageData
from ..learn.gaussian_mixture import GMM_COMPONENTS, GaussianMixture, fit_gmm
from ..learn.normalization import choose_normalization, normalize

GMM_THRESHOLD = 0.5
FIT_PIXELS = 50_000


def _normalized_pixels(image: ImageData) -> np.ndarray:
    return normalize(image, choose_normalization(image)).reshape(-1, image.channels)


def fit_image_gmm(image: ImageData, n_components: int = GMM_COMPONENTS, seed: int = 0) -> GaussianMixture:
    """The mixture of one image's normalised intensities (at most `FIT_PIXELS` pixels drawn with `seed`)."""
    pixels = _normalized_pixels(image)
    rng = np.random.default_rng(seed)
    if len(pixels) > FIT_PIXELS:
        pixels = pixels[rng.choice(len(pixels), FIT_PIXELS, replace=False)]
    return fit_gmm(pixels, n_components, seed=seed)


def foreground_probability(
    image: ImageData, n_components: int = GMM_COMPONENTS, component: Union[str, int] = "brightest", seed: int = 0
) -> np.ndarray:
    """CGC's foreground map P: the chosen component's posterior per pixel, float32 `image.spatial_shape`."""
    gmm = fit_image_gmm(image, n_components, seed)
    k = gmm.component_index(component)
    post = gmm.posteriors(_normalized_pixels(image))[:, k]
    return post.astype(np.float32).reshape(image.spatial_shape)


def segment_image_gmm(
    image: ImageData,
    n_components: int = GMM_COMPONENTS,
    component: Union[str, int] = "brightest",
    threshold: float = GMM_THRESHOLD,
    seed: int = 0,
) -> np.ndarray:
    """CGC's "GMM w/ threshold" baseline: uint16 map, 2 where P > `threshold` (foreground), 1 elsewhere."""
    p = foreground_probability(image, n_components, component, seed)
    return np.where(p > threshold, 2, 1).astype(np.uint16)
