"""`cuts demo` on the bundled data (no download): every output is written and the phantom is segmented."""

from __future__ import annotations

import json
from pathlib import Path

import slicerio

from CUTSSegmentationLib.condense.hierarchy import Hierarchy
from CUTSSegmentationLib.demo import demo_retina_image, run_demo


def test_bundled_retina_is_an_rgb_uint8_image() -> None:
    image = demo_retina_image(size=64)
    assert image.array.shape == (1, 64, 64, 3) and image.source_dtype == "uint8"
    assert 0 <= image.array.min() and image.array.max() <= 255 and image.array.std() > 10


def test_demo_writes_everything(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    summary = run_demo(out, device="cpu", epochs=2)
    for name, shape in (("retina", (256, 256)), ("phantom", (32, 96, 96))):
        folder = out / name
        for file in ("hierarchy.npz", "persistent.nrrd", "segmentation.seg.nrrd", "levels.png", "model.safetensors"):
            assert (folder / file).is_file(), f"{name}/{file} missing"
        h = Hierarchy.load(folder / "hierarchy.npz")
        assert h.shape == shape and h.n_levels >= 2
        assert slicerio.read_segmentation(str(folder / "segmentation.seg.nrrd"))["segments"]
    assert json.loads((out / "summary.json").read_text())["phantom"]["levels"] == summary["phantom"]["levels"]
    # Even a 2-epoch encoder separates the skull from the rest of the phantom at some level.
    assert summary["phantom"]["best_level_dice_per_structure"]["1"] > 0.8
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
