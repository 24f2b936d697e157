"""Faults a careless or hostile user meets: each ends in one line and an exit code, and nothing of theirs is lost.

Real files, real child processes where the exit status matters; tiny inputs so every case takes seconds.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from CUTSSegmentationLib.cli import main
from CUTSSegmentationLib.condense.condensation import diffusion_potential
from CUTSSegmentationLib.condense.hierarchy import Hierarchy
from CUTSSegmentationLib.core.errors import InputError, ModelFileError
from CUTSSegmentationLib.core.exit_codes import EXIT_TERMINATED, exit_code_for, run_command
from CUTSSegmentationLib.core.imagedata import Geometry
from CUTSSegmentationLib.evaluate.phantom import synthetic_image_2d
from CUTSSegmentationLib.io.reading import read_image
from CUTSSegmentationLib.io.segnrrd import write_seg_nrrd
from CUTSSegmentationLib.io.staging import staged_outputs
from CUTSSegmentationLib.io.writing import write_label_image, write_png
from CUTSSegmentationLib.learn.encoder import CUTSEncoder
from CUTSSegmentationLib.learn.modelfile import TrainedModel, load_model, save_model

REPO = Path(__file__).resolve().parents[1]
BATCH = REPO / "CUTSSegmentation" / "Resources" / "Scripts" / "batch.py"
#: A place no one can create files in, root included (a read-only kernel file system).
UNWRITABLE = Path("/proc/cuts-no-such-folder")


def run_cuts(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "CUTSSegmentationLib", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def tree_of(folder: Path) -> dict[str, bytes]:
    """Every path under `folder` (relative) with its content (folders map to b'<dir>')."""
    return {str(p.relative_to(folder)): (b"<dir>" if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


def small_hierarchy(is_2d: bool = True, **geometry) -> Hierarchy:
    shape = (8, 8) if is_2d else (3, 8, 8)
    atoms = (np.arange(int(np.prod(shape))) % 4).reshape(shape).astype(np.int64)
    tree = np.array([[0, 1, 2, 3], [0, 0, 1, 1]], dtype=np.int64)
    levels = np.stack([tree[0][atoms] + 1, tree[1][atoms] + 1]).astype(np.uint16)
    return Hierarchy(
        levels=levels,
        n_clusters=[4, 2],
        level_steps=[0, 1],
        atom_map=atoms,
        merge_tree=tree,
        persistent=levels[0].copy(),
        geometry=Geometry(**geometry),
        is_2d=is_2d,
    )


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    image, _ = synthetic_image_2d(size=32, seed=4)
    return write_png(image.array[0, ..., 0].astype(np.uint8), tmp_path_factory.mktemp("in") / "image.png")


# 1. -------------------------------------------------------------- data loss in the output folder
def test_user_folder_named_like_an_output_survives_and_the_run_refuses(png: Path, tmp_path: Path) -> None:
    out = tmp_path / "OUT"
    user = out / "persistent.nrrd"
    user.mkdir(parents=True)
    (user / "notes.txt").write_text("mine")
    before = tree_of(tmp_path)
    result = run_cuts("segment", png, "--out", out, "--epochs", "1", "--progress", "none")
    assert result.returncode == 2
    assert "persistent.nrrd is a folder" in one_line(result.stderr)
    assert tree_of(tmp_path) == before


def test_staged_outputs_appear_together_and_keep_other_files(tmp_path: Path) -> None:
    out = tmp_path / "OUT"
    out.mkdir()
    (out / "a.txt").write_text("old a")
    (out / "b.txt").write_text("old b")
    (out / "mine.txt").write_text("user file")
    with pytest.raises(RuntimeError):
        with staged_outputs(out) as stage:
            (stage / "a.txt").write_text("new a")
            raise RuntimeError("fails before b is written")
    assert tree_of(tmp_path) == {
        "OUT": b"<dir>",
        "OUT/a.txt": b"old a",
        "OUT/b.txt": b"old b",
        "OUT/mine.txt": b"user file",
    }
    with staged_outputs(out) as stage:
        (stage / "a.txt").write_text("new a")
        (stage / "b.txt").write_text("new b")
    assert tree_of(tmp_path) == {
        "OUT": b"<dir>",
        "OUT/a.txt": b"new a",
        "OUT/b.txt": b"new b",
        "OUT/mine.txt": b"user file",
    }
    # A folder of the user's where an output file goes is refused at the swap too, with nothing moved.
    (out / "c.txt").mkdir()
    with pytest.raises(InputError, match="c.txt"):
        with staged_outputs(out) as stage:
            (stage / "a.txt").write_text("newer a")
            (stage / "c.txt").write_text("c")
    assert (out / "a.txt").read_text() == "new a" and (out / "c.txt").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["OUT"]


# 2. -------------------------------------------------------------------------- near-constant images
def test_diffusion_potential_of_a_single_atom() -> None:
    potential = diffusion_potential(torch.zeros(1, 4), torch.ones(1), knn=5, t=4, decay=40.0, dim=2)
    assert potential.shape == (1, 1) and bool(torch.isfinite(potential).all())


def test_near_constant_image_is_segmented(tmp_path: Path) -> None:
    array = np.zeros((24, 24), np.float32)
    array[3, 3] = 1e-6
    np.save(tmp_path / "tiny.npy", array)
    result = run_cuts(
        "segment", tmp_path / "tiny.npy", "--out", tmp_path / "out", "--epochs", "1", "--progress", "none"
    )
    assert result.returncode == 0, result.stderr
    assert Hierarchy.load(tmp_path / "out" / "hierarchy.npz").n_levels >= 1


def test_image_whose_range_overflows_float32_is_refused(tmp_path: Path) -> None:
    array = np.full((24, 24), -3e38, np.float32)
    array[:12] = 3e38
    np.save(tmp_path / "huge.npy", array)
    with pytest.raises(InputError, match="too wide"):
        read_image(tmp_path / "huge.npy")


# 3. ----------------------------------------------------------------------- SIGTERM is handled like SIGINT
def test_sigterm_ends_the_job_with_143_and_one_line(capsys) -> None:
    def job() -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler raises at the next bytecode
            pass
        return 0

    assert run_command("cuts", job) == EXIT_TERMINATED
    assert one_line(capsys.readouterr().err) == "cuts: terminated (SIGTERM)"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored after the job


def test_exit_code_mapping_is_shared() -> None:
    assert exit_code_for(InputError("x")) == 2
    assert exit_code_for(ModelFileError("x")) == 3
    assert exit_code_for(MemoryError()) == 4
    assert exit_code_for(KeyboardInterrupt()) == 130
    assert exit_code_for(ValueError("a bug")) is None
    assert "run_command" in BATCH.read_text() and "EXIT_CANCELLED = " not in BATCH.read_text()


# 4. ---------------------------------------------------------- output locations checked before any work
def test_output_problems_are_refused_before_any_work(png: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    (tmp_path / "dir.safetensors").mkdir()
    (tmp_path / "m.json").mkdir()
    hierarchy_3d = small_hierarchy(is_2d=False).save(tmp_path / "h3.npz")
    cases = [
        (["segment", png, "--out", a_file], "is a file"),
        (["segment", png, "--out", UNWRITABLE], "cannot"),
        (["train", png, "--out", tmp_path / "dir.safetensors"], "is a folder"),
        (["train", png, "--out", tmp_path / "m.safetensors"], "is a folder"),
        (["train", png, "--out", tmp_path / "model.txt"], ".safetensors"),
        (["train", png, "--out", UNWRITABLE / "m.safetensors"], "cannot"),
        (["binarize", hierarchy_3d, "--seed", "1,1,1", "--out", tmp_path / "x.txt"], "must end in"),
        (["binarize", hierarchy_3d, "--seed", "1,1,1", "--out", tmp_path / "x.png"], "cannot be a PNG"),
    ]
    before = tree_of(tmp_path)
    for args, needle in cases:
        result = run_cuts(*args, "--epochs", "1") if args[0] != "binarize" else run_cuts(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert needle in one_line(result.stderr), (args, result.stderr)
        assert "train " not in result.stdout + result.stderr  # refused before training started
    assert tree_of(tmp_path) == before  # in particular no m.safetensors beside the m.json folder


def test_batch_refuses_output_seed_and_level_before_segmenting(png: Path, tmp_path: Path) -> None:
    def batch(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(BATCH), "--input", str(png), *args], capture_output=True, text=True)

    for args, needle in [
        (["--output", str(UNWRITABLE / "x.seg.nrrd")], "cannot"),
        (["--output", str(tmp_path / "x.seg.nrrd"), "--level", "99"], "out of range"),
        (["--output", str(tmp_path / "x.seg.nrrd"), "--seed", "500,3"], "outside the image"),
    ]:
        result = batch(*args)
        assert result.returncode == 2, result.stderr
        assert needle in one_line(result.stderr)
    assert list(tmp_path.iterdir()) == []


# 5. ------------------------------------------------------------------------- non-finite seeds on 2D
@pytest.mark.parametrize("option,value", [("--seed-ras", "nan,1,0"), ("--seed-ras", "1,inf,0"), ("--seed", "nan,2")])
def test_non_finite_seed_is_refused(option: str, value: str, tmp_path: Path, capsys) -> None:
    path = small_hierarchy().save(tmp_path / "h.npz")
    assert main(["binarize", str(path), option, value, "--out", str(tmp_path / "m.nrrd")]) == 2
    assert "finite" in one_line(capsys.readouterr().err)


# 6. --------------------------------------------------------------------------------- complex pixels
def test_complex_nrrd_is_refused(tmp_path: Path) -> None:
    pixels = np.zeros((32, 32), np.complex64)
    pixels.real = np.arange(32)[None, :]
    pixels.imag = np.arange(32)[:, None]
    sitk.WriteImage(sitk.GetImageFromArray(pixels), str(tmp_path / "c.nrrd"))
    with pytest.raises(InputError, match="complex"):
        read_image(tmp_path / "c.nrrd")


# 7. ----------------------------------------------------------------------------------- no epochs
@pytest.mark.parametrize("epochs", ["0", "-1"])
def test_zero_or_negative_epochs_are_refused(png: Path, tmp_path: Path, epochs: str, capsys) -> None:
    assert main(["train", str(png), "--out", str(tmp_path / "m.safetensors"), "--epochs", epochs]) == 2
    assert "--epochs must be at least 1" in one_line(capsys.readouterr().err)
    assert main(["segment", str(png), "--out", str(tmp_path / "o"), "--epochs", epochs]) == 2
    assert list(tmp_path.iterdir()) == []


# 8. ---------------------------------------------------------------------- hierarchy file validation
@pytest.mark.parametrize(
    "geometry,needle",
    [
        ({"spacing": (0.0, 1.0, 1.0)}, "spacing"),
        ({"spacing": (float("nan"), 1.0, 1.0)}, "spacing"),
        ({"direction": (1.0, 0, 0, 1.0, 0, 0, 0, 0, 1.0)}, "orientation"),
        ({"origin": (float("inf"), 0.0, 0.0)}, "origin"),
    ],
)
def test_hierarchy_with_bad_geometry_is_refused(geometry: dict, needle: str, tmp_path: Path, capsys) -> None:
    path = small_hierarchy(**geometry).save(tmp_path / "h.npz")
    with pytest.raises(InputError, match=needle):
        Hierarchy.load(path)
    assert main(["binarize", str(path), "--seed", "1,1", "--out", str(tmp_path / "m.nrrd")]) == 2
    assert needle in one_line(capsys.readouterr().err)
    assert not (tmp_path / "m.nrrd").exists()


def test_hierarchy_marked_3d_with_2d_maps_is_refused(tmp_path: Path) -> None:
    hierarchy = small_hierarchy()
    hierarchy.is_2d = False
    with pytest.raises(InputError, match="marked 3D"):
        Hierarchy.load(hierarchy.save(tmp_path / "h.npz"))


def test_hierarchy_zip_bomb_is_refused_without_decompressing(tmp_path: Path) -> None:
    good = small_hierarchy().save(tmp_path / "h.npz")
    bomb = tmp_path / "bomb.npz"
    header = {"descr": "<u2", "fortran_order": False, "shape": (100000, 100000, 100000)}
    text = repr(header).encode() + b" " * 10 + b"\n"
    payload = np.lib.format.magic(1, 0) + len(text).to_bytes(2, "little") + text + b"\0" * 64
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as target:
        for name in source.namelist():
            target.writestr(name, payload if name == "atom_map.npy" else source.read(name))
    with pytest.raises(InputError, match="claims more data"):
        Hierarchy.load(bomb)


# 9. ------------------------------------------------------------------------------ files and umask
def test_outputs_get_the_mode_the_umask_gives(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        labels = np.eye(8, dtype=np.uint8)
        written = [
            write_label_image(labels, Geometry(), tmp_path / "mask.nrrd", is_2d=True),
            write_png(labels * 255, tmp_path / "mask.png"),
            write_seg_nrrd(labels, Geometry(), tmp_path / "s.seg.nrrd"),
            small_hierarchy().save(tmp_path / "h.npz"),
            save_model(TrainedModel(CUTSEncoder(1, 8), {"normalisation": "uint8"}), tmp_path / "m.safetensors"),
            tmp_path / "m.json",
        ]
        with staged_outputs(tmp_path / "folder") as stage:
            (stage / "x.txt").write_text("x")
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in written}
        assert modes == dict.fromkeys(modes, 0o644)
        assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755
        assert load_model(tmp_path / "m.safetensors").embed_dim == 8
    finally:
        os.umask(old)


# 10. ----------------------------------------------------------------------------------- messages
def test_messages_hold_no_object_addresses_and_no_huge_integers(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.nrrd"
    bad.write_bytes(b"NRRD0004\ntype: float\ndimension: 2\nsizes: 100 100\nencoding: raw\n\nabc")
    with pytest.raises(InputError) as refused:
        read_image(bad)
    assert "0x" not in str(refused.value) and "NrrdImageIO" in str(refused.value)
    path = small_hierarchy().save(tmp_path / "h.npz")
    assert main(["binarize", str(path), "--seed", "1e300,1", "--out", str(tmp_path / "m.nrrd")]) == 2
    line = one_line(capsys.readouterr().err)
    assert "outside the image" in line and len(line) < 200


def test_model_and_card_are_written_together(tmp_path: Path) -> None:
    (tmp_path / "m.json").mkdir()
    with pytest.raises(InputError):
        save_model(TrainedModel(CUTSEncoder(1, 8), {"normalisation": "uint8"}), tmp_path / "m.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]
