"""Diffusion condensation (CUTS paper eq. 1-4) without ever forming an N x N matrix over pixels.

The design, its sources and the choices made: docs/architecture.md, section `condense/condensation.py`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Optional

import numpy as np
import torch

from ..core.errors import InputError
from ..core.progress import CancelToken, ProgressCallback, check_cancel, no_progress
from .features import JoinedFeatures, as_float32


@dataclass
class CondensationConfig:
    """Knobs of the fast condensation; the defaults are what the benchmarks in docs/ were measured with."""

    #: upper bound on the number of weighted atoms the pixels are pre-aggregated into (1536 atoms measured worse
    #: than 1024 on the spine T2 MRI: seed-point Dice 0.889 vs 0.965, docs/benchmarks.md, 3D volumes)
    n_atoms: int = 1024
    #: PCA dimensions used for pre-aggregation and condensation (the embedding's own size if smaller)
    pca_dim: int = 32
    #: Lloyd iterations of the pre-aggregation k-means
    kmeans_iters: int = 4
    #: pixels sampled to fit PCA and initialise k-means
    sample_size: int = 65536
    #: eps is multiplied by this at every diffusion step (Multiscale PHATE uses 1.025)
    bandwidth_growth: float = 1.025
    #: initial eps as a multiple of the median squared distance of an atom to its nearest atom
    initial_bandwidth: float = 1.0
    #: atoms closer than this multiple of the median nearest-atom distance merge
    merge_factor: float = 0.1
    #: a level must keep its cluster count for at least this many diffusion steps
    min_plateau: int = 2
    #: coarsest and finest cluster counts a kept level may have
    min_clusters: int = 2
    max_clusters: int = 64
    #: at most this many levels are kept (the longest plateaus)
    max_levels: int = 30
    #: "potential": condense the atoms' diffusion potential (as Multiscale PHATE); "embedding": the embeddings
    space: str = "potential"
    #: neighbours (atoms) setting each atom's kernel width in the potential's alpha-decay kernel
    potential_knn: int = 5
    #: diffusion time t of the potential (P^t)
    potential_t: int = 10
    #: alpha of the alpha-decay kernel exp(-(d / sigma_k)^alpha) (PHATE's default is 40)
    potential_decay: float = 40.0
    #: safety stop on the number of diffusion steps
    max_steps: int = 5000
    seed: int = 0
    #: pixels per chunk when assigning pixels to atoms (bounds temporary memory)
    chunk_size: int = 8192
    #: spread of the voxels' own intensities joined to the embeddings (`features.JoinedFeatures`); None: 1.0 for
    #: volumes, 0 for 2D images (the retina benchmark's setting)
    intensity_weight: Optional[float] = None
    #: spread of the voxels' physical positions joined to the embeddings (`features.JoinedFeatures`), so clusters
    #: are spatially coherent; None: `VOLUME_POSITION_WEIGHT` for volumes, 0 for 2D images
    position_weight: Optional[float] = None

    def resolved(self, is_volume: bool) -> "CondensationConfig":
        """A copy with the automatic settings filled in for a volume or a 2D image."""
        weight = self.intensity_weight
        if weight is None:
            weight = VOLUME_INTENSITY_WEIGHT if is_volume else 0.0
        position = self.position_weight
        if position is None:
            position = VOLUME_POSITION_WEIGHT if is_volume else 0.0
        return replace(self, intensity_weight=float(weight), position_weight=float(position))


VOLUME_INTENSITY_WEIGHT = 1.0
#: Position spread joined in volumes (docs/benchmarks.md, "3D volumes: the design choices, measured").
VOLUME_POSITION_WEIGHT = 1.0


@dataclass
class CondensationResult:
    """Everything condensation learned; `hierarchy.Hierarchy` is built from it."""

    atom_labels: np.ndarray  # (N,) atom index of each pixel
    atom_weights: np.ndarray  # (M,) pixels per atom
    merge_tree: np.ndarray  # (T, M) cluster id (an atom index) of each atom after each merge event
    event_clusters: np.ndarray  # (T,) cluster count after each merge event
    level_events: np.ndarray  # (L,) row of merge_tree for each kept level, finest first
    level_clusters: np.ndarray  # (L,) cluster count of each kept level
    plateau_lengths: np.ndarray  # (T,) diffusion steps each merge-event state survived
    timings: dict[str, float] = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def level_labels(self, level: int) -> np.ndarray:
        """(N,) cluster id + 1 of every pixel at kept level `level`."""
        tree = self.merge_tree[self.level_events[level]]
        return tree[self.atom_labels].astype(np.int64) + 1


# ----------------------------------------------------------------------------- pre-aggregation
def _as_tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(as_float32(x)).to(device)


def _pca_basis(sample: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and top-`dim` principal axes of a sample (eigen-decomposition of a D x D covariance)."""
    mean = sample.mean(0)
    centred = sample - mean
    cov = centred.T @ centred / max(1, sample.shape[0] - 1)
    evals, evecs = torch.linalg.eigh(cov.double())
    order = torch.argsort(evals, descending=True)[:dim]
    return mean, evecs[:, order].to(sample.dtype)


