"""Logging for sweeps.

- ``quiet_logs``: for a run, our own progress keeps the terminal, not Lightning's and
  Optuna's info lines (device banners, tips, one line per trial) repeated for every trial;
  levels, filters and warning filters are the caller's again afterwards.
- The sweep's own events go to the ``sweep`` logger (library modules log, never print).
  ``printed`` is what the command line installs to show them as it always has: INFO on
  stdout (stderr for a command whose stdout is data), warnings on stderr, and the progress
  line (records with ``redraw`` set) redrawn in
  place on a terminal. A notebook sees them with ``logging.basicConfig(level="INFO")``.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

LOGGER = "sweep"
_CLEAR = "\r\033[K"  # back to the line's start, and erase it


class _NoInterruptTraceback(logging.Filter):
    """Ctrl-C is the user's doing, not a bug: Optuna's notice that it failed the trial stays,
    its traceback goes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            record.exc_info, record.exc_text = None, None
        return True


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Within it, Optuna and Lightning say only warnings (and no notice that a feature is
    experimental), and Optuna no Ctrl-C traceback."""
    # Lightning sets its logger to INFO when first imported: imported later, inside this
    # block (a worker process's first trial), it would undo the level set here and print
    # its accelerator lines and tips for every trial.
    import optuna
    import pytorch_lightning  # noqa: F401

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    added = _NoInterruptTraceback()
    handlers = logging.getLogger("optuna").handlers  # Optuna's own stderr handler
    for handler in handlers:
        handler.addFilter(added)
    names = ("pytorch_lightning", "lightning.pytorch", "lightning.fabric")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # pytorch-lightning 2.6 calls a torch API that torch 2.14 deprecated, per Trainer.
            warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")
            # Heartbeats and their retry callback are the crash-safety we rely on, not an
            # experiment the user opted into: Optuna's notices would only clutter stderr.
            warnings.filterwarnings("ignore", message=".*is (an )?experimental")
            # Lightning's hint, on any machine with SLURM installed (a login node), to start
            # multi-process training with srun: every trial here is one process.
            warnings.filterwarnings("ignore", message="The `srun` command is available")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for handler in handlers:
            handler.removeFilter(added)
        optuna.logging.set_verbosity(verbosity)


class Console(logging.Handler):
    """The command line's view of the sweep's events (see the module docstring)."""

    def __init__(self, info_on_stderr: bool = False) -> None:
        super().__init__()
        self.info_on_stderr = info_on_stderr

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            info = record.levelno < logging.WARNING and not self.info_on_stderr
            stream = sys.stdout if info else sys.stderr
            tty = stream.isatty()
            if tty and getattr(record, "redraw", False):
                stream.write(_CLEAR + line)
            else:
                stream.write((_CLEAR if tty else "") + line + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


@contextmanager
def printed(info_on_stderr: bool = False) -> Iterator[None]:
    """The sweep's events printed (``Console``) while it lasts."""
    logger = logging.getLogger(LOGGER)
    handler, level = Console(info_on_stderr), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
