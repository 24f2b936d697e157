"""Run the engine's command line (`python -m CUTSSegmentationLib ...`) as a child process that never blocks Slicer.

Why a child process and not a thread: training and condensation hold the GIL for long stretches and may
use gigabytes; in a separate PythonSlicer process the Slicer GUI stays responsive, an out-of-memory kill
takes down only the job, and Cancel is immediate and complete (killing the process tree frees CPU, RAM
and GPU memory at once, whatever the engine was doing).

This module is deliberately free of Qt and of `slicer`: the widget drives an `EngineJob` with a
`qt.QTimer` that calls `poll()`; tests drive it with plain Python and `sys.executable`.

Life of a job:
    job = EngineJob(python=...)              # owns a fresh temporary work folder
    job.start(segment_args(input, job.path("result"), ...))
    ... job.poll() every ~200 ms -> progress callbacks; returns a JobResult when the process has ended
    job.cancel()                             # kill the whole process tree, delete the work folder
    job.cleanup()                            # after the caller has read its outputs

Nothing is ever written outside the work folder, so a cancelled or failed job leaves the scene and the
user's files exactly as they were.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

from .engine import ENGINE_PACKAGE, ProgressLine, engine_package, parse_progress_line
from .environment import CREATE_NO_WINDOW, hidden_console_options

PathLike = Union[str, "os.PathLike[str]"]
#: How long `cancel()` waits for the killed process tree to be reaped.
KILL_WAIT_S = 10.0

#: stage, the stage's fraction, message, the whole job's fraction and the seconds left (None: not reported)
ProgressHandler = Callable[[str, float, str, Optional[float], Optional[float]], None]
LineHandler = Callable[[str], None]


# --------------------------------------------------------------------------------------- commands
def engine_directory() -> Path:
    """Folder that contains the CUTSSegmentationLib package (the child's working directory and PYTHONPATH).

    Installed extension: the module's qt-scripted-modules folder; source checkout: the repository root.
    """
    return Path(engine_package().__file__).resolve().parent.parent


def _common(device: str, seed: int) -> list[str]:
    return ["--device", str(device), "--seed", str(int(seed)), "--progress", "lines"]


def train_args(
    inputs: Sequence[PathLike],
    model_out: PathLike,
    *,
    epochs: int | None = None,
    device: str = "auto",
    seed: int = 0,
    sequences: int = 1,
) -> list[str]:
    """`cuts train INPUT... --out MODEL.safetensors [--sequences K] [--epochs N] --device D --seed S --progress lines`.

    With `sequences` K > 1, consecutive groups of K inputs are one case's sequences (channels in that order).
    """
    if not inputs:
        raise ValueError("train_args needs at least one input file")
    if sequences < 1 or len(inputs) % sequences:
        raise ValueError(f"train_args: {len(inputs)} inputs do not split into cases of {sequences} sequences")
    args = ["train", *[str(Path(p)) for p in inputs], "--out", str(Path(model_out))]
    if sequences > 1:
        args += ["--sequences", str(int(sequences))]
    if epochs:
        args += ["--epochs", str(int(epochs))]
    return args + _common(device, seed)


def segment_args(
    input_path: PathLike | Sequence[PathLike],
    out_dir: PathLike,
    *,
    model: PathLike | None = None,
    epochs: int | None = None,
    device: str = "auto",
    seed: int = 0,
) -> list[str]:
    """`cuts segment INPUT... --out DIR [--model M | --epochs N] --device D --seed S --progress lines`.

    `input_path` is one file or a case's co-registered sequences (channels in that order; the outputs take
    the first one's grid). `epochs` only matters without a model (the engine then trains on the input first).
    """
    paths = [input_path] if isinstance(input_path, (str, os.PathLike)) else list(input_path)
    if not paths:
        raise ValueError("segment_args needs at least one input file")
    args = ["segment", *[str(Path(p)) for p in paths], "--out", str(Path(out_dir))]
    if model:
        args += ["--model", str(Path(model))]
    elif epochs:
        args += ["--epochs", str(int(epochs))]
    return args + _common(device, seed)


def closer_look_args(
    hierarchy_path: PathLike,
    seed_xyz: Sequence[float],
    inputs: Sequence[PathLike],
    model: Optional[PathLike],
    mask_out: PathLike,
    *,
    device: str = "auto",
    closer: str = "always",
) -> list[str]:
    """`cuts binarize H --seed X,Y,Z --closer C --image INPUT... [--model M] --out MASK --device D --progress lines`.

    ``closer="always"``: the structure the hierarchies of boxes around the seed agree on (the engine's closer
    look). ``closer="auto"``: the structure at its own level, as `cuts binarize --seed` keeps it (grown and
    snapped to the image's edge; looked at closer where the hierarchy is too coarse and `model` is given).
    `inputs` are the segmented volume's files in channel order, `model` the encoder that embedded them.
    """
    if not inputs:
        raise ValueError("closer_look_args needs the segmented input files")
    if closer not in ("always", "auto"):
        raise ValueError(f"closer must be 'always' or 'auto', not {closer!r}")
    if model is None and closer == "always":
        raise ValueError("a closer look needs the encoder that embedded the volume")
    seed = ",".join(f"{float(v):g}" for v in seed_xyz)
    args = ["binarize", str(Path(hierarchy_path)), "--seed", seed, "--closer", closer]
    args += ["--image", *[str(Path(p)) for p in inputs]]
    if model is not None:
        args += ["--model", str(Path(model))]
    return args + ["--out", str(Path(mask_out)), "--device", str(device), "--progress", "lines"]


def engine_command(python: str, engine_args: Sequence[str]) -> list[str]:
    """Full argv: `<python> -m CUTSSegmentationLib <engine args>`."""
    return [str(python), "-m", ENGINE_PACKAGE, *[str(a) for a in engine_args]]


def child_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for the child: `base` (default: this process's) + the engine folder on PYTHONPATH.

    PYTHONUNBUFFERED makes progress lines arrive as they are printed, not when a 8 kB buffer fills.
    PYTHONUTF8 and PYTHONIOENCODING make the child write UTF-8, which is how its output is read: on Windows
    its streams would otherwise use the ANSI code page (cp1252), and Slicer's launcher sets PYTHONUTF8
    itself only from Slicer 5.12 on.
    """
    env = dict(os.environ if base is None else base)
    engine_dir = str(engine_directory())
    existing = env.get("PYTHONPATH", "")
    parts = [p for p in existing.split(os.pathsep) if p]
    if engine_dir not in parts:
        parts.insert(0, engine_dir)
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONUTF8"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


# --------------------------------------------------------------------------------------- process tree
def kill_process_tree(process: subprocess.Popen) -> None:
    """Kill `process` and everything it started; does not wait.

    PythonSlicer is a launcher that starts the real interpreter as its child, so killing only the launcher
    would leave the job running. On POSIX the job runs in its own session (process group), which is killed
    as a whole; on Windows `taskkill /T` walks the tree. psutil, when present, also catches children that
    left the group.
    """
    if process.poll() is not None and os.name != "nt":
        # The leader is gone; its group may still hold grandchildren.
        _killpg(process.pid)
        return
    try:
        import psutil  # optional: Slicer's Python often has it

        try:
            children = psutil.Process(process.pid).children(recursive=True)
        except psutil.Error:
            children = []
        for child in children:
            try:
                child.kill()
            except psutil.Error:
                pass
    except ImportError:
        pass
    if os.name == "nt":
        subprocess.run(
            ["taskkill", "/F", "/T", "/PID", str(process.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            **hidden_console_options(),
        )
    else:
        _killpg(process.pid)
    try:
        process.kill()
    except OSError:
        pass


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


# --------------------------------------------------------------------------------------- the job
@dataclass
class JobResult:
    """How a job ended. `error` is the engine's one-line explanation (last stderr line) when it failed."""

    returncode: int | None
    cancelled: bool = False
    error: str = ""
    elapsed_s: float = 0.0
    stderr_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.cancelled and self.returncode == 0

    def message(self) -> str:
        """One line for a status label or an error dialog."""
        if self.cancelled:
            return "Cancelled: nothing was changed."
        if self.ok:
            return f"Finished in {self.elapsed_s:.1f} s."
        reason = self.error or f"the engine process ended with exit code {self.returncode}"
        return reason


class EngineJob:
    """One child process with streamed output, progress parsing, tree-kill cancel and a private work folder."""

    def __init__(
        self,
        *,
        python: str | None = None,
        work_dir: PathLike | None = None,
        env: Mapping[str, str] | None = None,
        on_progress: ProgressHandler | None = None,
        on_output: LineHandler | None = None,
        name: str = "CUTS job",
    ) -> None:
        self.python = python or sys.executable
        self.name = name
        self.on_progress = on_progress
        self.on_output = on_output
        self.env = env
        if work_dir is None:
            self.work_dir = Path(tempfile.mkdtemp(prefix="cuts-job-"))
        else:
            self.work_dir = Path(work_dir)
            self.work_dir.mkdir(parents=True, exist_ok=True)
        self.command: list[str] = []
        self.last_progress: ProgressLine | None = None
        self.result: JobResult | None = None
        self._process: subprocess.Popen | None = None
        self._queue: queue.Queue[tuple[str, str | None]] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._open_streams = 0
        self._stderr_tail: list[str] = []
        self._start_time = 0.0
        self._cancelled = False

    # ------------------------------------------------------------------ paths
    def path(self, *parts: str) -> Path:
        """A path inside the job's work folder (where inputs are written and outputs appear)."""
        return self.work_dir.joinpath(*parts)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # ------------------------------------------------------------------ start
    def start(self, engine_args: Sequence[str]) -> None:
        """Start `python -m CUTSSegmentationLib <engine_args>` in the engine folder."""
        self.start_command(engine_command(self.python, engine_args), cwd=engine_directory())

    def start_command(self, argv: Sequence[str], cwd: PathLike | None = None) -> None:
        """Start any command (tests use a small `python -c` script); stdout/stderr are read by two threads."""
        if self._process is not None:
            raise RuntimeError(f"{self.name} was already started")
        self.command = [str(a) for a in argv]
        kwargs: dict = {}
        if os.name == "nt":
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x200) | CREATE_NO_WINDOW
        else:
            kwargs["start_new_session"] = True  # own process group: cancel kills the whole tree
        self._start_time = time.monotonic()
        self._process = subprocess.Popen(
            self.command,
            cwd=str(cwd) if cwd is not None else None,
            env=child_environment(self.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            **kwargs,
        )
        for tag, stream in (
            ("out", self._process.stdout),
            ("err", self._process.stderr),
        ):
            thread = threading.Thread(
                target=self._read,
                args=(tag, stream),
                name=f"{self.name} {tag}",
                daemon=True,
            )
            self._threads.append(thread)
            self._open_streams += 1
            thread.start()

    def _read(self, tag: str, stream) -> None:
        try:
            for line in iter(stream.readline, ""):
                self._queue.put((tag, line.rstrip("\r\n")))
        except (OSError, ValueError):  # stream closed under us by cancel()
            pass
        finally:
            self._queue.put((tag, None))

    # ------------------------------------------------------------------ poll / wait
    def is_running(self) -> bool:
        return self._process is not None and self.result is None

    def poll(self) -> JobResult | None:
        """Handle the output read so far; return the JobResult once the process has ended (else None)."""
        if self.result is not None:
            return self.result
        if self._process is None:
            raise RuntimeError(f"{self.name} was not started")
        while True:
            try:
                tag, line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._open_streams -= 1
                continue
            self._handle_line(tag, line)
        if self._open_streams > 0 or self._process.poll() is None:
            return None
        self.result = JobResult(
            returncode=self._process.returncode,
            error=self._error_line(),
            elapsed_s=time.monotonic() - self._start_time,
            stderr_tail=list(self._stderr_tail),
        )
        return self.result

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> JobResult:
        """Block until the job ends (console use and tests); TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = self.poll()
            if result is not None:
                return result
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not finish within {timeout} s")
            time.sleep(interval)

    def _handle_line(self, tag: str, line: str) -> None:
        parsed = parse_progress_line(line) if tag == "out" else None
        if parsed is not None:
            self.last_progress = parsed
            if self.on_progress is not None:
                self.on_progress(*parsed)
            return
        if tag == "err" and line.strip():
            self._stderr_tail = (self._stderr_tail + [line])[-20:]
        if self.on_output is not None:
            self.on_output(line)

    def _error_line(self) -> str:
        """The engine ends a failure with ONE clear line on stderr: the last non-empty one."""
        return self._stderr_tail[-1].strip() if self._stderr_tail else ""

    # ------------------------------------------------------------------ cancel / cleanup
    def cancel(self) -> JobResult:
        """Kill the process tree, wait for it, delete the work folder. Safe to call at any time, repeatedly."""
        if self.result is not None and self.result.cancelled:
            return self.result
        self._cancelled = True
        process = self._process
        if process is not None:
            kill_process_tree(process)
            try:
                process.wait(timeout=KILL_WAIT_S)
            except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL
                pass
            for thread in self._threads:
                thread.join(timeout=2.0)
            for stream in (process.stdout, process.stderr):
                try:
                    if stream is not None:
                        stream.close()
                except OSError:
                    pass
        self.result = JobResult(
            returncode=process.returncode if process is not None else None,
            cancelled=True,
            elapsed_s=time.monotonic() - self._start_time if process is not None else 0.0,
            stderr_tail=list(self._stderr_tail),
        )
        self.cleanup()
        return self.result

    def cleanup(self) -> None:
        """Delete the work folder (inputs written for the job, outputs not taken by the caller)."""
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def __del__(
        self,
    ) -> None:  # a forgotten job must not keep computing in the background
        try:
            if self._process is not None and self._process.poll() is None:
                kill_process_tree(self._process)
        except Exception:
            pass
