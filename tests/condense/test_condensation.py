"""Fast diffusion condensation: nested hierarchy, data-driven cluster counts, no N x N, reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from CUTSSegmentationLib.condense.condensation import CondensationConfig, condense, select_levels
from CUTSSegmentationLib.core.errors import CancelledError, InputError
from CUTSSegmentationLib.core.progress import CancelToken


def nested_blobs(n_per: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2 well-separated super-clusters, each made of 3 tighter sub-clusters, in 128-D."""
    rng = np.random.default_rng(seed)
    dim = 128
    supers = rng.normal(size=(2, dim)) * 20.0
    points, fine, coarse = [], [], []
    for s in range(2):
        subs = supers[s] + rng.normal(size=(3, dim)) * 4.0
        for j in range(3):
            points.append(subs[j] + rng.normal(size=(n_per, dim)) * 0.3)
            fine += [3 * s + j] * n_per
            coarse += [s] * n_per
    order = rng.permutation(6 * n_per)
    return (
        np.concatenate(points)[order].astype(np.float32),
        np.asarray(fine)[order],
        np.asarray(coarse)[order],
    )


def partition_matches(labels: np.ndarray, truth: np.ndarray) -> bool:
    """True when two labelings are the same partition (up to renaming)."""
    pairs = np.unique(np.stack([labels, truth]), axis=1)
    return pairs.shape[1] == len(np.unique(labels)) == len(np.unique(truth))


def test_recovers_nested_structure() -> None:
    x, fine, coarse = nested_blobs()
    result = condense(x, CondensationConfig(n_atoms=256))
    counts = list(result.level_clusters)
    assert 6 in counts and 2 in counts, counts
    six = result.level_labels(counts.index(6))
    two = result.level_labels(counts.index(2))
    assert partition_matches(six, fine)
    assert partition_matches(two, coarse)
    # Finest first, coarsest last, strictly coarser as we go.
    assert all(a > b for a, b in zip(counts, counts[1:]))


def test_levels_are_nested_and_ids_persist() -> None:
    x, _, _ = nested_blobs(n_per=200, seed=3)
    result = condense(x, CondensationConfig(n_atoms=200))
    tree = result.merge_tree
    assert tree.dtype == np.uint16
    for t in range(1, tree.shape[0]):
        # Every cluster of step t-1 lies inside exactly one cluster of step t (nesting).
        pairs = np.unique(np.stack([tree[t - 1], tree[t]]), axis=1)
        assert len(np.unique(pairs[0])) == pairs.shape[1]
        # A surviving id names a cluster that contains its own atom (a merge keeps a member's id).
        assert np.all(tree[t][tree[t]] == tree[t])
    assert len(np.unique(tree[-1])) == 1
    assert list(result.event_clusters) == [len(np.unique(row)) for row in tree]


def test_reproducible_with_seed() -> None:
    x, _, _ = nested_blobs(n_per=150, seed=1)
    a = condense(x, CondensationConfig(n_atoms=128, seed=7))
    b = condense(x, CondensationConfig(n_atoms=128, seed=7))
    assert np.array_equal(a.atom_labels, b.atom_labels)
    assert np.array_equal(a.merge_tree, b.merge_tree)


def test_cluster_count_comes_from_data() -> None:
    """Same settings, data with 4 vs 7 clear groups: the hierarchy finds each count by itself."""
    rng = np.random.default_rng(5)
    for k in (4, 7):
        centres = rng.normal(size=(k, 64)) * 10
        x = np.concatenate([c + rng.normal(size=(300, 64)) * 0.2 for c in centres]).astype(np.float32)
        result = condense(x, CondensationConfig(n_atoms=256))
        assert k in list(result.level_clusters)
        # The k-cluster state is the most persistent one (longest plateau) among multi-cluster states.
        states = result.event_clusters >= 2
        best = result.event_clusters[states][np.argmax(result.plateau_lengths[states])]
        assert best == k


def test_float16_input_and_large_n_runs_without_pairwise_pixels() -> None:
    """100k pixels: an N x N float32 matrix would need 40 GB; the atom path stays small and quick."""
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(5, 128)).astype(np.float16) * 4
    labels = rng.integers(0, 5, size=100_000)
    x = (centres[labels] + rng.normal(size=(100_000, 128)).astype(np.float16) * 0.1).astype(np.float16)
    result = condense(x, CondensationConfig(n_atoms=512))
    assert result.atom_labels.shape == (100_000,)
    five = list(result.level_clusters).index(5)
    assert partition_matches(result.level_labels(five), labels)


