"""Progress reporting and cancellation shared by every long job (training, embeddings, condensation).

Long work reports through a `ProgressCallback` (stage name, fraction done, message) and polls a
`CancelToken`; the command line prints a progress bar, the Slicer module's background process prints
machine-readable lines that the widget parses, and tests pass their own callback. Cancel is cooperative:
the job calls `token.raise_if_cancelled()` between steps and raises `CancelledError`.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Optional, TextIO

from .errors import CancelledError

#: stage, fraction in [0, 1], free-text message
ProgressCallback = Callable[[str, float, str], None]

#: Prefix of the machine-readable progress lines printed for a parent process (the Slicer module).
PROGRESS_LINE_PREFIX = "CUTS-PROGRESS"


def no_progress(stage: str, fraction: float, message: str = "") -> None:
    """A callback that ignores everything (the default for library calls)."""


class CancelToken:
    """Thread-safe flag a caller sets to ask a running job to stop at its next checkpoint."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise CancelledError("cancelled by the user")


def check_cancel(token: Optional[CancelToken]) -> None:
    """Raise `CancelledError` if a token was given and has been cancelled."""
    if token is not None:
        token.raise_if_cancelled()


class ConsoleProgress:
    """Progress bar on a terminal: one line per stage, redrawn in place, at most every `min_interval` s."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30, min_interval: float = 0.1) -> None:
        self.stream = stream
        self.width = width
        self.min_interval = min_interval
        self._stage: Optional[str] = None
        self._last = 0.0
        self._tty = hasattr(stream, "isatty") and stream.isatty()

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        fraction = min(max(float(fraction), 0.0), 1.0)
        new_stage = stage != self._stage
        if not new_stage and fraction < 1.0 and now - self._last < self.min_interval:
            return
        if new_stage and self._stage is not None and self._tty:
            self.stream.write("\n")
        self._stage = stage
        self._last = now
        filled = int(round(fraction * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"{stage:<14} [{bar}] {100 * fraction:5.1f}% {message}"
        if self._tty:
            self.stream.write("\r" + line[:200].ljust(80))
            if fraction >= 1.0:
                self.stream.write("\n")
                self._stage = None
        elif new_stage or fraction >= 1.0:
            # Not a terminal (a log file, CI): print stage starts and ends only.
            self.stream.write(line + "\n")
        self.stream.flush()


class LineProgress:
    """Machine-readable progress for a parent process: `CUTS-PROGRESS <stage> <fraction> <message>` lines."""

    def __init__(self, stream: TextIO = sys.stdout, min_interval: float = 0.2) -> None:
        self.stream = stream
        self.min_interval = min_interval
        self._last = 0.0
        self._stage: Optional[str] = None

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if stage == self._stage and fraction < 1.0 and now - self._last < self.min_interval:
            return  # a stage's first line is always printed: a parent process learns where the job is
        self._last = now
        self._stage = stage
        self.stream.write(f"{PROGRESS_LINE_PREFIX} {stage} {float(fraction):.4f} {message}\n")
        self.stream.flush()


def parse_progress_line(line: str) -> Optional[tuple[str, float, str]]:
    """Inverse of `LineProgress`: (stage, fraction, message), or None for any other line."""
    parts = line.rstrip("\n").split(" ", 3)
    if len(parts) < 3 or parts[0] != PROGRESS_LINE_PREFIX:
        return None
    try:
        fraction = float(parts[2])
    except ValueError:
        return None
    return parts[1], fraction, parts[3] if len(parts) > 3 else ""
