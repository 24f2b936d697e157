"""Exit codes of the `cuts` command line and the batch script, and the one place that maps errors to them.

A problem the user can fix ends with one line on stderr and its code; SIGTERM is handled like Ctrl-C
(the job unwinds, staged outputs are discarded) and ends with 143, as a process killed by SIGTERM reports
in a shell. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Callable, Optional, TextIO

from .errors import CancelledError, CUTSError, ModelFileError, ResourceError

EXIT_OK = 0
#: Bad input: a missing, unreadable or unsegmentable file, a bad option, an output that cannot be written.
EXIT_INPUT = 2
#: A missing, corrupt, foreign or incompatible model file.
EXIT_MODEL = 3
#: Not enough memory for the job.
EXIT_MEMORY = 4
#: Cancelled or interrupted (Ctrl-C, SIGINT): 128 + 2.
EXIT_CANCELLED = 130
#: Terminated (SIGTERM, e.g. a scheduler's or a service manager's stop): 128 + 15.
EXIT_TERMINATED = 143


class TerminatedError(CancelledError):
    """The process was asked to stop by SIGTERM; raised where the job is, so it unwinds like Ctrl-C."""


def exit_code_for(error: BaseException) -> Optional[int]:
    """The exit code of an error a user can act on, or None for a bug (which keeps its traceback).

    Examples
    --------
    >>> exit_code_for(ModelFileError("x")), exit_code_for(KeyboardInterrupt()), exit_code_for(KeyError("x"))
    (3, 130, None)
    """
    if isinstance(error, TerminatedError):
        return EXIT_TERMINATED
    if isinstance(error, (CancelledError, KeyboardInterrupt)):
        return EXIT_CANCELLED
    if isinstance(error, ModelFileError):
        return EXIT_MODEL
    if isinstance(error, (ResourceError, MemoryError)):
        return EXIT_MEMORY
    if isinstance(error, CUTSError):
        return EXIT_INPUT
    return None


def error_line(program: str, error: BaseException) -> str:
    """The one line printed for `error`: ``cuts: error: ...``, ``cuts: cancelled``, ``cuts: terminated``."""
    if isinstance(error, TerminatedError):
        return f"{program}: terminated (SIGTERM)"
    if isinstance(error, KeyboardInterrupt):
        return f"{program}: interrupted"
    if isinstance(error, CancelledError):
        return f"{program}: cancelled: {error}"
    text = " ".join(str(error).split()) or ("out of memory" if isinstance(error, MemoryError) else type(error).__name__)
    return f"{program}: error: {text}"


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _stop(signum: int, frame: object) -> None:
    """SIGINT -> KeyboardInterrupt, SIGTERM -> TerminatedError, raised where the job is; a second signal while
    the job unwinds is ignored so that it cannot interrupt the clean-up of the staged outputs."""
    for number in _STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
    if signum == signal.SIGTERM:
        raise TerminatedError("terminated")
    raise KeyboardInterrupt


def run_command(program: str, job: Callable[[], int], stream: Optional[TextIO] = None) -> int:
    """Run `job` with SIGTERM handled like Ctrl-C; turn a user-fixable error into one line and its exit code.

    Parameters
    ----------
    program : str
        Name at the start of the error line (``cuts``, ``batch.py``).
    job : callable
        Does the work and returns the exit code.
    stream : text stream, optional
        Where the line goes (default: ``sys.stderr``).

    Returns
    -------
    int
        The job's code, or the code `exit_code_for` gives its error.

    Examples
    --------
    >>> run_command("cuts", lambda: 0)
    0
    """
    stream = stream or sys.stderr
    main_thread = threading.current_thread() is threading.main_thread()
    # A signal the parent set to be ignored (a job started in the background) stays ignored.
    handled = [n for n in _STOP_SIGNALS if main_thread and signal.getsignal(n) is not signal.SIG_IGN]
    previous = {number: signal.signal(number, _stop) for number in handled}
    try:
        return int(job())
    except (Exception, KeyboardInterrupt) as error:
        code = exit_code_for(error)
        if code is None:
            raise
        print(error_line(program, error), file=stream)
        return code
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
