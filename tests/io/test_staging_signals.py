"""Held signals: a SIGINT that reaches the process during a held block (from any thread) lands after it."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from CUTSSegmentationLib.io.staging import _signals_held


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def test_a_signal_sent_from_another_thread_during_a_held_block_lands_after_it() -> None:
    steps: list[str] = []
    previous = signal.signal(signal.SIGINT, _interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            with _signals_held():
                sender = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGINT))
                sender.start()
                sender.join()
                time.sleep(0.05)  # room for the handler to run here, which it must not
                steps.append("block finished")
        assert steps == ["block finished"]
        assert signal.getsignal(signal.SIGINT) is _interrupt  # the caller's handler is back
    finally:
        signal.signal(signal.SIGINT, previous)
