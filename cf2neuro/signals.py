"""SIGTERM and SIGHUP stop cf2neuro as Ctrl-C does: cleanly, with exit status 128 + signal.

    with stop_on_signals():      # the CLI wraps every subcommand in it
        ...                      # a signal raises `Stopped` here; `finally` blocks run

A scheduler, `timeout` or a closing terminal sends SIGTERM or SIGHUP, whose
default action ends Python at once: no `finally`, so Lava processes, shared
memory and temp dirs would stay. Raising `Stopped` (a KeyboardInterrupt)
unwinds the stack instead; the runners' `finally` blocks stop their runtimes
and atomic writes drop their temp files.
"""

from __future__ import annotations

import contextlib
import signal

SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class Stopped(KeyboardInterrupt):
    """A stop signal arrived; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum, frame):
    raise Stopped(signum)


@contextlib.contextmanager
def stop_on_signals(restore: bool = True):
    """Turn SIGTERM, SIGHUP and SIGINT into `Stopped` while the block runs.

    Afterwards the old handlers come back, or (``restore=False``, a command line
    about to exit) the signals are ignored: the work is done and written, so a
    signal then must not turn a finished run into a killed one.
    """
    old = {}
    for s in SIGNALS:
        with contextlib.suppress(ValueError, OSError):  # not the main thread: leave them
            old[s] = signal.signal(s, _raise)
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler if restore else signal.SIG_IGN)


def exit_status(stop: KeyboardInterrupt) -> tuple[int, str]:
    """(128 + signal number, signal name) for a `Stopped` or a plain KeyboardInterrupt."""
    signum = getattr(stop, "signum", signal.SIGINT)
    return 128 + int(signum), signal.Signals(signum).name