def _project_all(
    embeddings: np.ndarray, mean: torch.Tensor, basis: torch.Tensor, chunk: int, device: torch.device
) -> torch.Tensor:
    """(N, pca_dim) float32 projection, computed chunk by chunk so float16 inputs are never copied whole."""
    n = embeddings.shape[0]
    out = torch.empty((n, basis.shape[1]), dtype=torch.float32, device=device)
    for start in range(0, n, chunk):
        block = as_float32(embeddings[start : start + chunk])
        if not np.isfinite(block).all():  # numpy's check: a tenth of torch's time on a CPU chunk
            raise InputError("embeddings contain NaN or Inf")
        out[start : start + chunk] = (torch.from_numpy(block).to(device) - mean) @ basis
    return out


#: Distances scored at once by the nearest-centroid search: 4 MB, which stay in the CPU's cache (1,024 points
#: against 1,024 atoms at a time take half the time of 8,192).
SCORE_BLOCK = 1 << 20


def _nearest_centroid(points: torch.Tensor, centroids: torch.Tensor, chunk: int) -> torch.Tensor:
    """Index of the nearest centroid of each point, chunked: never more than chunk x M distances (nor more
    than `SCORE_BLOCK`)."""
    c_sq = (centroids * centroids).sum(1)
    labels = torch.empty(points.shape[0], dtype=torch.int64, device=points.device)
    on_cpu = points.device.type == "cpu"
    if on_cpu:
        chunk = max(1, min(chunk, SCORE_BLOCK // max(1, centroids.shape[0])))
    for start in range(0, points.shape[0], chunk):
        # |x|^2 is constant per row and does not change the argmin: score = |c|^2 - 2 x.c, one fused GEMM.
        scores = torch.addmm(c_sq[None, :], points[start : start + chunk], centroids.T, beta=1.0, alpha=-2.0)
        if on_cpu:  # numpy's argmin: 4x torch's min on CPU, the same first minimum
            labels[start : start + chunk] = torch.from_numpy(scores.numpy().argmin(axis=1))
        else:
            labels[start : start + chunk] = scores.min(dim=1).indices
    return labels


def _kmeans(
    points: torch.Tensor, k: int, iters: int, generator: torch.Generator, sample_size: int, chunk: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded Lloyd k-means: init and refine on a random sample, then one assignment pass over all points.

    When all points fit in the sample, every Lloyd pass runs on all of them.

    Returns (labels (N,), centroids (M, d), weights (M,)) with empty clusters removed and labels compacted.
    """
    n = points.shape[0]
    device = points.device
    sample_idx = torch.randperm(n, generator=generator)[: min(n, sample_size)].to(device)
    sample = points[sample_idx]
    init = torch.randperm(sample.shape[0], generator=generator)[:k].to(device)
    centroids = sample[init].clone()
    # Lloyd passes on the sample only, then one assignment pass over all points: atoms only need to be tight,
    # and a full pass per iteration was most of the time on volumes (each pass is N x M distances).
    full_passes = 0 if n > sample.shape[0] else iters
    sample_passes = iters - full_passes
    for source, passes in ((sample, sample_passes), (points, full_passes)):
        for _ in range(passes):
            labels = _nearest_centroid(source, centroids, chunk)
            sums = torch.zeros_like(centroids).index_add_(0, labels, source)
            counts = torch.bincount(labels, minlength=centroids.shape[0]).to(source.dtype)
            filled = counts > 0
            centroids[filled] = sums[filled] / counts[filled, None]
    labels = _nearest_centroid(points, centroids, chunk)
    counts = torch.bincount(labels, minlength=centroids.shape[0])
    used = torch.nonzero(counts > 0).squeeze(1)
    remap = torch.full((centroids.shape[0],), -1, dtype=torch.int64, device=device)
    remap[used] = torch.arange(used.numel(), device=device)
    labels = remap[labels]
    sums = torch.zeros((used.numel(), points.shape[1]), dtype=points.dtype, device=device)
    sums.index_add_(0, labels, points)
    weights = counts[used].to(points.dtype)
    return labels, sums / weights[:, None], weights


def _atom_means(
    embeddings: np.ndarray, labels: torch.Tensor, weights: torch.Tensor, chunk: int, device: torch.device
) -> torch.Tensor:
    """Full-dimensional mean embedding of every atom (one chunked pass; float16 inputs are never copied whole)."""
    sums = torch.zeros((weights.shape[0], embeddings.shape[1]), dtype=torch.float32, device=device)
    for start in range(0, embeddings.shape[0], chunk):
        sums.index_add_(0, labels[start : start + chunk], _as_tensor(embeddings[start : start + chunk], device))
    return sums / weights[:, None]


def diffusion_potential(
    x: torch.Tensor, w: torch.Tensor, knn: int, t: int, decay: float, dim: int, global_share: float = 0.01
) -> torch.Tensor:
    """PHATE's diffusion potential of weighted points, reduced to its top `dim` principal components.

    Kernel: symmetrised alpha-decay K_ij = (exp(-(d_ij/s_i)^a) + exp(-(d_ij/s_j)^a)) / 2 with s_i the
    distance to the `knn`-th nearest other point; P_ij = K_ij w_j / sum_j K_ij w_j; potential
    U = -log(P^t + 1e-7) (PHATE's log potential, gamma = 1). O(M^2) memory, O(M^3 log t) time.
    """
    m = x.shape[0]
    dist = torch.cdist(x, x)
    k = max(1, min(knn, m - 1))
    # k+1: the 0 to itself comes first; a single atom (a near-constant image) has only that 0.
    sigma = torch.kthvalue(dist, min(k + 1, m), dim=1).values.clamp_(min=1e-12)
    kernel = 0.5 * (torch.exp(-(dist / sigma[:, None]).pow(decay)) + torch.exp(-(dist / sigma[None, :]).pow(decay)))
    p = kernel * w[None, :]
    p /= p.sum(1, keepdim=True)
    # A kNN kernel cuts well-separated groups into disconnected components, between which the potential is
    # flat (-log 1e-7): the coarse levels would then merge them in arbitrary order. A small share of a
    # global Gaussian walk keeps far groups reachable in proportion to their distance.
    sq = dist.pow(2)
    wide = torch.exp(-sq / sq.median().clamp(min=1e-12)) * w[None, :]
    p = (1.0 - global_share) * p + global_share * wide / wide.sum(1, keepdim=True)
    del kernel, wide, sq
    power = torch.linalg.matrix_power(p, max(1, int(t)))
    del dist
    potential = -torch.log(power + 1e-7)
    potential -= potential.mean(0)
    q = min(dim, m)
    if m > 4 * q:
        # Top principal components by randomised SVD: O(M^2 q) instead of an M x M eigen-decomposition.
        g = torch.random.fork_rng(devices=[])
        with g:
            torch.manual_seed(0)
            u, sv, _ = torch.svd_lowrank(potential, q=q + 8, niter=3)
        return u[:, :q] * sv[:q]
    _, basis = _pca_basis(potential, q)
    return potential @ basis


# ----------------------------------------------------------------------------- condensation proper
def _components(close: np.ndarray, m: int) -> np.ndarray:
    """Connected components of the 'closer than threshold' graph (sparse, via scipy)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows, cols = close
    graph = coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(m, m))
    _, comp = connected_components(graph, directed=False)
    return comp


class _AtomGeometry:
    """Pairwise structure of the current atoms from ONE Gram matrix per step.

    `a[i, j] = |x_j|^2 - 2 x_i.x_j` differs from the squared distance |x_i - x_j|^2 only by |x_i|^2, a
    per-row constant: it gives both the nearest-neighbour test for merging (add |x_i|^2 back) and the
    diffusion operator (a row constant cancels in the row normalisation P = D^-1 K).
    """

    def __init__(self, x: torch.Tensor) -> None:
        self.sq = (x * x).sum(1)
        self.a = torch.addmm(self.sq[None, :], x, x.T, beta=1.0, alpha=-2.0)

    def nearest_sq(self) -> torch.Tensor:
        """Squared distance of each atom to its nearest other atom."""
        diag = self.a.diagonal().clone()
        self.a.fill_diagonal_(float("inf"))
        nearest = (self.a.min(dim=1).values + self.sq).clamp_(min=0.0)
        self.a.diagonal().copy_(diag)
        return nearest

    def close_pairs(self, merge_sq: float) -> tuple[np.ndarray, np.ndarray]:
        d2 = self.a + self.sq[:, None]
        rows, cols = torch.nonzero(torch.triu(d2 < merge_sq, diagonal=1), as_tuple=True)
        return rows.cpu().numpy(), cols.cpu().numpy()

    def diffusion_operator(self, eps: float, log_w: torch.Tensor) -> torch.Tensor:
        """P = D^-1 K W with K = exp(-|x_i - x_j|^2 / eps) (eq. 1-3), weights w_j = pixels per atom."""
        logits = self.a.mul_(-1.0 / eps).add_(log_w[None, :])
        return torch.softmax(logits, dim=1)


def _condense_atoms(
    x: torch.Tensor,
    w: torch.Tensor,
    config: CondensationConfig,
    progress: ProgressCallback,
    cancel: Optional[CancelToken],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted diffusion condensation of M atoms down to one cluster.

    Returns merge_tree (T, M), cluster count per event (T,), diffusion steps each event's state lasted (T,).
    """
    m0 = x.shape[0]
    ids = np.arange(m0, dtype=np.int64)  # cluster id (an atom index) of each active point
    atom_to_active = np.arange(m0, dtype=np.int64)  # which active point each atom belongs to
    geo = _AtomGeometry(x)
    nearest = geo.nearest_sq()
    nn_sq = float(torch.median(nearest).item()) if m0 > 1 else 1.0
    if not math.isfinite(nn_sq) or nn_sq <= 0:
        nn_sq = max(float(nearest.max().item()), 1e-12)
    eps = config.initial_bandwidth * nn_sq
    # The merge threshold in the atoms' own precision: the "is anything close?" test (a Python float against
    # the float32 `nearest`) and `close_pairs` (a float32 comparison) must agree exactly, or a distance equal
    # to the float32-rounded threshold passes one and not the other and no merge would ever happen.
    merge_sq = float(torch.tensor((config.merge_factor**2) * nn_sq, dtype=x.dtype))
    # Beyond this bandwidth the kernel is flat over all points; growing eps further changes nothing.
    spread = float(((x - x.mean(0)) ** 2).sum(1).max().item())
    max_eps = 4.0 * spread * 1e3 + eps

    tree_rows = [ids[atom_to_active].copy()]
    counts = [m0]
    lengths = [0]
    steps = 0
    while x.shape[0] > 1 and steps < config.max_steps:
        check_cancel(cancel)
        m = x.shape[0]
        comp = _components(geo.close_pairs(merge_sq), m) if float(nearest.min().item()) < merge_sq else None
        n_comp = int(comp.max()) + 1 if comp is not None else m
        if n_comp < m:  # every merge event lowers the count: the loop cannot stall on one
            comp_t = torch.from_numpy(comp).to(x.device)
            wsum = torch.zeros(n_comp, dtype=x.dtype, device=x.device).index_add_(0, comp_t, w)
            xsum = torch.zeros((n_comp, x.shape[1]), dtype=x.dtype, device=x.device)
            xsum.index_add_(0, comp_t, x * w[:, None])
            # The heaviest member names the merged cluster (ties: lowest id), so big structures keep ids.
            order = np.lexsort((ids, -w.cpu().numpy(), comp))
            _, first = np.unique(comp[order], return_index=True)
            ids = ids[order[first]]
            x = xsum / wsum[:, None]
            w = wsum
            atom_to_active = comp[atom_to_active]
            tree_rows.append(ids[atom_to_active].copy())
            counts.append(n_comp)
            lengths.append(0)
        else:
            # One diffusion step X <- P X with the weighted operator (eq. 1-4 on atoms).
            eps = min(eps * config.bandwidth_growth, max_eps)
            x = geo.diffusion_operator(eps, torch.log(w)) @ x
            lengths[-1] += 1
            steps += 1
            if steps % 10 == 0:
                done = 1.0 - math.log(max(x.shape[0], 1)) / math.log(max(m0, 2))
                progress("condense", 0.1 + 0.9 * done, f"{x.shape[0]} clusters")
        geo = _AtomGeometry(x)
        nearest = geo.nearest_sq()
    if x.shape[0] > 1:  # safety stop reached: close the tree with one final merge
        tree_rows.append(np.full(m0, ids[int(torch.argmax(w))], dtype=np.int64))
        counts.append(1)
        lengths.append(0)
    tree = np.stack(tree_rows)
    dtype = np.uint16 if m0 <= np.iinfo(np.uint16).max else np.uint32
    return tree.astype(dtype), np.asarray(counts, dtype=np.int64), np.asarray(lengths, dtype=np.int64)


def select_levels(counts: np.ndarray, lengths: np.ndarray, config: CondensationConfig) -> np.ndarray:
    """Merge events whose state is a settled granularity: long plateaus of the cluster count, finest first."""
    eligible = np.nonzero(
        (counts >= config.min_clusters) & (counts <= config.max_clusters) & (lengths >= config.min_plateau)
    )[0]
    if eligible.size == 0:
        # No plateau long enough: fall back to the longest-lived states with more than one cluster.
        candidates = np.nonzero((counts >= config.min_clusters) & (lengths > 0))[0]
        if candidates.size == 0:
            candidates = np.nonzero(counts >= 1)[0][-1:]
        eligible = candidates
    if eligible.size > config.max_levels:
        keep = eligible[np.argsort(-lengths[eligible], kind="stable")[: config.max_levels]]
        eligible = np.sort(keep)
    return eligible.astype(np.int64)


def condense(
    embeddings: "np.ndarray | JoinedFeatures",
    config: Optional[CondensationConfig] = None,
    device: Optional[torch.device] = None,
    progress: ProgressCallback = no_progress,
    cancel: Optional[CancelToken] = None,
) -> CondensationResult:
    """Condense (N, D) pixel embeddings (float16 or float32, rows in raster order) into a hierarchy.

    `embeddings` may also be a `features.JoinedFeatures` (embeddings joined with intensities, read in chunks).
    """
    config = config or CondensationConfig()
    device = device or torch.device("cpu")
    if embeddings.ndim != 2 or embeddings.shape[0] < 2:
        raise InputError("condensation needs at least two pixels with embeddings")
    timings: dict[str, float] = {}
    n, d = embeddings.shape
    generator = torch.Generator().manual_seed(config.seed)

    t0 = time.perf_counter()
    progress("condense", 0.0, "projecting embeddings")
    sample_idx = torch.randperm(n, generator=generator)[: min(n, config.sample_size)].numpy()
    sample = _as_tensor(embeddings[np.sort(sample_idx)], device)
    if not bool(torch.isfinite(sample).all()):
        raise InputError("embeddings contain NaN or Inf")
    dim = min(config.pca_dim, d)
    mean, basis = _pca_basis(sample, dim)
    projected = _project_all(embeddings, mean, basis, config.chunk_size, device)
    timings["pca_s"] = time.perf_counter() - t0
    check_cancel(cancel)

    t0 = time.perf_counter()
    progress("condense", 0.05, "pre-aggregating pixels into atoms")
    k = min(config.n_atoms, n)
    labels, atoms, weights = _kmeans(
        projected, k, config.kmeans_iters, generator, config.sample_size, config.chunk_size
    )
    del projected
    timings["preaggregation_s"] = time.perf_counter() - t0
    check_cancel(cancel)

    if config.space == "potential":
        t0 = time.perf_counter()
        progress("condense", 0.08, "diffusion potential of the atoms")
        full = _atom_means(embeddings, labels, weights, config.chunk_size, device)
        atoms = diffusion_potential(
            full, weights, config.potential_knn, config.potential_t, config.potential_decay, config.pca_dim
        )
        del full
        timings["potential_s"] = time.perf_counter() - t0
    elif config.space != "embedding":
        raise ValueError(f"unknown condensation space '{config.space}' (use 'potential' or 'embedding')")
    check_cancel(cancel)

    t0 = time.perf_counter()
    tree, counts, lengths = _condense_atoms(atoms, weights, config, progress, cancel)
    timings["condensation_s"] = time.perf_counter() - t0
    level_events = select_levels(counts, lengths, config)
    progress("condense", 1.0, f"{len(level_events)} levels")
    return CondensationResult(
        atom_labels=labels.cpu().numpy(),
        atom_weights=weights.cpu().numpy(),
        merge_tree=tree,
        event_clusters=counts,
        level_events=level_events,
        level_clusters=counts[level_events],
        plateau_lengths=lengths,
        timings=timings,
        config=asdict(config),
    )
