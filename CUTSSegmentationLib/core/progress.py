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
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional, TextIO

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


@dataclass(frozen=True)
class ProgressUpdate:
    """One progress report as a display sees it: the stage's own fraction and, when a job plan is known, the
    whole job's fraction and the estimated seconds left (`core.overall_progress.OverallProgress` fills them).

    Examples
    --------
    >>> ProgressUpdate("embed", 0.5, "slice 3/6", overall=0.42, eta_s=95.0).overall
    0.42
    """

    stage: str
    fraction: float
    message: str = ""
    overall: Optional[float] = None  #: fraction of the whole job, None when no plan is known
    eta_s: Optional[float] = None  #: estimated seconds left of the whole job, None when unknown


def format_time_left(eta_s: Optional[float]) -> str:
    """Seconds left as a person reads them: "about 4 min left"; "" when unknown.

    Examples
    --------
    >>> format_time_left(250), format_time_left(20), format_time_left(0), format_time_left(None)
    ('about 4 min left', 'less than a minute left', '', '')
    >>> format_time_left(2 * 3600 + 600)
    'about 2 h 10 min left'
    """
    if eta_s is None or eta_s != eta_s or eta_s <= 0:
        return ""
    if eta_s < 45:
        return "less than a minute left"
    minutes = max(1, round(eta_s / 60))
    if minutes < 90:
        return f"about {minutes} min left"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes} min left" if minutes else f"about {hours} h left"


class ConsoleProgress:
    """Progress on a terminal: one line redrawn in place, at most every `min_interval` s.

    With a job plan (updates that carry `overall`), the bar is the whole job's, followed by the stage and the
    time left; without one, each stage gets its own bar. A stream that is not a terminal (a log file, CI) gets
    plain lines: each stage's start and end, and every tenth of the whole job.
    """

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30, min_interval: float = 0.1) -> None:
        self.stream = stream
        self.width = width
        self.min_interval = min_interval
        self._stage: Optional[str] = None
        self._last = 0.0
        self._shown = ""
        self._tenth = -1
        self._tty = hasattr(stream, "isatty") and stream.isatty()

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        self.on_update(ProgressUpdate(stage, fraction, message))

    def on_update(self, update: ProgressUpdate) -> None:
        """Draw one report (the bar, percent, stage, message and time left)."""
        now = time.monotonic()
        overall = update.overall
        fraction = min(max(float(update.fraction if overall is None else overall), 0.0), 1.0)
        finished = fraction >= 1.0 if overall is None else update.fraction >= 1.0
        new_stage = update.stage != self._stage
        if not new_stage and not finished and now - self._last < self.min_interval:
            return
        if overall is None and new_stage and self._stage is not None and self._tty:
            self.stream.write("\n")
            self._shown = ""
        self._stage = update.stage
        self._last = now
        line = self._line(update, fraction)
        if self._tty:
            if line != self._shown:
                # Pad to the previous line's length so that nothing of it is left behind.
                self.stream.write("\r" + line.ljust(len(self._shown)))
                self._shown = line
            if fraction >= 1.0:
                self.stream.write("\n")
                self._stage, self._shown = None, ""
        else:
            tenth = int(fraction * 10)
            if tenth < self._tenth:  # a new job (the whole fraction never goes back within one)
                self._tenth = -1
            if new_stage or finished or (overall is not None and tenth > self._tenth):
                self.stream.write(line + "\n")
            self._tenth = max(self._tenth, tenth)
        self.stream.flush()

    def _line(self, update: ProgressUpdate, fraction: float) -> str:
        filled = int(round(fraction * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        if update.overall is None:
            return f"{update.stage:<14} [{bar}] {100 * fraction:5.1f}% {update.message}"[:200]
        left = format_time_left(update.eta_s)
        message = update.message if len(update.message) <= 70 else update.message[:67] + "..."
        line = f"{update.stage:<10} [{bar}] {100 * fraction:3.0f}% {message}".rstrip()
        return line + (f", {left}" if left else "")


class LineProgress:
    """Machine-readable progress for a parent process, one line per report.

    ``CUTS-PROGRESS <stage> <fraction> [overall=<fraction>] [eta=<seconds>] <message>``: the two optional
    fields come with a job plan; a parser that predates them reads them as the start of the message.
    """

    def __init__(self, stream: TextIO = sys.stdout, min_interval: float = 0.2) -> None:
        self.stream = stream
        self.min_interval = min_interval
        self._last = 0.0
        self._stage: Optional[str] = None

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        self.on_update(ProgressUpdate(stage, fraction, message))

    def on_update(self, update: ProgressUpdate) -> None:
        """Print one report (a stage's first and last lines always; others at most every `min_interval` s)."""
        now = time.monotonic()
        if update.stage == self._stage and update.fraction < 1.0 and now - self._last < self.min_interval:
            return
        self._last = now
        self._stage = update.stage
        self.stream.write(format_progress_line(update) + "\n")
        self.stream.flush()


class ProgressLine(NamedTuple):
    """A parsed progress line; `overall` and `eta_s` are None in lines without them (older engines)."""

    stage: str
    fraction: float
    message: str
    overall: Optional[float] = None
    eta_s: Optional[float] = None


def format_progress_line(update: ProgressUpdate) -> str:
    """The `LineProgress` line of one report (without the newline).

    Examples
    --------
    >>> format_progress_line(ProgressUpdate("embed", 0.5, "slice 3/6", overall=0.42, eta_s=95.4))
    'CUTS-PROGRESS embed 0.5000 overall=0.4200 eta=95 slice 3/6'
    """
    fields = [PROGRESS_LINE_PREFIX, update.stage, f"{float(update.fraction):.4f}"]
    if update.overall is not None:
        fields.append(f"{_OVERALL}{float(update.overall):.4f}")
    if update.eta_s is not None:
        fields.append(f"{_ETA}{max(0, round(float(update.eta_s)))}")
    return " ".join(fields + [update.message])


_OVERALL = "overall="
_ETA = "eta="


def parse_progress_line(line: str) -> Optional[ProgressLine]:
    """Inverse of `LineProgress`: (stage, fraction, message, overall, eta_s), or None for any other line.

    Lines of older engines (no overall fraction, no time left) parse with None in those two fields.

    Examples
    --------
    >>> parse_progress_line("CUTS-PROGRESS train 0.2500 loss 0.1")
    ProgressLine(stage='train', fraction=0.25, message='loss 0.1', overall=None, eta_s=None)
    >>> parse_progress_line("CUTS-PROGRESS embed 0.5000 overall=0.4200 eta=95 slice 3/6")[3:]
    (0.42, 95.0)
    """
    parts = line.rstrip("\r\n").split(" ", 3)
    if len(parts) < 3 or parts[0] != PROGRESS_LINE_PREFIX:
        return None
    try:
        fraction = float(parts[2])
    except ValueError:
        return None
    message = parts[3] if len(parts) > 3 else ""
    overall = eta_s = None
    for prefix in (_OVERALL, _ETA):
        head, _, rest = message.partition(" ")
        if not head.startswith(prefix):
            continue
        try:
            value = float(head[len(prefix) :])
        except ValueError:
            break
        if prefix == _OVERALL:
            overall = value
        else:
            eta_s = value
        message = rest
    return ProgressLine(parts[1], fraction, message, overall, eta_s)
