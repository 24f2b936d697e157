"""The encoder (Table S1), the SSIM-screened pair sampler, the losses and device selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from CUTSSegmentationLib.core.device import describe_device, resolve_device
from CUTSSegmentationLib.core.errors import CUTSError
from CUTSSegmentationLib.learn.encoder import CUTSEncoder, PatchReconHead
from CUTSSegmentationLib.learn.losses import contrastive_loss, cuts_loss, reconstruction_loss
from CUTSSegmentationLib.learn.sampling import (
    border_margin,
    extract_patches,
    gather_pixels,
    make_generator,
    patch_ssim,
    sample_pairs,
)


def _encoder(channels: int = 3, seed: int = 0) -> CUTSEncoder:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CUTSEncoder(channels).eval()


# ----------------------------------------------------------------------------------------------- encoder


def test_encoder_shapes_and_layers() -> None:
    enc = _encoder(3)
    with torch.no_grad():
        out = enc(torch.randn(2, 3, 20, 24))
    assert out.shape == (2, 128, 20, 24)
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 128]
    assert all(c.kernel_size == (5, 5) and c.padding_mode == "replicate" for c in convs)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in enc.modules()) == 4
    assert all(m.negative_slope == 0.01 for m in enc.modules() if isinstance(m, torch.nn.LeakyReLU))
    assert enc.receptive_field == 17
    head = PatchReconHead(3, 128)
    assert head(torch.randn(7, 128)).shape == (7, 3, 5, 5)
    assert head(torch.randn(2, 4, 128)).shape == (2, 4, 3, 5, 5)
    assert [m.out_features for m in head.modules() if isinstance(m, torch.nn.Linear)] == [75, 75]


def test_receptive_field_is_17x17() -> None:
    enc = _encoder(1)
    x = torch.randn(1, 1, 41, 41)
    c = 20
    with torch.no_grad():
        base = enc(x)[0, :, c, c]
        cases = [(0, 9, False), (9, 0, False), (-9, -9, False), (0, 8, True), (-8, 0, True), (8, 8, True)]
        for dy, dx, changes in cases:
            x2 = x.clone()
            x2[0, 0, c + dy, c + dx] += 5.0
            diff = (enc(x2)[0, :, c, c] - base).abs().max().item()
            assert (diff > 1e-6) == changes, (dy, dx, diff)


# ----------------------------------------------------------------------------------------------- sampler


def test_extract_and_gather_match_direct_indexing() -> None:
    img = torch.randn(2, 3, 16, 18)
    coords = torch.tensor([[[5, 6], [10, 12]], [[2, 2], [13, 15]]])
    patches = extract_patches(img, coords, 5)
    assert patches.shape == (2, 2, 3, 5, 5)
    assert torch.equal(patches[1, 1], img[1, :, 11:16, 13:18])
    feats = gather_pixels(img, coords)
    assert torch.equal(feats[0, 1], img[0, :, 10, 12])


def test_patch_ssim_matches_skimage_and_screens() -> None:
    rng = np.random.default_rng(1)
    for channels in (1, 3):
        a = rng.uniform(0, 1, (channels, 5, 5))
        similar = a + rng.normal(0, 0.05, a.shape)
        dissimilar = rng.uniform(0, 1, a.shape)
        inverted = 1 - a
        for b in (similar, dissimilar, inverted):
            ours = patch_ssim(torch.tensor(a), torch.tensor(b)).item()
            ref = structural_similarity(a, b, win_size=5, data_range=float(a.max() - a.min()), channel_axis=0)
            assert ours == pytest.approx(ref, abs=1e-9)
        assert patch_ssim(torch.tensor(a), torch.tensor(similar)).item() > 0.5
        assert patch_ssim(torch.tensor(a), torch.tensor(dissimilar)).item() < 0.5
        assert patch_ssim(torch.tensor(a), torch.tensor(inverted)).item() < 0.0
    flat = torch.zeros(1, 5, 5)
    assert patch_ssim(flat, flat).item() == pytest.approx(1.0)
    # Why the sampler shifts [-1, 1] inputs to [0, 1]: on zero-centred data an inverted pattern scores high.
    stripe = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0]).repeat(5, 1)[None]
    assert patch_ssim(stripe, -stripe).item() > 0.9
    assert patch_ssim(stripe + 1, 1 - stripe).item() < -0.5


def _check_geometry(pairs, h: int, w: int, max_shift: int = 5) -> None:
    m = border_margin(5, max_shift)
    a, p = pairs.anchors, pairs.positives
    assert a.shape == p.shape and a.shape[-1] == 2
    assert (a[..., 0] >= m).all() and (a[..., 0] < h - m).all()
    assert (a[..., 1] >= m).all() and (a[..., 1] < w - m).all()
    d = (p - a).abs()
    assert (d <= max_shift).all(), "positive outside the +-5 px box"
    assert (d.sum(-1) > 0).all(), "positive equals its anchor"
    for row in a:  # anchors of one image are distinct
        assert len({tuple(v) for v in row.tolist()}) == row.shape[0]


def test_sampler_positives_near_never_anchor_and_anchors_advance() -> None:
    gen = make_generator(0)
    img = torch.randn(4, 1, 40, 48)
    first = sample_pairs(img, 8, gen)
    second = sample_pairs(img, 8, gen)
    for pairs in (first, second):
        _check_geometry(pairs, 40, 48)
    assert not torch.equal(first.anchors, second.anchors), "the sampler must not repeat the same anchors"
    # Pure noise: SSIM > 0.5 is rare, so the diagonal fallback is exercised and never returns the anchor.
    assert (~first.accepted).any()
    fb = ~first.accepted
    assert ((first.positives - first.anchors)[fb].abs() == 1).all()
    # Reproducible: a fresh generator with the same seed gives the same pairs.
    again = sample_pairs(img, 8, make_generator(0))
    assert torch.equal(again.anchors, first.anchors) and torch.equal(again.positives, first.positives)


def test_sampler_ssim_screen_on_stripes() -> None:
    # Vertical stripes with period 6: a shift of dx = +-3 inverts the pattern (SSIM < 0), dx = 0 keeps it.
    h, w = 48, 48
    xx = np.arange(w)
    stripes = np.where((xx // 3) % 2 == 0, 1.0, -1.0)[None, :].repeat(h, 0)
    rng = np.random.default_rng(0)
    img = torch.tensor(stripes + rng.normal(0, 0.05, (h, w)), dtype=torch.float32)[None, None].repeat(2, 1, 1, 1)
    gen = make_generator(3)
    dxs, accepted_any = [], False
    for _ in range(5):
        pairs = sample_pairs(img, 8, gen)
        _check_geometry(pairs, h, w)
        ok = pairs.accepted
        accepted_any |= bool(ok.any())
        d = pairs.positives - pairs.anchors
        dxs += d[..., 1][ok].abs().tolist()
        # Every accepted positive really passes SSIM > 0.5 (checked independently with skimage).
        for bi, si in ok.nonzero().tolist():
            ay, ax = pairs.anchors[bi, si].tolist()
            py, px = pairs.positives[bi, si].tolist()
            a = (img[bi, 0, ay - 2 : ay + 3, ax - 2 : ax + 3].double().numpy() + 1) / 2
            b = (img[bi, 0, py - 2 : py + 3, px - 2 : px + 3].double().numpy() + 1) / 2
            assert structural_similarity(a, b, win_size=5, data_range=float(a.max() - a.min())) > 0.5
    assert accepted_any
    assert 3 not in dxs, "an inverted-stripe candidate was accepted"
    assert all(dx in (0, 1, 5) for dx in dxs)


# ------------------------------------------------------------------------------------------------ losses


def _naive_nt_xent(za: torch.Tensor, zp: torch.Tensor, tau: float) -> float:
    total, count = 0.0, 0
    for a, p in zip(za, zp):
        z = torch.nn.functional.normalize(torch.cat([a, p]), dim=-1)
        s = a.shape[0]
        for i in range(2 * s):
            j = (i + s) % (2 * s)
            sims = torch.stack([z[i] @ z[k] / tau for k in range(2 * s) if k != i])
            pos = z[i] @ z[j] / tau
            total += float(-(pos - torch.logsumexp(sims, 0)))
            count += 1
    return total / count


def test_contrastive_loss_matches_definition_and_rewards_alignment() -> None:
    torch.manual_seed(0)
    za, zp = torch.randn(2, 4, 16), torch.randn(2, 4, 16)
    for tau in (0.1, 0.5):
        assert contrastive_loss(za, zp, tau).item() == pytest.approx(_naive_nt_xent(za, zp, tau), rel=1e-5)
    aligned = contrastive_loss(za, za + 0.01 * torch.randn_like(za), 0.1)
    assert aligned.item() < contrastive_loss(za, zp, 0.1).item()


def test_combined_loss_weighting() -> None:
    torch.manual_seed(0)
    za, zp = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    rec, tgt = torch.randn(2, 8, 1, 5, 5), torch.randn(2, 8, 1, 5, 5)
    terms = cuts_loss(za, zp, rec, tgt, lam=0.01, temperature=0.1)
    assert terms.reconstruction.item() == pytest.approx(((rec - tgt) ** 2).mean().item())
    assert terms.total.item() == pytest.approx(0.01 * terms.contrastive.item() + 0.99 * terms.reconstruction.item())
    assert reconstruction_loss(rec, rec).item() == 0.0


# ------------------------------------------------------------------------------------------------ device


def test_device_resolution() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    auto = resolve_device("auto")
    assert auto.type in ("cpu", "cuda", "mps")
    assert "thread" in describe_device(torch.device("cpu"))
    with pytest.raises(CUTSError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        assert auto.type != "cuda"
        with pytest.raises(CUTSError, match="cuda"):
            resolve_device("cuda")
    else:  # pragma: no cover - GPU machines
        assert describe_device(resolve_device("cuda")).startswith("cuda:")
