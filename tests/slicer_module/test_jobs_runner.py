"""CUTSSegmentationJobs.runner: engine commands, streamed progress, errors, and a Cancel that kills the tree."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

from CUTSSegmentationJobs import EngineJob, engine_directory, segment_args, train_args
from CUTSSegmentationJobs.engine import PROGRESS_LINE_PREFIX
from CUTSSegmentationJobs.runner import child_environment, engine_command


def test_commands_run_the_engine_module_with_progress_lines(tmp_path: Path):
    args = segment_args(
        tmp_path / "in.nrrd",
        tmp_path / "out",
        model=tmp_path / "m.safetensors",
        epochs=5,
        device="cpu",
    )
    assert args[:4] == [
        "segment",
        str(tmp_path / "in.nrrd"),
        "--out",
        str(tmp_path / "out"),
    ]
    assert "--model" in args and "--epochs" not in args  # epochs only matter when training on the input
    assert args[-2:] == ["--progress", "lines"] and args[args.index("--device") + 1] == "cpu"
    args = train_args([tmp_path / "a.nrrd", tmp_path / "b.nrrd"], tmp_path / "m.safetensors", epochs=3)
    assert args[:3] == ["train", str(tmp_path / "a.nrrd"), str(tmp_path / "b.nrrd")] and "--epochs" in args
    assert engine_command("py", ["x"]) == ["py", "-m", "CUTSSegmentationLib", "x"]
    assert (engine_directory() / "CUTSSegmentationLib" / "__init__.py").is_file()
    env = child_environment({"PYTHONPATH": "/elsewhere"})
    assert env["PYTHONPATH"].split(os.pathsep) == [
        str(engine_directory()),
        "/elsewhere",
    ]


def test_the_child_writes_utf8_whatever_the_locale(tmp_path: Path):
    """Slicer < 5.12 does not set PYTHONUTF8: the job sets it, so non-ASCII messages arrive intact."""
    env = child_environment({"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "LANG": "C"})
    assert env["PYTHONUTF8"] == "1" and env["PYTHONIOENCODING"] == "utf-8"
    output: list[str] = []
    job = EngineJob(
        work_dir=tmp_path / "job",
        env={"LC_ALL": "C", "LANG": "C", "PYTHONIOENCODING": "ascii"},
        on_output=output.append,
    )
    job.start_command(
        _script("""
        import sys
        print("Fehler: Bildgröße µm ≠ 0")
        print("Fehler: Bildgröße µm ≠ 0", file=sys.stderr)
        print(sys.stdout.encoding)
    """)
    )
    result = job.wait(timeout=60)
    assert result.ok, result.stderr_tail
    assert output.count("Fehler: Bildgröße µm ≠ 0") == 2  # stdout and stderr (read by two threads)
    assert [line for line in output if "Fehler" not in line] == ["utf-8"]


def _script(body: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(body)]


def test_job_streams_progress_and_output(tmp_path: Path):
    seen: list[tuple] = []
    output: list[str] = []
    job = EngineJob(
        work_dir=tmp_path / "job",
        on_progress=lambda *p: seen.append(p),
        on_output=output.append,
    )
    job.start_command(
        _script(f"""
        import sys
        print("{PROGRESS_LINE_PREFIX} train 0.5000 epoch 1/2", flush=True)
        print("plain line", flush=True)
        print("{PROGRESS_LINE_PREFIX} embed 0.5000 overall=0.6000 eta=120 slice 3/6", flush=True)
        print("{PROGRESS_LINE_PREFIX} condense 1.0000 7 levels", flush=True)
        print("warning on stderr", file=sys.stderr)
    """)
    )
    result = job.wait(timeout=60)
    assert result.ok and result.returncode == 0 and result.message().startswith("Finished")
    # Lines of the engine's whole-job format carry the job's fraction and the time left; older lines None.
    assert seen == [
        ("train", 0.5, "epoch 1/2", None, None),
        ("embed", 0.5, "slice 3/6", 0.6, 120.0),
        ("condense", 1.0, "7 levels", None, None),
    ]
    assert "plain line" in output and "warning on stderr" in output
    assert job.last_progress == ("condense", 1.0, "7 levels", None, None)
    job.cleanup()
    assert not job.work_dir.exists()


def test_job_failure_reports_the_engine_error_line(tmp_path: Path):
    job = EngineJob(work_dir=tmp_path / "job")
    job.start_command(
        _script("""
        import sys
        print("some detail", file=sys.stderr)
        print("cuts: error: input.nrrd: the image is constant", file=sys.stderr)
        sys.exit(2)
    """)
    )
    result = job.wait(timeout=60)
    assert not result.ok and result.returncode == 2
    assert result.error == "cuts: error: input.nrrd: the image is constant" == result.message()


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cancel_kills_the_process_tree_and_removes_the_work_folder():
    progress: list[tuple[str, float, str]] = []
    output: list[str] = []
    job = EngineJob(on_progress=lambda *p: progress.append(p), on_output=output.append)
    (job.path("result")).mkdir()
    (job.path("result", "partial.npz")).write_bytes(b"half written")
    # A child that reports progress, starts a grandchild (as the PythonSlicer launcher does) and keeps working.
    job.start_command(
        _script(f"""
        import subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        print("GRANDCHILD", grandchild.pid, flush=True)
        for i in range(1200):
            print("{PROGRESS_LINE_PREFIX} train", f"{{i / 1200:.4f}}", "epoch", i, flush=True)
            time.sleep(0.1)
    """)
    )
    deadline = time.monotonic() + 60
    grandchild = None
    while time.monotonic() < deadline and (grandchild is None or not progress):
        assert job.poll() is None
        grandchild = next(
            (int(line.split()[1]) for line in output if line.startswith("GRANDCHILD")),
            None,
        )
        time.sleep(0.05)
    assert grandchild is not None and progress, "the child did not start"
    child = job.pid
    assert _alive(child) and _alive(grandchild)

    result = job.cancel()
    assert result.cancelled and not result.ok and result.message().startswith("Cancelled")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (_alive(child) or _alive(grandchild)):
        time.sleep(0.05)
    assert not _alive(child), "the job process survived cancel"
    assert not _alive(grandchild), "a grandchild of the job survived cancel"
    assert not job.work_dir.exists(), "the job's temporary folder (with its partial output) was not removed"
    assert job.poll() is result and job.cancel() is result  # idempotent
