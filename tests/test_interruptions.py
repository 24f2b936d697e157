"""SIGINT and SIGTERM at every stage of a real `cuts` process: exit 130 / 143 with one line, nothing lost or left.

The child prints `CUTS-PROGRESS <stage> ...` lines (``--progress lines``); the signal is sent when the stage's
first line arrives. Before each run the output places hold a previous result; afterwards they must hold it
byte for byte (or, for a signal that lands after the last rename, the complete new result), and nothing else
may have appeared: no staging folder, no temp file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from CUTSSegmentationLib.condense.hierarchy import Hierarchy
from CUTSSegmentationLib.evaluate.phantom import synthetic_image_2d
from CUTSSegmentationLib.io.outputs import SEGMENTATION_OUTPUTS
from CUTSSegmentationLib.io.writing import write_png
from CUTSSegmentationLib.learn.encoder import CUTSEncoder
from CUTSSegmentationLib.learn.modelfile import TrainedModel, load_model, save_model

REPO = Path(__file__).resolve().parents[1]
EXPECTED = {signal.SIGINT: 130, signal.SIGTERM: 143}


def tree_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (b"<dir>" if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


def interrupt_at(stage: str, signum: int, args: list) -> subprocess.CompletedProcess:
    """Run `cuts ARGS --progress lines`, send `signum` when the first line of `stage` arrives."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    child = subprocess.Popen(
        [sys.executable, "-m", "CUTSSegmentationLib", *map(str, args), "--progress", "lines"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    seen = []
    for line in child.stdout:
        seen.append(line.split(" ")[1] if line.startswith("CUTS-PROGRESS") else line)
        if line.startswith(f"CUTS-PROGRESS {stage} "):
            child.send_signal(signum)
            break
    stdout, stderr = child.communicate(timeout=120)
    assert stage in seen, f"stage {stage} never reported; saw {seen}; stderr: {stderr}"
    return subprocess.CompletedProcess(child.args, child.returncode, "".join(seen) + stdout, stderr)


def assert_one_line(result: subprocess.CompletedProcess, signum: int) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == EXPECTED[signum], result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("cuts: ") and ("terminated" if signum == signal.SIGTERM else "interrupted") in lines[0]


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    """A tiny input, a previous model with its card, a previous output folder with a file of the user's."""
    image, _ = synthetic_image_2d(size=32, seed=5)
    write_png(image.array[0, ..., 0].astype(np.uint8), tmp_path / "image.png")
    save_model(
        TrainedModel(CUTSEncoder(1, 8), {"normalisation": "uint8", "note": "previous"}), tmp_path / "m.safetensors"
    )
    out = tmp_path / "OUT"
    out.mkdir()
    for name in SEGMENTATION_OUTPUTS:
        (out / name).write_bytes(b"previous " + name.encode())
    (out / "notes.txt").write_text("the user's")
    return tmp_path


SEGMENT = ["segment", "image.png", "--out", "OUT", "--model", "m.safetensors"]
#: Many epochs after the first checkpoint (each a fraction of a second), so a signal sent on its line lands while
#: training still runs even when the test process is scheduled late; the signal ends the run early.
TRAIN = ["train", "image.png", "--out", "m.safetensors", "--epochs", "60", "--checkpoint"]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize(
    "stage,args",
    [("train", TRAIN), ("checkpoint", TRAIN), ("embed", SEGMENT), ("condense", SEGMENT), ("write", SEGMENT)],
)
def test_signal_at_each_stage(stage: str, args: list, signum: int, workspace: Path) -> None:
    before = tree_of(workspace)
    result = interrupt_at(
        stage, signum, [workspace / a if a.endswith((".png", "OUT", ".safetensors")) else a for a in args]
    )
    assert_one_line(result, signum)
    after = tree_of(workspace)
    if after == before:
        return
    # The signal landed after the last rename: only the complete new result may differ from the previous one.
    changed = {name for name in set(before) | set(after) if before.get(name) != after.get(name)}
    if stage == "checkpoint":
        assert changed == {"m.safetensors", "m.json"}, changed
        model = load_model(workspace / "m.safetensors")
        assert model.card["training"]["epochs_completed"] >= 1
    elif stage == "write":
        assert changed == {f"OUT/{name}" for name in SEGMENTATION_OUTPUTS}, changed
        Hierarchy.load(workspace / "OUT" / "hierarchy.npz")
    else:
        pytest.fail(f"a signal during {stage} changed {sorted(changed)}")
