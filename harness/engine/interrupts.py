"""Turn SIGTERM (and SIGHUP) into an exception so a run stops like on Ctrl-C: `finally` blocks run, the run store
records "interrupted" in the manifest and releases its lock, and at most the in-flight samples are lost.

Python's default for SIGTERM ends the process without running any cleanup; SIGINT already raises
KeyboardInterrupt. Only the main thread receives signals, so use this around the runner's main loop there.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM/SIGHUP). A KeyboardInterrupt so every Ctrl-C path handles it."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


@contextmanager
def graceful_termination(signals=(signal.SIGTERM, signal.SIGHUP)):
    """Within the block, the given signals raise Terminated in the main thread. Elsewhere (not the main thread),
    this does nothing: Python only lets the main thread install handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise Terminated(signum)

    previous = {}
    for sig in signals:
        previous[sig] = signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def exit_code(exc: BaseException) -> int:
    """The shell convention: 128 + signal number (130 for Ctrl-C, 143 for SIGTERM)."""
    if isinstance(exc, Terminated):
        return 128 + exc.signum
    return 130
