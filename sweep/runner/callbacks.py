"""Lightning callbacks that connect a training run to its Optuna trial.

- ``CollapseStop``: the collapse-aware early stop that multi-objective studies need (they
  cannot use Optuna's report/should_prune pruners): after the KL warm-up (at once with a
  constant KL weight), a run whose active units stay at 0 for ``patience`` validation
  epochs, or whose loss is NaN/inf, is stopped and the reason kept for the trial's attrs
  ("training diverged (nan) at step N: ...", N the step of the epoch end that found it: the
  loss is read once an epoch).
- ``OptunaPruning``: per-epoch ``trial.report`` + ``should_prune`` for single-objective
  studies (optuna-integration's callback needs the separate ``lightning`` package). The step
  is the number of epochs trained (1 after the first epoch): Hyperband's resource.
- ``ParetoPruning``: sweep.pruning's rule for any number of objectives, fed by the earlier
  finished trials' histories (``sweep.storage.trial_record``: read from the database, never
  from the artifact store, as this runs every epoch).
- ``pruning_callback``: which of the two a study's space asks for. Neither prunes a trial on
  its final epoch: it has trained fully, and pruning would only throw its result away.
- ``EpochProgress``: how far a running trial is, as its ``progress`` user attr, so the live
  progress line and the dashboard show it during trials that take minutes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import optuna
import pytorch_lightning as pl

from models.module import VAE
from sweep.pruning import ParetoRule, decide, epoch_vector, may_prune, reference_vectors
from sweep.space import Space
from sweep.storage import trial_record

# Finished trials whose histories are reference vectors: PRUNED ones too (their epochs up to
# the stop are real measurements; leaving them out would compare a trial with survivors only).
# FAIL trials are left out: a crashed or non-finite run is no standard to meet.
REFERENCE_STATES = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def is_final_epoch(trainer: pl.Trainer) -> bool:
    """Whether the epoch now ending is the run's last: max_epochs or max_steps reached."""
    max_epochs = trainer.max_epochs
    if max_epochs is not None and max_epochs >= 0 and trainer.current_epoch >= max_epochs - 1:
        return True
    return trainer.max_steps >= 0 and trainer.global_step >= trainer.max_steps


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
        # The training loss is logged every few steps only: a short epoch may have none.
        values = {"validation neg_elbo": float(module.last_metrics["neg_elbo"])}
        if "train/loss" in trainer.callback_metrics:
            values["training loss"] = float(trainer.callback_metrics["train/loss"])
        bad = {name: value for name, value in values.items() if not math.isfinite(value)}
        if bad:
            kind = "nan" if any(math.isnan(v) for v in bad.values()) else "inf"
            self._stop(trainer, "FAIL", f"training diverged ({kind}) at step "
                       f"{trainer.global_step}: "
                       + " and ".join(f"{name} is {value}" for name, value in bad.items()))
            return
        if trainer.global_step < module.warmup_end():
            return
        if module.last_metrics["active_units"] == 0:
            self.collapsed_epochs += 1
        else:
            self.collapsed_epochs = 0
        if self.collapsed_epochs >= self.patience:
            # Short: it is a user attr, one line in the dashboard (the rate is an attr too, and
            # the trial's note says whether a warm-up came first).
            last, n = trainer.current_epoch + 1, self.collapsed_epochs
            span = f"epoch {last}" if n == 1 else f"epochs {last - n + 1}-{last}"
            self._stop(trainer, "PRUNED", f"posterior collapse: 0 active units at {span}")


class OptunaPruning(pl.Callback):
    """Reports one metric per epoch to the trial and stops the run when the pruner says so
    (except on the final epoch, which is still reported). ``prune=False`` only reports: the
    trials that must train fully (baseline, references, confirmation runs) still fill the
    rungs other trials are compared with, and the dashboard's intermediate-values plot."""

    def __init__(self, trial: optuna.Trial, metric: str, prune: bool = True) -> None:
        self.trial, self.metric, self.prune = trial, metric, prune
        self.pruned_at: int | None = None
        self.reason: str | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        assert isinstance(module, VAE)
        if self.metric not in module.last_metrics:
            return
        epoch = trainer.current_epoch
        value = float(module.last_metrics[self.metric])
        self.trial.report(value, step=epoch + 1)
        if self.prune and not is_final_epoch(trainer) and self.trial.should_prune():
            self.pruned_at = epoch
            self.reason = f"pruned at epoch {epoch} ({self.metric} = {value:.4g})"
            trainer.should_stop = True


class ParetoPruning(pl.Callback):
    """Stops the run when sweep.pruning's rule prunes it; ``reason`` and ``pruned_at`` then
    say why and at which (0-based) epoch. Reads the study's trials once per epoch, and not
    at all during the warm-up or on the final epoch."""

    def __init__(self, trial: optuna.Trial, objectives: tuple[str, ...],
                 directions: list[str], rule: ParetoRule) -> None:
        self.trial, self.objectives, self.directions, self.rule = (
            trial, objectives, directions, rule)
        self.pruned_at: int | None = None
        self.reason: str | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        assert isinstance(module, VAE)
        epoch = trainer.current_epoch
        # Another callback stopping the run (collapse) makes this its last epoch too.
        final = is_final_epoch(trainer) or trainer.should_stop
        if self.reason is not None or not may_prune(epoch, final, self.rule):
            return
        current = epoch_vector(module.history[-1:], self.objectives, epoch)
        if current is None:  # no validation at this epoch, or a non-finite metric
            return
        trials = self.trial.study.get_trials(deepcopy=False, states=REFERENCE_STATES)
        # A repeat (sweep.runner.repeats) holds its origin's history: counted once.
        references = reference_vectors((trial_record.history(t) for t in trials
                                        if "repeat_of" not in t.user_attrs),
                                       self.objectives, epoch)
        self.reason = decide(current, references, self.directions, self.objectives,
                             epoch, final, self.rule)
        if self.reason is not None:
            self.pruned_at = epoch
            trainer.should_stop = True


def pruning_callback(trial: optuna.Trial, space: Space,
                     prune: bool = True) -> OptunaPruning | ParetoPruning | None:
    """The pruning callback of ``space.pruner``, or None (several objectives, "none", or a
    multi-objective trial that must not be pruned: ``prune=False``)."""
    if space.pruner == "pareto" and prune:
        return ParetoPruning(trial, space.objectives, space.directions(), space.pareto)
    if len(space.objectives) == 1:  # with "none" too: its reports fill the dashboard's plots
        return OptunaPruning(trial, space.objectives[0], prune=prune and space.pruner != "pareto")
    return None


class EpochProgress(pl.Callback):
    """Writes ``progress = "E/N epochs"`` to the trial after each epoch, then calls ``then``."""

    def __init__(self, trial: optuna.Trial, then: Callable[[], None] | None = None) -> None:
        self.trial, self.then = trial, then

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.trial.set_user_attr("progress",
                                 f"{trainer.current_epoch + 1}/{trainer.max_epochs} epochs")
        if self.then is not None:
            self.then()
