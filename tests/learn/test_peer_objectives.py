"""Peer encoder objectives (infomax, IIC, CGC): the losses are right, training learns, models round-trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from CUTSSegmentationLib.condense.binarize import binarize_with_hint
from CUTSSegmentationLib.core.errors import CUTSError, ModelFileError
from CUTSSegmentationLib.evaluate.metrics import dice
from CUTSSegmentationLib.evaluate.phantom import synthetic_image_2d
from CUTSSegmentationLib.learn.cluster_head import cluster_head_map
from CUTSSegmentationLib.learn.encoder import ClusterHead
from CUTSSegmentationLib.learn.modelfile import load_model, save_model
from CUTSSegmentationLib.learn.peer_objectives import mutual_information_loss, patch_contrastive_loss
from CUTSSegmentationLib.learn.training import TrainConfig, train_encoder

STRUCTURES = (2, 3, 4, 5)  # disc, ring, bright blob, dark ellipse of `synthetic_image_2d`
SMALL = {"batch_size": 4, "crop_size": 48, "device": "cpu"}


def hint_dice(labels: np.ndarray, mask: np.ndarray) -> float:
    return float(dice(binarize_with_hint(labels, mask), mask))


def random_hint_dice(n_labels: int, mask: np.ndarray) -> float:
    """Best of three random labelers with `n_labels` labels, iid uniform per pixel."""
    return max(
        hint_dice(np.random.default_rng(s).integers(1, max(2, n_labels) + 1, mask.shape), mask) for s in range(3)
    )


def margins(labels: np.ndarray, truth: np.ndarray) -> dict[int, tuple[float, float]]:
    n = len(np.unique(labels))
    return {s: (hint_dice(labels, truth == s), random_hint_dice(n, truth == s)) for s in STRUCTURES}


# ------------------------------------------------------------------------------------------ the losses
def test_mutual_information_loss_matches_iic_and_prefers_the_diagonal() -> None:
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(500, 5) * 2, dim=1)
    q = torch.softmax(torch.randn(500, 5) * 2, dim=1)
    loss, joint = mutual_information_loss(p, q, alpha=0.0)
    pi, pj = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    mi = (joint * (torch.log(joint) - torch.log(pi) - torch.log(pj))).sum()
    assert float(loss) == pytest.approx(-float(mi), abs=1e-5)  # alpha = 0 is IIC
    # Confident, balanced, consistent assignments (joint = I/K) beat anything else, for any alpha.
    onehot = torch.eye(5).repeat(100, 1)
    for alpha in (0.0, 0.5, 1.0):
        best, _ = mutual_information_loss(onehot, onehot, alpha)
        worse, _ = mutual_information_loss(p, q, alpha)
        assert float(best) < float(worse)
    best, _ = mutual_information_loss(onehot, onehot, 0.0)
    assert float(best) == pytest.approx(-math.log(5), abs=1e-4)


def test_patch_contrastive_loss_pulls_lesion_patches_together() -> None:
    fg = torch.tensor([[True, True, True, False, False, False]])
    tight = torch.tensor([[[1.0, 0.0], [1.0, 0.05], [1.0, -0.05], [0.0, 1.0], [-0.1, 1.0], [0.1, 1.0]]])
    mixed = tight[:, [0, 3, 1, 4, 2, 5]]
    norm = torch.nn.functional.normalize
    together = patch_contrastive_loss(norm(tight, dim=-1), fg)
    assert float(together) < float(patch_contrastive_loss(norm(mixed, dim=-1), fg))
    none = torch.zeros(1, 6, dtype=torch.bool)
    assert float(patch_contrastive_loss(norm(tight, dim=-1), none)) == 0.0


def test_unknown_objective_is_refused() -> None:
    image, _ = synthetic_image_2d(32, seed=0)
    with pytest.raises(CUTSError, match="unknown objective"):
        train_encoder([image], TrainConfig(objective="simclr", epochs=1, **SMALL))


# ------------------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def infomax_model():
    torch.set_num_threads(1)
    image, truth = synthetic_image_2d(64, seed=0)
    model = train_encoder([image], TrainConfig(objective="infomax", n_clusters=10, epochs=25, seed=0, **SMALL))
    return model, image, truth


def test_infomax_loss_falls_and_cluster_map_beats_random(infomax_model) -> None:
    model, image, truth = infomax_model
    history = model.card["training"]["loss_history"]
    assert np.mean(history[-5:]) < np.mean(history[:3]) - 0.3, history
    card = model.card
    assert card["objective"]["name"] == "infomax" and card["objective"]["alpha"] == 0.5
    assert card["objective"]["boundary_weight"] == 1.0 and card["cluster_head"] == {"n_clusters": 10}
    labels = cluster_head_map(model, image)
    assert labels.shape == truth.shape and labels.dtype == np.uint16 and labels.min() >= 1
    m = margins(labels, truth)
    assert m[2][0] > m[2][1] + 0.3, m  # the disc
    assert np.mean([a - b for a, b in m.values()]) > 0.15, m


def test_iic_is_alpha_zero_without_boundary_and_learns() -> None:
    image, truth = synthetic_image_2d(64, seed=1)
    model = train_encoder([image], TrainConfig(objective="iic", n_clusters=10, epochs=15, seed=0, **SMALL))
    assert model.card["objective"]["alpha"] == 0.0 and model.card["objective"]["boundary_weight"] == 0.0
    history = model.card["training"]["loss_history"]
    assert np.mean(history[-3:]) < np.mean(history[:3]) - 0.1, history
    m = margins(cluster_head_map(model, image), truth)
    assert np.mean([a - b for a, b in m.values()]) > 0.15, m


def test_cgc_objective_follows_the_gmm_and_beats_random() -> None:
    image, truth = synthetic_image_2d(64, seed=0)
    model = train_encoder([image], TrainConfig(objective="cgc", epochs=40, seed=0, **SMALL))
    card = model.card
    assert card["objective"]["name"] == "cgc" and card["objective"]["temperature"] == 0.2
    assert card["objective"]["gmm"]["n_components"] == 3 and card["cluster_head"] == {"n_clusters": 2}
    history = card["training"]["loss_history"]
    assert np.mean(history[-5:]) < 0.8 * np.mean(history[:3]), history
    labels = cluster_head_map(model, image)
    bright = (truth == 2) | (truth == 4)  # disc and blob: the brightest mixture component
    d = float(dice(labels == 2, bright))
    assert d > 0.6 and d > random_hint_dice(2, bright) + 0.3, d


def test_model_file_round_trip_with_cluster_head(infomax_model, tmp_path) -> None:
    model, image, _ = infomax_model
    path = save_model(model, tmp_path / "infomax.safetensors")
    loaded = load_model(path)
    assert isinstance(loaded.cluster_head, ClusterHead) and loaded.cluster_head.n_clusters == 10
    assert loaded.card["objective"]["name"] == "infomax"
    assert np.array_equal(cluster_head_map(loaded, image), cluster_head_map(model, image))
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        keys = set(fh.keys())
    assert {"cluster_head.conv.weight", "cluster_head.conv.bias"} <= keys
    # A card that promises a head the file does not hold (or the other way round) is refused.
    model.card["cluster_head"] = {"n_clusters": 10}
    head = model.cluster_head
    model.cluster_head = None
    try:
        plain = save_model(model, tmp_path / "plain.safetensors")
        assert load_model(plain).cluster_head is None
        assert "cluster_head" not in load_model(plain).card
    finally:
        model.cluster_head = head
    import json

    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    card = json.loads(json.dumps(loaded.card))
    card["cluster_head"] = {"n_clusters": 7}
    save_file(
        tensors,
        str(tmp_path / "bad.safetensors"),
        metadata={"format": "cuts-segmentation-model", "format_version": "1", "card": json.dumps(card)},
    )
    with pytest.raises(ModelFileError, match="cluster head"):
        load_model(tmp_path / "bad.safetensors")
