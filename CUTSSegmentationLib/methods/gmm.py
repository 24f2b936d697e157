"""CGC's "GMM with threshold" baseline and the Gaussian mixture behind CGC's pseudo-labels.

Paper: "Unsupervised lesion segmentation with cross-grained contrastive learning" (CGC,
shared/seeds/CGC-cross-grained-contrastive.txt). A Gaussian mixture is fitted to the image intensities by
EM (its eq. 2-5); the component with the highest mean is the foreground (lesions are bright on T2-FLAIR,
and geographic atrophy is bright on the retina photographs); its posterior probability is the foreground
map P, and P > 0.5 is the "GMM w/ threshold" baseline (BraTS Dice 0.7585 in the paper's Table 1). The same
P supervises the `--objective cgc` encoder objective (`objectives.CGCObjective`).

Choices where the paper is silent, and why:

- Own EM in numpy (`fit_gmm`), not scikit-learn: it is about 60 lines, scikit-learn is not a dependency of
  the engine (nor of 3D Slicer's Python), and we need only full-covariance EM on a few thousand low-
  dimensional points. Initialisation: seeded k-means++ centres (scipy's `kmeans2`), then EM until the mean
  log-likelihood improves by less than 1e-5 (at most 200 iterations); a covariance floor of 1e-6 (as
  scikit-learn's ``reg_covar``) keeps components from collapsing onto a single grey level.
- Three components (``n_components=3``): the paper's P comes from "a modified clustering pipeline called
  AUCseg" with no count given; three (dark background / normal tissue / bright lesion) is the smallest
  mixture where "the brightest component" is a lesion class rather than "everything above the mean".
- Features: the normalised intensities the encoder sees ([-1, 1], see `normalization`), all channels
  (an RGB image gets a 3-D mixture; "brightest" = largest sum of the component mean over channels). The
  fit uses at most 50 000 pixels drawn with the seed, the posterior is evaluated on every pixel.
- ``component`` may also be ``"darkest"`` or a component index (sorted by brightness, 0 = darkest), for
  data whose structure of interest is dark.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np
from scipy.cluster.vq import kmeans2

from ..core.errors import InputError
from ..core.imagedata import ImageData
from ..learn.normalization import choose_normalisation, normalise

GMM_COMPONENTS = 3
GMM_THRESHOLD = 0.5
FIT_PIXELS = 50_000
REG_COVAR = 1e-6


@dataclass
class GaussianMixture:
    """Fitted mixture: weights (K,), means (K, d), covariances (K, d, d); components sorted by brightness."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    log_likelihood: float = float("nan")
    n_iter: int = 0

    @property
    def n_components(self) -> int:
        return int(self.weights.shape[0])

    def log_joint(self, x: np.ndarray) -> np.ndarray:
        """(N, K) log(weight_k * N(x | mean_k, cov_k))."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        d = x.shape[1]
        out = np.empty((len(x), self.n_components))
        for k in range(self.n_components):
            chol = np.linalg.cholesky(self.covariances[k])
            diff = np.linalg.solve(chol, (x - self.means[k]).T)  # (d, N)
            maha = (diff * diff).sum(axis=0)
            log_det = 2.0 * np.log(np.diag(chol)).sum()
            out[:, k] = np.log(self.weights[k]) - 0.5 * (d * np.log(2 * np.pi) + log_det + maha)
        return out

    def posteriors(self, x: np.ndarray) -> np.ndarray:
        """(N, K) responsibilities p(component k | x) (eq. 5 before the argmax)."""
        lj = self.log_joint(x)
        lj -= lj.max(axis=1, keepdims=True)
        p = np.exp(lj)
        return p / p.sum(axis=1, keepdims=True)

    def component_index(self, component: Union[str, int]) -> int:
        """Index of "brightest", "darkest" or an explicit index (components are sorted darkest first)."""
        if component == "brightest":
            return self.n_components - 1
        if component == "darkest":
            return 0
        try:
            index = int(component)
        except (TypeError, ValueError):
            raise InputError(f"GMM component must be 'brightest', 'darkest' or an index, got {component!r}") from None
        if not -self.n_components <= index < self.n_components:
            raise InputError(f"GMM component {index} does not exist (the mixture has {self.n_components})")
        return index % self.n_components


def fit_gmm(
    x: np.ndarray, n_components: int = GMM_COMPONENTS, seed: int = 0, max_iter: int = 200, tol: float = 1e-5
) -> GaussianMixture:
    """Full-covariance EM on points x (N, d) or (N,); components returned sorted by brightness (mean sum)."""
    x = np.asarray(x, dtype=np.float64)
    x = x.reshape(len(x), -1)
    n, d = x.shape
    if n_components < 1:
        raise InputError("a Gaussian mixture needs at least one component")
    if n < n_components * 2:
        raise InputError(f"{n} pixels are too few for a {n_components}-component mixture")
    spread = x.std(axis=0)
    if not np.all(np.isfinite(spread)) or spread.max() <= 0:
        raise InputError("the image is constant: a Gaussian mixture cannot separate anything")
    rng = np.random.default_rng(seed)
    centres, labels = kmeans2(x, n_components, minit="++", seed=rng, iter=20)
    reg = REG_COVAR * np.eye(d)
    global_cov = np.atleast_2d(np.cov(x.T)) + reg
    weights = np.empty(n_components)
    covs = np.empty((n_components, d, d))
    for k in range(n_components):
        members = x[labels == k]
        weights[k] = max(len(members), 1) / n
        covs[k] = np.atleast_2d(np.cov(members.T)) + reg if len(members) > d else global_cov
    gmm = GaussianMixture(weights / weights.sum(), centres.astype(np.float64), covs)
    previous = -np.inf
    for it in range(1, max_iter + 1):
        lj = gmm.log_joint(x)
        top = lj.max(axis=1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(lj - top).sum(axis=1))
        ll = float(log_norm.mean())
        resp = np.exp(lj - log_norm[:, None])  # E step
        nk = resp.sum(axis=0) + 10 * np.finfo(float).eps
        means = (resp.T @ x) / nk[:, None]  # M step
        for k in range(n_components):
            diff = x - means[k]
            covs[k] = (resp[:, k, None] * diff).T @ diff / nk[k] + reg
        gmm = GaussianMixture(nk / n, means, covs.copy(), ll, it)
        if ll - previous < tol:
            break
        previous = ll
    order = np.argsort(gmm.means.sum(axis=1), kind="stable")
    return GaussianMixture(gmm.weights[order], gmm.means[order], gmm.covariances[order], gmm.log_likelihood, gmm.n_iter)


def _normalised_pixels(image: ImageData) -> np.ndarray:
    return normalise(image, choose_normalisation(image)).reshape(-1, image.channels)


def fit_image_gmm(image: ImageData, n_components: int = GMM_COMPONENTS, seed: int = 0) -> GaussianMixture:
    """The mixture of one image's normalised intensities (at most `FIT_PIXELS` pixels drawn with `seed`)."""
    pixels = _normalised_pixels(image)
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
    post = gmm.posteriors(_normalised_pixels(image))[:, k]
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
