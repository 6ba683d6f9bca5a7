"""SIGTERM and SIGINT in a worker: when they raise, and when they only wait their turn.

A worker is stopped by ``kill``, systemd, ``docker stop`` (SIGTERM) or Ctrl-C (SIGINT, which
a terminal sends to the worker and to its parent, which forwards another). Whatever moment
the signal lands in, its trial must end either FAIL with the signal as its reason and one
re-run queued, or finished as it was when its result was told already.

So the signal raises KeyboardInterrupt at once only while the trial trains (``armed``: the
objective, where Lightning turns it into a graceful stop and the fit must be cut short).
Anywhere else (taking a trial, telling its result, recording an interruption, waiting
between trials) it is only noted in RECEIVED, and the worker stops at its next safe point
(``stop_if_signalled``): a KeyboardInterrupt raised in the middle of ``ask()`` or ``tell()``
would leave a trial RUNNING after a clean exit. Further signals are ignored: the first one is
being handled.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

RECEIVED: list[str] = []  # the signal that stopped this worker, once one has
_ARMED = [False]  # whether a signal raises at once (inside ``armed``)


def _interrupt(signum: int, frame: Any) -> None:
    if RECEIVED:  # the first one is being handled: a worker checkpoints and marks once
        return
    RECEIVED.append(signal.Signals(signum).name)
    if _ARMED[0]:
        raise KeyboardInterrupt(RECEIVED[0])


@contextmanager
def signals_interrupt() -> Iterator[list[str]]:
    """For one run: SIGTERM and SIGINT stop this worker once, in the main thread (see the
    module docstring). Yields the run's record of the signal received: cleared as the run
    starts, so a second run in the same process (a notebook's kernel) answers a signal as
    the first did; the previous handlers are back afterwards."""
    RECEIVED.clear()
    if threading.current_thread() is not threading.main_thread():
        yield RECEIVED
        return
    old = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield RECEIVED
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@contextmanager
def armed() -> Iterator[None]:
    """Inside, a signal raises KeyboardInterrupt at once; so does one noted before."""
    try:
        _ARMED[0] = True
        stop_if_signalled()
        yield
    finally:
        _ARMED[0] = False


def stop_if_signalled() -> None:
    """A safe point: raise KeyboardInterrupt if a signal was noted."""
    if RECEIVED:
        raise KeyboardInterrupt(RECEIVED[0])


def stopped_by(err: BaseException) -> str:
    """The signal (``SIGTERM``) or exit (``exit(1)``) that ``err``, a KeyboardInterrupt or
    SystemExit out of a trial, stands for. A signal is noted in RECEIVED first, so that none
    raises while the trial is recorded."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    if not RECEIVED:
        if isinstance(err, SIGTERMException):  # Lightning's, when its handler saw the signal
            RECEIVED.append("SIGTERM")
        elif isinstance(err, KeyboardInterrupt):
            RECEIVED.append("SIGINT")
        else:  # a sys.exit() inside the trial: this process is leaving all the same
            return f"exit({getattr(err, 'code', '')})"
    return RECEIVED[0]
