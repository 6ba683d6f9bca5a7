"""Quiet logging for sweeps: our own progress keeps the terminal, not Lightning's and
Optuna's info lines (device banners, tips, one line per trial) repeated for every trial."""

from __future__ import annotations

import logging
import warnings


class _NoInterruptTraceback(logging.Filter):
    """Ctrl-C is the user's doing, not a bug: Optuna's notice that it failed the trial stays,
    its traceback goes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_logs() -> None:
    """Keep the terminal for our own progress: Lightning's and Optuna's info lines (device
    banners, tips, one line per trial) repeat for every trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for handler in logging.getLogger("optuna").handlers:  # Optuna's own stderr handler
        if not any(isinstance(f, _NoInterruptTraceback) for f in handler.filters):
            handler.addFilter(_NoInterruptTraceback())
    # pytorch-lightning 2.6 calls a torch API that torch 2.14 deprecated, once per Trainer.
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