def test_bad_inputs_and_cancel() -> None:
    with pytest.raises(InputError):
        condense(np.zeros((1, 8), np.float32))
    bad = np.ones((10, 4), np.float32)
    bad[3, 1] = np.nan
    with pytest.raises(InputError):
        condense(bad)
    token = CancelToken()
    token.cancel()
    x, _, _ = nested_blobs(n_per=50)
    with pytest.raises(CancelledError):
        condense(x, cancel=token)


def test_select_levels_prefers_long_plateaus() -> None:
    counts = np.array([100, 50, 20, 10, 5, 3, 2, 1])
    lengths = np.array([0, 1, 5, 2, 9, 1, 7, 0])
    cfg = CondensationConfig(min_plateau=2, max_levels=3)
    assert list(select_levels(counts, lengths, cfg)) == [2, 4, 6]


def test_distance_at_the_float32_rounded_merge_threshold_does_not_stall() -> None:
    """Regression: a retina image hung `cuts segment` (memory growing) when one atom pair lay exactly at the
    float32-rounded merge threshold: the float64 "anything close?" test said yes, the float32 pair search
    found nothing, and the loop re-ran the same empty merge forever.

    Atoms: a unit grid (median nearest squared distance 1, so merge_sq = 0.1**2 = 0.010000000000000002 in
    float64) plus a pair whose float32 squared distance is exactly float32(0.01) = 0.0099999998: with
    coordinates (3103, 1053) * 2**-15, a**2 + b**2 = 10737418 * 2**-30 is exact in float32.
    """
    import torch

    from CUTSSegmentationLib.condense.condensation import _condense_atoms
    from CUTSSegmentationLib.core.progress import no_progress

    x = np.zeros((12, 4), dtype=np.float32)
    x[1, :2] = np.array([3103, 1053], dtype=np.float32) * np.float32(2.0**-15)
    x[2:, 2] = np.arange(1, 11, dtype=np.float32)  # grid atoms (0, 0, k, 0), k = 1..10
    assert float(np.float32((x[1] ** 2).sum())) == float(np.float32(0.1**2)) < 0.1**2
    config = CondensationConfig(merge_factor=0.1, max_steps=400)
    tree, counts, _ = _condense_atoms(torch.from_numpy(x), torch.ones(12), config, no_progress, None)
    # every merge event lowers the count, and condensation ends in one cluster
    assert np.all(np.diff(counts) < 0), counts
    assert counts[-1] == 1 and len(np.unique(tree[-1])) == 1


def test_atoms_take_the_nearest_centroid_and_the_first_of_equal_ones() -> None:
    """The chunked assignment (one GEMM and an argmin per chunk) against every distance at once: the same atom
    for every point, and the lowest index where two centroids are the same point (a tie)."""
    import torch

    from CUTSSegmentationLib.condense.condensation import _nearest_centroid

    rng = np.random.default_rng(0)
    centroids = rng.integers(-3, 4, size=(40, 5)).astype(np.float32)
    centroids[20:30] = centroids[:10]  # ties: a point nearest to one of these is as near to its copy
    points = np.concatenate([rng.normal(size=(3000, 5)) * 2, centroids[:10] + 0.01]).astype(np.float32)
    distances = ((points[:, None, :] - centroids[None, :, :]) ** 2).sum(2)
    expected = distances.argmin(1)  # numpy: the first minimum
    labels = _nearest_centroid(torch.from_numpy(points), torch.from_numpy(centroids), chunk=512).numpy()
    close = np.isclose(distances[np.arange(len(points)), labels], distances.min(1), rtol=1e-5, atol=1e-4)
    assert close.all()  # rounding of |c|^2 - 2 x.c may pick a nearly-equal centroid, never a farther one
    assert (labels < 20).sum() + (labels >= 30).sum() == len(points)  # never the second copy of a centroid
    assert (labels[-10:] == np.arange(10)).all() and (labels == expected).mean() > 0.99
