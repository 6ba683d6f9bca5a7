"""Lightning callbacks that connect a training run to its Optuna trial.

- ``CollapseStop``: the collapse-aware early stop that multi-objective studies need (they
  cannot use Optuna's report/should_prune pruners): after the KL warm-up, a run whose active
  units stay at 0 for ``patience`` validation epochs, or whose loss is NaN/inf, is stopped
  and the reason kept for the trial's attrs.
- ``OptunaPruning``: per-epoch ``trial.report`` + ``should_prune`` for single-objective
  studies (optuna-integration's callback needs the separate ``lightning`` package).
- ``EpochProgress``: how far a running trial is, as its ``progress`` user attr, so the live
  progress line and the dashboard show it during trials that take minutes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import optuna
import pytorch_lightning as pl

from models.module import VAE


class CollapseStop(pl.Callback):
    def __init__(self, patience: int = 1) -> None:
        self.patience = patience
        self.collapsed_epochs = 0
        self.reason: str | None = None
        self.state: str | None = None  # "PRUNED" (collapse) or "FAIL" (non-finite loss)

    def _stop(self, trainer: pl.Trainer, state: str, reason: str) -> None:
        self.state, self.reason = state, reason
        trainer.should_stop = True

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # Checked once an epoch, not per step: reading the loss would sync the device.
        assert isinstance(module, VAE)
        if self.state or not module.last_metrics:
            return
        loss = float(trainer.callback_metrics.get("train/loss", 0.0))
        if not (math.isfinite(loss) and math.isfinite(module.last_metrics["neg_elbo"])):
            self._stop(trainer, "FAIL", f"loss is {loss} at step {trainer.global_step}")
            return
        if trainer.global_step < module.warmup_end():
            return
        if module.last_metrics["active_units"] == 0:
            self.collapsed_epochs += 1
        else:
            self.collapsed_epochs = 0
        if self.collapsed_epochs >= self.patience:
            self._stop(trainer, "PRUNED",
                       f"posterior collapse: 0 active units for {self.collapsed_epochs} "
                       f"epoch(s) after the KL warm-up (step {trainer.global_step}, "
                       f"rate {module.last_metrics['rate']:.3g} nats)")


class OptunaPruning(pl.Callback):
    """Reports one metric per epoch to the trial and stops the run when the pruner says so."""

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial, self.metric = trial, metric
        self.pruned_at: int | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        assert isinstance(module, VAE)
        if self.metric not in module.last_metrics:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(module.last_metrics[self.metric]), step=epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch
            trainer.should_stop = True


class EpochProgress(pl.Callback):
    """Writes ``progress = "E/N epochs"`` to the trial after each epoch, then calls ``then``."""

    def __init__(self, trial: optuna.Trial, then: Callable[[], None] | None = None) -> None:
        self.trial, self.then = trial, then

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.trial.set_user_attr("progress",
                                 f"{trainer.current_epoch + 1}/{trainer.max_epochs} epochs")
        if self.then is not None:
            self.then()
