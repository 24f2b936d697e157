"""The unsupervised baselines of the CUTS paper's Table 1, each a function image -> label map.

Every function takes one RGB image as a (Y, X, 3) uint8 array (the retina PNGs as stored) and returns an
integer (Y, X) label map; the benchmark harness (`retina_table1.py`) binarises all of them the same way
(label hint, and seed point). Parameters are the ones the paper's authors used in their public code
(`src/scripts_analysis/generate_baselines.py` of KrishnaswamyLab/CUTS), so our numbers are comparable with
their Table 1:

- `random_labels`: a random 0/1 label per pixel (the authors draw ``randint(0, label.max() + 1)``).
- `otsu_threshold` ("Watershed" in Table 1): what the authors' "watershed" baseline really computes (their code
  says so): grey = OpenCV's BGR2GRAY of the RGB array (so the weights land on R=0.114, G=0.587, B=0.299),
  a 3x3 Gaussian blur (OpenCV's [1, 2, 1] / 4 kernel, reflect-101 borders), Otsu's threshold t, and two
  labels: ``0 < grey <= t`` versus the rest.
- `otsu_watershed`: a real marker-based watershed, for reference (not in the paper): markers from Otsu's
  threshold of the blurred grey image (eroded by 2 px on each side), flooded over its Sobel gradient.
- `felzenszwalb`: ``skimage.segmentation.felzenszwalb(image, scale=200, sigma=1.0, min_size=10)`` (the
  authors' retina setting since their commit 3cdb188, Feb 2024, "tune baseline");
  `felzenszwalb_default`: scikit-image's defaults (scale=1, sigma=0.8, min_size=20), what their code ran
  before that commit (earlier still: scale=1500).
- `slic`: ``skimage.segmentation.slic(image, n_segments=10)``, every other argument at scikit-image's default
  (compactness 10, 10 iterations, Lab conversion).
- `pixel_kmeans`: k-means (k = 10, k-means++ init, best of 4 runs) on the RGB values scaled to [0, 1].
- `spectral_kmeans`: spectral clustering of per-pixel embeddings (k = 10), like scikit-learn's
  ``SpectralClustering(n_clusters=10, affinity="nearest_neighbors", n_neighbors=10)`` without needing
  scikit-learn: a symmetrised 10-NN connectivity graph (neighbours found in the embeddings' top 32 principal
  components), the first k eigenvectors of its normalised Laplacian (scipy ``eigsh``, shift-invert), scaled
  by D^-1/2 as scikit-learn's ``spectral_embedding``, then k-means (k-means++, best of 4).
  The authors' own "spectral k-means" is k-means (k = 10) on the diffusion potential of a PHATE operator
  (knn=100, 500 landmarks, t=2); both are k-means in a diffusion/spectral embedding of the kNN graph.
"""

from __future__ import annotations

import contextlib

import numpy as np
from scipy import ndimage as ndi

#: The authors' Felzenszwalb parameters for the retina data (scale, sigma); min_size = 10.
FELZENSZWALB_RETINA = (200.0, 1.0)
SLIC_SEGMENTS = 10
KMEANS_K = 10
SPECTRAL_K = 10
SPECTRAL_NEIGHBORS = 10
SPECTRAL_PCA = 32


