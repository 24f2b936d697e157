"""Training: the loss falls, the embeddings learn the structures, runs are reproducible and interruptible."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.cluster.vq import kmeans2

from CUTSSegmentationLib.core.errors import CancelledError, InputError
from CUTSSegmentationLib.core.imagedata import ImageData
from CUTSSegmentationLib.core.progress import CancelToken
from CUTSSegmentationLib.learn.embedding import compute_embeddings
from CUTSSegmentationLib.learn.encoder import CUTSEncoder
from CUTSSegmentationLib.learn.modelfile import TrainedModel, load_model
from CUTSSegmentationLib.learn.training import CPU_CROP, GPU_CROP, TrainConfig, train_encoder, training_schedule


def two_structure_image(seed: int, n: int = 64) -> tuple[ImageData, np.ndarray]:
    """A disc of stripes on a noisy background of the same mean brightness: only texture tells them apart."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    mask = (yy - n / 2) ** 2 + (xx - n / 2) ** 2 < (0.3 * n) ** 2
    stripes = np.sign(np.sin(xx * 2 * np.pi / 6)) * 40
    img = 128 + np.where(mask, stripes, 0) + rng.normal(0, 25, (n, n))
    arr = np.clip(np.round(img), 0, 255).astype(np.float32)[None, ..., None]
    return ImageData(arr, is_2d=True, source=f"synthetic{seed}.png", source_dtype="uint8"), mask


def kmeans_accuracy(model: TrainedModel, image: ImageData, mask: np.ndarray) -> float:
    emb = compute_embeddings(model, image, device="cpu").astype(np.float64)
    scores = []
    for seed in range(3):
        _, lab = kmeans2(emb, 2, seed=seed, minit="++")
        acc = float((lab.reshape(mask.shape) == mask).mean())
        scores.append(max(acc, 1.0 - acc))
    return float(np.median(scores))


SMALL = {"batch_size": 4, "crop_size": 48, "device": "cpu"}


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    data = [two_structure_image(i) for i in range(4)]
    messages: list[tuple[str, float, str]] = []
    model = train_encoder(
        [im for im, _ in data], TrainConfig(epochs=30, seed=0, **SMALL), progress=lambda *a: messages.append(a)
    )
    return model, data, messages


def test_loss_falls_and_embeddings_separate_structures(trained) -> None:
    model, data, _ = trained
    history = model.card["training"]["loss_history"]
    assert len(history) == 30
    assert np.mean(history[-5:]) < 0.8 * np.mean(history[:3])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        untrained = TrainedModel(CUTSEncoder(1), dict(model.card))
    image, mask = data[0]
    before = kmeans_accuracy(untrained, image, mask)
    after = kmeans_accuracy(model, image, mask)
    assert after > 0.93 and after > before + 0.08, (before, after)


