"""The one-shot commands: ``train`` (one configuration, no study) and ``dashboard``."""

from __future__ import annotations

import logging
import warnings
from typing import Any

from models.config import Config, parse_overrides


def build_config(overrides: list[str], data: str | None) -> Config:
    """Config from ``--set key=value`` items and ``--data SPEC`` (which wins over dataset=)."""
    values = parse_overrides(overrides)
    if data:
        values["dataset"] = data
    return Config.from_dict(values)


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


def train(overrides: list[str], data: str | None, progress: bool = False,
          log_dir: str | None = None) -> dict[str, Any]:
    """Train one config in this process, through the same ``fit`` every trial uses.

    With ``log_dir``, Lightning's CSVLogger writes the per-step training and per-epoch
    validation metrics to ``log_dir/version_N/metrics.csv``.
    """
    cfg = build_config(overrides, data)  # before importing torch: bad input fails fast
    from pytorch_lightning.loggers import CSVLogger

    from models.train import fit
    from sweep.provenance import provenance

    quiet_logs()
    logger = CSVLogger(log_dir, name="") if log_dir else False
    result = fit(cfg, progress=progress, logger=logger)
    return {**result.metrics, "config": cfg.to_dict(), **provenance()}


def dashboard(storage_url: str | None, port: int) -> None:
    """optuna-dashboard on this storage, with the artifact store the trials wrote to."""
    import optuna_dashboard
    from optuna.artifacts import FileSystemArtifactStore

    from sweep.storage import artifact_dir, open_storage, resolve_storage_url

    url = resolve_storage_url(storage_url)
    storage = open_storage(url, heartbeat_interval=None, must_exist=True)
    store = FileSystemArtifactStore(str(artifact_dir(url)))
    print(f"optuna-dashboard on http://127.0.0.1:{port}/ for {url}", flush=True)
    optuna_dashboard.run_server(storage, host="127.0.0.1", port=port, artifact_store=store)