def _as_uint8_rgb(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return arr


# ----------------------------------------------------------------------------------------- classical
def random_labels(image: np.ndarray, seed: int = 0) -> np.ndarray:
    """A random label in {0, 1} per pixel."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, size=np.asarray(image).shape[:2]).astype(np.uint8)


def _opencv_grey_blur(image: np.ndarray) -> np.ndarray:
    """cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_BGR2GRAY), (3, 3), 0) as uint8, without OpenCV."""
    rgb = _as_uint8_rgb(image).astype(np.float64)
    # BGR2GRAY on an RGB array: channel 0 is taken as blue.
    grey = np.rint(0.114 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.299 * rgb[..., 2])
    kernel = np.array([0.25, 0.5, 0.25])
    blurred = ndi.correlate1d(ndi.correlate1d(grey, kernel, axis=0, mode="mirror"), kernel, axis=1, mode="mirror")
    return np.clip(np.rint(blurred), 0, 255).astype(np.uint8)


def _otsu_uint8(grey: np.ndarray) -> int:
    """OpenCV's Otsu threshold on a uint8 image (the largest between-class variance, first on ties)."""
    hist = np.bincount(grey.ravel(), minlength=256).astype(np.float64)
    p = hist / hist.sum()
    omega = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    mu_t = mu[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma_b = (mu_t * omega - mu) ** 2 / (omega * (1.0 - omega))
    sigma_b[~np.isfinite(sigma_b)] = -1.0
    return int(np.argmax(sigma_b))


def otsu_threshold(image: np.ndarray) -> np.ndarray:
    """The authors' "watershed": 1 where 0 < blurred grey <= Otsu threshold, else 0."""
    grey = _opencv_grey_blur(image)
    t = _otsu_uint8(grey)
    threshed = np.where(grey > t, 255, 0)
    return (grey > threshed).astype(np.uint8)


def otsu_watershed(image: np.ndarray) -> np.ndarray:
    """Marker-based watershed: Otsu markers (eroded 2 px) flooded over the Sobel gradient of the grey image."""
    from skimage.filters import sobel
    from skimage.segmentation import watershed

    grey = _opencv_grey_blur(image).astype(np.float64)
    t = _otsu_uint8(grey.astype(np.uint8))
    markers = np.zeros(grey.shape, dtype=np.int32)
    markers[ndi.binary_erosion(grey <= t, iterations=2)] = 1
    markers[ndi.binary_erosion(grey > t, iterations=2)] = 2
    return watershed(sobel(grey), markers).astype(np.uint16)


def felzenszwalb(
    image: np.ndarray, scale: float = FELZENSZWALB_RETINA[0], sigma: float = FELZENSZWALB_RETINA[1], min_size: int = 10
) -> np.ndarray:
    """Felzenszwalb-Huttenlocher graph segmentation; defaults: the authors' retina tuning (200, 1.0, 10)."""
    from skimage.segmentation import felzenszwalb as _felzenszwalb

    return _felzenszwalb(_as_uint8_rgb(image), scale=scale, sigma=sigma, min_size=min_size).astype(np.uint16)


def felzenszwalb_default(image: np.ndarray) -> np.ndarray:
    """scikit-image's defaults (scale 1, sigma 0.8, min_size 20): what the authors' code ran before Feb 2024."""
    from skimage.segmentation import felzenszwalb as _felzenszwalb

    return _felzenszwalb(_as_uint8_rgb(image)).astype(np.uint16)


def slic(image: np.ndarray, n_segments: int = SLIC_SEGMENTS) -> np.ndarray:
    from skimage.segmentation import slic as _slic

    return _slic(_as_uint8_rgb(image), n_segments=n_segments).astype(np.uint16)


# ----------------------------------------------------------------------------------------- k-means
@contextlib.contextmanager
def one_thread():
    """Run torch on one thread: on a busy 2-core machine, small ops on 2 threads mostly spin (k-means on
    16,384 x 10 points took 16 s on 2 threads and 0.3 s on one while other jobs ran)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def kmeans(points: np.ndarray, k: int, seed: int = 0, n_init: int = 4, iters: int = 100) -> tuple[np.ndarray, float]:
    """Lloyd k-means with k-means++ seeding, best of `n_init` runs (lowest inertia): (labels, inertia).

    torch float64 on the CPU; a run stops when no label changes (or after `iters` passes)."""
    import torch

    with one_thread():
        return _kmeans(torch.from_numpy(np.ascontiguousarray(points, dtype=np.float64)), k, seed, n_init, iters)


def _kmeans(x, k: int, seed: int, n_init: int, iters: int) -> tuple[np.ndarray, float]:
    import torch

    n = x.shape[0]
    gen = torch.Generator().manual_seed(int(seed))
    best_labels, best_inertia = None, np.inf
    for _ in range(n_init):
        # k-means++ seeding
        first = int(torch.randint(n, (1,), generator=gen))
        c = x[first][None].clone()
        d2 = ((x - c[0]) ** 2).sum(1)
        for _ in range(1, k):
            i = (
                int(torch.multinomial(d2, 1, generator=gen))
                if float(d2.sum()) > 0
                else int(torch.randint(n, (1,), generator=gen))
            )
            c = torch.cat([c, x[i][None]])
            d2 = torch.minimum(d2, ((x - x[i]) ** 2).sum(1))
        labels = torch.full((n,), -1, dtype=torch.int64)
        for _ in range(iters):
            new = torch.cdist(x, c).argmin(1)
            if torch.equal(new, labels):
                break
            labels = new
            counts = torch.bincount(labels, minlength=k)
            sums = torch.zeros_like(c).index_add_(0, labels, x)
            filled = counts > 0
            c[filled] = sums[filled] / counts[filled, None]
        inertia = float(((x - c[labels]) ** 2).sum())
        if inertia < best_inertia:
            best_labels, best_inertia = labels.numpy().copy(), inertia
    assert best_labels is not None
    return best_labels.astype(np.int64), best_inertia


def pixel_kmeans(image: np.ndarray, k: int = KMEANS_K, seed: int = 0) -> np.ndarray:
    rgb = _as_uint8_rgb(image)
    labels, _ = kmeans(rgb.reshape(-1, 3) / 255.0, k, seed=seed)
    return labels.reshape(rgb.shape[:2]).astype(np.uint16)


def knn_graph(x: np.ndarray, n_neighbors: int, chunk: int = 2048):
    """Symmetrised kNN connectivity graph 0.5 (A + A^T) (A includes self, as scikit-learn's), CSR float64."""
    import torch
    from scipy.sparse import csr_matrix

    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    sq = (t * t).sum(1)
    n = t.shape[0]
    cols = np.empty((n, n_neighbors), dtype=np.int64)
    with torch.inference_mode():
        for start in range(0, n, chunk):
            block = t[start : start + chunk]
            d2 = torch.addmm(sq[None, :], block, t.T, beta=1.0, alpha=-2.0)
            # self first (include_self=True), then the n_neighbors - 1 nearest others
            idx = torch.topk(d2, n_neighbors, dim=1, largest=False).indices
            cols[start : start + chunk] = idx.numpy()
    rows = np.repeat(np.arange(n), n_neighbors)
    a = csr_matrix((np.ones(rows.size), (rows, cols.ravel())), shape=(n, n))
    a.data[:] = 1.0  # duplicates (should not happen) stay connectivity
    return 0.5 * (a + a.T)


def spectral_embedding(graph, n_components: int, seed: int = 0) -> np.ndarray:
    """First `n_components` eigenvectors of the normalised Laplacian L = I - D^-1/2 A D^-1/2, scaled by D^-1/2
    (scikit-learn's spectral maps). Shift-invert ARPACK just below 0, where those eigenvalues lie."""
    from scipy.sparse import diags, identity
    from scipy.sparse.linalg import eigsh

    degree = np.asarray(graph.sum(axis=1)).ravel()
    d_half = 1.0 / np.sqrt(degree)
    laplacian = (identity(graph.shape[0]) - diags(d_half) @ graph @ diags(d_half)).tocsc()
    rng = np.random.default_rng(seed)
    v0 = rng.uniform(-1, 1, graph.shape[0])
    vals, vecs = eigsh(laplacian, k=n_components, sigma=-1e-3, which="LM", v0=v0)
    order = np.argsort(vals)  # smallest Laplacian eigenvalues first
    vecs = vecs[:, order] * d_half[:, None]
    # deterministic signs (scikit-learn's _deterministic_vector_sign_flip)
    signs = np.sign(vecs[np.abs(vecs).argmax(axis=0), np.arange(vecs.shape[1])])
    return vecs * signs


def pca(x: np.ndarray, dim: int) -> np.ndarray:
    """Projection of (N, D) points on their top-`dim` principal axes (unchanged when D <= dim)."""
    x = np.asarray(x, dtype=np.float32)
    if x.shape[1] <= dim:
        return x
    centred = x - x.mean(0)
    _, vecs = np.linalg.eigh(np.cov(centred, rowvar=False).astype(np.float64))
    return centred @ vecs[:, ::-1][:, :dim].astype(np.float32)


def spectral_kmeans(
    embeddings: np.ndarray,
    shape: tuple[int, int],
    k: int = SPECTRAL_K,
    n_neighbors: int = SPECTRAL_NEIGHBORS,
    seed: int = 0,
    pca_dim: int = SPECTRAL_PCA,
) -> np.ndarray:
    """Spectral clustering (k clusters) of (N, D) per-pixel embeddings -> (Y, X) label map.

    The kNN graph is built in the top-`pca_dim` principal components of the embeddings (as our condensation
    works in a 32-d PCA projection): 4x less work than 128-d, same neighbours up to the discarded variance."""
    with one_thread():
        graph = knn_graph(pca(embeddings, pca_dim), n_neighbors)
    maps = spectral_embedding(graph, k, seed=seed)
    labels, _ = kmeans(maps, k, seed=seed, n_init=4)
    return labels.reshape(shape).astype(np.uint16)


def pixel_features(image: np.ndarray) -> np.ndarray:
    """(N, 3) RGB in [0, 1], L2-normalised per pixel: what the authors feed diffusion condensation on pixels
    (their generate_pixel_diffusion.py: image scaled to [0, 1], then sklearn ``normalize``; black stays 0)."""
    rgb = _as_uint8_rgb(image).reshape(-1, 3).astype(np.float32) / 255.0
    norm = np.linalg.norm(rgb, axis=1, keepdims=True)
    return np.where(norm > 0, rgb / np.where(norm > 0, norm, 1.0), 0.0).astype(np.float32)