def test_progress_and_card(trained) -> None:
    model, _, messages = trained
    assert {m[0] for m in messages} == {"train"}
    fractions = [m[1] for m in messages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("loss" in m[2] for m in messages)
    card = model.card
    assert card["channels"] == 1 and card["embed_dim"] == 128
    assert card["normalisation"]["mode"] == "uint8"
    assert card["training"]["complete"] and card["training"]["epochs_completed"] == 30
    assert card["patch"] == {"patch_size": 5, "max_shift": 5, "n_anchors": 8, "ssim_threshold": 0.5, "max_tries": 20}
    assert card["loss"] == {"lambda": 0.01, "temperature": 0.1}
    assert card["data"]["n_images"] == 4 and card["data"]["shapes"][0] == [64, 64, 1]
    assert not model.encoder.training


def _weights(model: TrainedModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.encoder.state_dict().items()}


def test_reproducible_with_same_seed() -> None:
    images = [two_structure_image(i, 40)[0] for i in range(3)]
    cfg = TrainConfig(epochs=2, seed=7, batch_size=2, crop_size=32, device="cpu")
    a, b = _weights(train_encoder(images, cfg)), _weights(train_encoder(images, cfg))
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = _weights(train_encoder(images, TrainConfig(**{**cfg.__dict__, "seed": 8})))
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_ctrl_c_keeps_last_checkpoint(tmp_path) -> None:
    images = [two_structure_image(i, 40)[0] for i in range(4)]
    ckpt = tmp_path / "ckpt.safetensors"
    cfg = TrainConfig(epochs=5, seed=1, batch_size=2, crop_size=32, device="cpu")  # 2 steps per epoch

    def interrupt(stage: str, fraction: float, message: str) -> None:
        if message.startswith("epoch 3/5"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_encoder(images, cfg, progress=interrupt, checkpoint_path=str(ckpt))
    model = load_model(ckpt)
    assert model.card["training"]["epochs_completed"] == 2
    assert model.card["training"]["complete"] is False
    assert ckpt.with_suffix(".json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.json", "ckpt.safetensors"]  # no temp files left
    emb = compute_embeddings(model, images[0], device="cpu")
    assert emb.shape == (40 * 40, 128) and np.isfinite(emb).all()


def test_cancel_token_stops_training(tmp_path) -> None:
    images = [two_structure_image(i, 40)[0] for i in range(2)]
    token = CancelToken()
    ckpt = tmp_path / "m.safetensors"

    def cancel_in_epoch_2(stage: str, fraction: float, message: str) -> None:
        if message.startswith("epoch 2/"):  # after the first of the two steps of epoch 2
            token.cancel()

    with pytest.raises(CancelledError):
        train_encoder(
            images,
            TrainConfig(epochs=4, batch_size=1, crop_size=32, device="cpu"),
            progress=cancel_in_epoch_2,
            cancel=token,
            checkpoint_path=str(ckpt),
        )
    assert load_model(ckpt).card["training"]["epochs_completed"] == 1


def test_volume_trains_on_slices_with_percentile_normalisation() -> None:
    rng = np.random.default_rng(0)
    vol = rng.normal(300.0, 80.0, (5, 32, 36, 1)).astype(np.float32)
    vol[0] = 0.0  # a constant padding slice is skipped
    image = ImageData(vol, source_dtype="int16")
    model = train_encoder([image], TrainConfig(epochs=2, batch_size=2, crop_size=32, device="cpu"))
    card = model.card
    assert card["data"]["n_slices"] == 4 and card["data"]["shapes"] == [[5, 32, 36, 1]]
    assert card["normalisation"]["mode"] == "percentile" and card["normalisation"]["per_image"]
    assert len(card["normalisation"]["params"]["low"]) == 1
    assert card["training"]["crop_size"] == 32 and card["training"]["steps_per_epoch"] == 2


def test_the_schedule_read_before_training_is_the_one_the_run_follows() -> None:
    """The job plan reads `training_schedule`; the run's card must report the same steps, crop and slices."""
    rng = np.random.default_rng(1)
    vol = rng.normal(300.0, 80.0, (6, 30, 40, 1)).astype(np.float32)
    vol[5] = 7.0  # constant slice: not a training slice
    image = ImageData(vol, source_dtype="int16")
    config = TrainConfig(epochs=2, batch_size=3, crop_size=64, device="cpu")
    schedule = training_schedule([image], config, torch.device("cpu"))
    assert len(schedule.slices) == 5 and schedule.crop == 30  # the crop is capped by the smaller side
    card = train_encoder([image], config).card["training"]
    assert card["total_steps"] == schedule.steps == 2 * 2  # 5 slices a epoch in batches of 3: 2 steps
    assert card["crop_size"] == schedule.crop


def test_device_dependent_defaults() -> None:
    cpu = TrainConfig().resolved(torch.device("cpu"), 56)
    gpu = TrainConfig().resolved(torch.device("cuda"), 56)
    assert cpu.crop_size == CPU_CROP and gpu.crop_size == GPU_CROP
    assert gpu.epochs == 200 and cpu.epochs is not None and 10 <= cpu.epochs < gpu.epochs
    # Larger training sets get fewer epochs, so the CPU time stays bounded.
    assert TrainConfig().resolved(torch.device("cpu"), 560).epochs < cpu.epochs
    assert TrainConfig(epochs=3).resolved(torch.device("cpu"), 56).epochs == 3


def test_bad_inputs() -> None:
    good = two_structure_image(0, 40)[0]
    with pytest.raises(InputError):
        train_encoder([])
    ramp = np.zeros((1, 40, 40, 3), np.float32) + np.arange(40, dtype=np.float32)[None, None, :, None]
    rgb = ImageData(ramp, is_2d=True)
    with pytest.raises(InputError, match="channels"):
        train_encoder([good, rgb], TrainConfig(epochs=1, device="cpu"))
    with pytest.raises(InputError, match="at least"):
        train_encoder([ImageData(np.ones((1, 10, 10, 1), np.float32), is_2d=True)], TrainConfig(epochs=1, device="cpu"))
    with pytest.raises(InputError, match="constant"):
        train_encoder([ImageData(np.ones((1, 40, 40, 1), np.float32), is_2d=True)], TrainConfig(epochs=1, device="cpu"))
