"""A Gaussian mixture fitted by EM (k-means start), components sorted by brightness.

CGC's pseudo-labels (`learn.peer_objectives`) and its "GMM with threshold" baseline (`methods.gmm`) both use
it; see docs/peer-methods.md, section `methods/gmm.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np
from scipy.cluster.vq import kmeans2

from ..core.errors import InputError

GMM_COMPONENTS = 3
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
