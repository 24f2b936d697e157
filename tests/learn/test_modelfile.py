"""Model files: safetensors + card round trip, atomic writes, and clear errors for anything else."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import CUTSSegmentationLib
from CUTSSegmentationLib.core.errors import ModelFileError
from CUTSSegmentationLib.core.imagedata import ImageData
from CUTSSegmentationLib.learn import modelfile
from CUTSSegmentationLib.learn.embedding import compute_embeddings
from CUTSSegmentationLib.learn.encoder import CUTSEncoder
from CUTSSegmentationLib.learn.modelfile import FORMAT_TAG, TrainedModel, check_compatible, load_model, save_model


def make_model(channels: int = 3, seed: int = 0) -> TrainedModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = CUTSEncoder(channels)
        # Non-default BatchNorm running statistics, as after training: they must survive the round trip.
        for m in enc.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(17)
    card = {
        "channels": channels,
        "embed_dim": 128,
        "normalisation": {"mode": "uint8", "per_image": True},
        "library_version": CUTSSegmentationLib.__version__,
        "training": {"epochs": 3, "seed": seed},
    }
    return TrainedModel(enc, card)


def rgb_image(n: int = 24) -> ImageData:
    rng = np.random.default_rng(0)
    return ImageData(rng.integers(0, 256, (1, n, n, 3)).astype(np.float32), is_2d=True, source_dtype="uint8")


def test_round_trip_identical_embeddings_and_card(tmp_path) -> None:
    model = make_model()
    path = save_model(model, tmp_path / "MODEL.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MODEL.json", "MODEL.safetensors"]
    loaded = load_model(path)
    assert not loaded.encoder.training
    sd_a, sd_b = model.encoder.state_dict(), loaded.encoder.state_dict()
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    image = rgb_image()
    before = compute_embeddings(model, image, device="cpu")
    assert np.array_equal(before, compute_embeddings(loaded, image, device="cpu"))
    card = loaded.card
    assert card["format"] == FORMAT_TAG and card["channels"] == 3 and card["training"]["seed"] == 0
    side = json.loads((tmp_path / "MODEL.json").read_text())
    assert side == card
    assert modelfile.read_card(path) == card
    assert load_model(tmp_path / "MODEL.json").card == card  # picking the card loads the weights beside it
    with pytest.raises(ModelFileError):
        save_model(model, tmp_path / "MODEL.json")


def test_save_is_atomic(tmp_path, monkeypatch) -> None:
    path = tmp_path / "m.safetensors"
    save_model(make_model(seed=0), path)
    before = path.read_bytes()

    def interrupted_replace(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(modelfile.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        save_model(make_model(seed=1), path)
    monkeypatch.undo()
    assert path.read_bytes() == before, "an interrupted save must leave the old model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"], "temp files left behind"
    load_model(path)


def _assert_one_line_error(path) -> str:
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    message = str(info.value)
    assert message and "\n" not in message
    return message


def test_bad_files_raise_model_file_error(tmp_path) -> None:
    good = save_model(make_model(), tmp_path / "good.safetensors")
    data = good.read_bytes()

    assert "not found" in _assert_one_line_error(tmp_path / "missing.safetensors")
    assert "folder" in _assert_one_line_error(tmp_path)

    (tmp_path / "empty.safetensors").write_bytes(b"")
    _assert_one_line_error(tmp_path / "empty.safetensors")

    (tmp_path / "text.safetensors").write_text("hello, this is not a model\n" * 20)
    _assert_one_line_error(tmp_path / "text.safetensors")

    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    _assert_one_line_error(tmp_path / "truncated.safetensors")

    (tmp_path / "header_cut.safetensors").write_bytes(data[:40])
    _assert_one_line_error(tmp_path / "header_cut.safetensors")

    garbled = bytearray(data)
    garbled[20:60] = b"\xff" * 40
    (tmp_path / "garbled.safetensors").write_bytes(bytes(garbled))
    _assert_one_line_error(tmp_path / "garbled.safetensors")

    # A valid safetensors file that is not ours (no format tag).
    save_file({"weight": torch.zeros(3, 3)}, str(tmp_path / "foreign.safetensors"), metadata={"format": "pt"})
    assert "not a CUTSSegmentation model" in _assert_one_line_error(tmp_path / "foreign.safetensors")

    # Our tag but weights of some other network.
    save_file(
        {"weight": torch.zeros(3, 3)},
        str(tmp_path / "wrong_weights.safetensors"),
        metadata={
            "format": FORMAT_TAG,
            "format_version": "1",
            "card": json.dumps({"channels": 3, "embed_dim": 128, "normalisation": {"mode": "uint8"}}),
        },
    )
    assert "do not match" in _assert_one_line_error(tmp_path / "wrong_weights.safetensors")

    # A file from a newer, unknown format version.
    newer = {"format": FORMAT_TAG, "format_version": "99", "card": "{}"}
    save_file({"weight": torch.zeros(1)}, str(tmp_path / "newer.safetensors"), metadata=newer)
    assert "newer" in _assert_one_line_error(tmp_path / "newer.safetensors")


def test_pickle_files_are_rejected_without_executing_them(tmp_path) -> None:
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(tmp_path / "evil.safetensors", "wb") as fh:
        pickle.dump(Evil(), fh)
    torch.save(make_model().encoder.state_dict(), tmp_path / "torch.safetensors")
    _assert_one_line_error(tmp_path / "evil.safetensors")
    _assert_one_line_error(tmp_path / "torch.safetensors")
    assert not marker.exists()


def test_check_compatible_channels() -> None:
    rgb_model = make_model(3)
    grey = ImageData(np.zeros((4, 16, 16, 1), np.float32), source="brain.nrrd")
    with pytest.raises(ModelFileError, match=r"3 channels \(RGB\).*brain.nrrd has 1 channel \(grey\)"):
        check_compatible(rgb_model, grey)
    check_compatible(rgb_model, rgb_image())
    with pytest.raises(ModelFileError):
        compute_embeddings(rgb_model, grey, device="cpu")
