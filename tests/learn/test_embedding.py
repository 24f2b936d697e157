"""Per-pixel embeddings (slice-wise, tiled, raster order) and the input normalisation they rely on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from CUTSSegmentationLib.core.errors import CancelledError, InputError, ResourceError
from CUTSSegmentationLib.core.imagedata import ImageData
from CUTSSegmentationLib.core.progress import CancelToken
from CUTSSegmentationLib.learn import embedding
from CUTSSegmentationLib.learn.embedding import compute_embeddings, iter_slice_embeddings
from CUTSSegmentationLib.learn.encoder import CUTSEncoder
from CUTSSegmentationLib.learn.modelfile import TrainedModel
from CUTSSegmentationLib.learn.normalization import (
    card_entry,
    choose_normalization,
    compute_params,
    normalize,
    params_for_inference,
)


def grey_model(mode: str = "percentile") -> TrainedModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        enc = CUTSEncoder(1, 128)
    return TrainedModel(enc, {"channels": 1, "embed_dim": 128, "normalisation": {"mode": mode, "per_image": True}})


def volume(z: int = 3, y: int = 20, x: int = 24) -> ImageData:
    rng = np.random.default_rng(0)
    return ImageData(rng.normal(100, 30, (z, y, x, 1)).astype(np.float32), source_dtype="int16")


def reference(model: TrainedModel, image: ImageData) -> np.ndarray:
    """Straightforward whole-volume forward pass: (Z*Y*X, D) raster order, unnormalised."""
    x = torch.from_numpy(normalize(image, "percentile")).permute(0, 3, 1, 2)
    with torch.no_grad():
        out = model.encoder.eval().to(memory_format=torch.contiguous_format)(x)
    return out.permute(0, 2, 3, 1).reshape(-1, out.shape[1]).numpy()


def test_compute_embeddings_raster_order_and_l2() -> None:
    model, image = grey_model(), volume()
    ref = reference(model, image)
    raw = compute_embeddings(model, image, device="cpu", l2_normalize=False)
    assert raw.shape == (3 * 20 * 24, 128) and raw.dtype == np.float32
    np.testing.assert_allclose(raw, ref, rtol=1e-4, atol=1e-5)
    unit = compute_embeddings(model, image, device="cpu")
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(unit, ref / np.linalg.norm(ref, axis=1, keepdims=True), rtol=1e-4, atol=1e-5)


def test_iter_slice_embeddings_yields_slices_in_order_float16() -> None:
    model, image = grey_model(), volume()
    events: list[tuple[str, float]] = []
    items = list(
        iter_slice_embeddings(
            model, image, device="cpu", batch_slices=2, progress=lambda s, f, m: events.append((s, f))
        )
    )
    assert [z for z, _ in items] == [0, 1, 2]
    assert all(e.shape == (20 * 24, 128) and e.dtype == np.float16 for _, e in items)
    full = compute_embeddings(model, image, device="cpu", l2_normalize=False)
    np.testing.assert_allclose(items[1][1].astype(np.float32), full[480:960], rtol=2e-3, atol=2e-3)
    assert {s for s, _ in events} == {"embed"} and events[-1][1] == 1.0


def test_tiled_large_slices_match_whole_slice(monkeypatch) -> None:
    model = grey_model()
    image = volume(1, 70, 90)
    whole = compute_embeddings(model, image, device="cpu", l2_normalize=False)
    monkeypatch.setattr(embedding, "CPU_PIXEL_BUDGET", 40 * 40)  # 24 px tile cores with 8 px halos
    tiled = compute_embeddings(model, image, device="cpu", l2_normalize=False)
    np.testing.assert_allclose(tiled, whole, rtol=1e-4, atol=1e-5)


def test_cancel_and_memory_guard(monkeypatch) -> None:
    model, image = grey_model(), volume()
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        compute_embeddings(model, image, device="cpu", cancel=token)
    monkeypatch.setattr(embedding, "available_memory_bytes", lambda: 1000)
    with pytest.raises(ResourceError, match="GiB"):
        compute_embeddings(model, image, device="cpu")


def test_embedding_speed_smoke() -> None:
    """A 256x256 slice embeds on the CPU (the speed itself is measured outside the tests)."""
    image = ImageData(np.random.default_rng(0).uniform(0, 255, (1, 256, 256, 1)).astype(np.float32), is_2d=True)
    emb = compute_embeddings(grey_model(), image, device="cpu")
    assert emb.shape == (256 * 256, 128) and np.isfinite(emb).all()


# ---------------------------------------------------------------------------------------------- normalisation


def test_uint8_normalisation_is_the_papers() -> None:
    image = ImageData(np.array([0, 127.5, 255], np.float32).reshape(1, 1, 3, 1), is_2d=True, source_dtype="uint8")
    assert choose_normalization(image) == "uint8"
    np.testing.assert_allclose(normalize(image, "uint8").ravel(), [-1.0, 0.0, 1.0], atol=1e-6)


def test_percentile_normalisation_per_channel() -> None:
    rng = np.random.default_rng(0)
    arr = np.stack([rng.normal(0, 1, (4, 30, 30)), rng.normal(1000, 300, (4, 30, 30))], axis=-1).astype(np.float32)
    image = ImageData(arr, source_dtype="float32")
    assert choose_normalization(image) == "percentile"
    assert choose_normalization(ImageData(arr)) == "percentile"  # unknown dtype
    out = normalize(image, "percentile")
    assert out.shape == arr.shape and out.dtype == np.float32
    assert out.min() == -1.0 and out.max() == 1.0
    for c in range(2):
        p = np.percentile(out[..., c], [0.5, 50, 99.5])
        assert p[0] == pytest.approx(-1.0, abs=0.02) and p[2] == pytest.approx(1.0, abs=0.02) and abs(p[1]) < 0.1
    constant = ImageData(np.full((1, 5, 5, 1), 7.0, np.float32))
    assert np.all(normalize(constant, "percentile") == 0.0)
    with pytest.raises(InputError):
        normalize(image, "zscore")
    bad = ImageData(np.full((1, 5, 5, 1), np.nan, np.float32))
    with pytest.raises(InputError, match="NaN"):
        normalize(bad, "percentile")


def test_card_params_per_image_or_fixed() -> None:
    a = ImageData(np.linspace(0, 100, 400, dtype=np.float32).reshape(1, 20, 20, 1))
    b = ImageData(np.linspace(0, 1000, 400, dtype=np.float32).reshape(1, 20, 20, 1))
    entry = card_entry([a, b], "percentile", per_image=True)
    assert entry["mode"] == "percentile" and len(entry["params"]["low"]) == 1
    assert params_for_inference(entry, b) == compute_params(b, "percentile")
    fixed = card_entry([a, b], "percentile", per_image=False)
    assert params_for_inference(fixed, b) == fixed["params"]
    assert params_for_inference(card_entry([a], "uint8"), a) is None


@pytest.mark.parametrize(
    "box",
    [
        (slice(1, 3), slice(5, 14), slice(6, 17)),  # inside: the halo comes from the volume
        (slice(0, 2), slice(0, 9), slice(15, 24)),  # on the border: replicate padding, as for the whole slice
    ],
)
def test_embed_box_equals_the_whole_volume_rows(box) -> None:
    """A box's embeddings are the whole volume's rows for those voxels: the in-plane halo covers the receptive
    field and the box is scaled with the whole volume's percentiles, not its own."""
    model = grey_model()
    rng = np.random.default_rng(1)
    array = rng.normal(100, 30, (3, 20, 24, 1)).astype(np.float32)
    array[:, :4, :4] = 900.0  # outside every box: the box's own percentiles would differ from the volume's
    image = ImageData(array, source_dtype="int16")
    whole = compute_embeddings(model, image, device="cpu", dtype=np.float32).reshape(3, 20, 24, -1)
    got = embedding.embed_box(model, image, box, device="cpu", dtype=np.float32)
    assert got.shape == (int(np.prod([s.stop - s.start for s in box])), 128)
    np.testing.assert_allclose(got, whole[box].reshape(-1, 128), rtol=1e-4, atol=1e-5)
