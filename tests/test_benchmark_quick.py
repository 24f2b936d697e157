"""The retina Table 1 benchmark in --quick mode (benchmarks/retina_table1.py): 16 of the 56 images, one seed,
a shorter training (50 epochs = 200 steps, half the CPU default), every method through the same harness; asserts
the ranking that must hold: CUTS persistent structures beat SLIC, watershed, Felzenszwalb and the random labeler
on Dice (the full 56-image, 3-seed run in docs/benchmarks.md shows the same ranking)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_benchmark_ranking(retina_dir: Path, tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import retina_table1
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    out = tmp_path / "quick.json"
    code = retina_table1.main(
        ["--quick", "--threads", "2", "--data", str(retina_dir), "--cache", str(tmp_path / "cache"), "--json", str(out)]
    )
    summary = json.loads(out.read_text())
    dice = {key: m["hint"]["dice"]["mean"] for key, m in summary["methods"].items()}
    assert len(summary["images"]) == 16 and summary["seeds"] == [0]
    # every method of the table ran and produced a Dice in [0, 1]
    for key in (
        "random",
        "watershed",
        "felzenszwalb",
        "felzenszwalb_default",
        "slic",
        "pixel_kmeans",
        "pixel_persistent",
        "pixel_best",
        "cuts_spectral",
        "cuts_persistent",
        "cuts_best",
    ):
        assert 0.0 <= dice[key] <= 1.0, key
    ours = dice["cuts_persistent"]
    for key in ("slic", "watershed", "felzenszwalb", "felzenszwalb_default", "random"):
        assert ours > dice[key], f"CUTS persistent Dice {ours:.3f} does not beat {key} ({dice[key]:.3f}): {dice}"
    assert code == 0
