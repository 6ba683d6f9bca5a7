"""The Optuna objective: suggest a config, fit it, record it, return the chosen metrics.

A trial re-run after a crash (Optuna's RetryHeartbeatStaleTrialCallback enqueues it with the same
params and a ``retry_history``) resumes from the last checkpoint of the first trial in
that history, so epochs trained before the crash are not trained again.
"""

from __future__ import annotations

import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages import RetryHeartbeatStaleTrialCallback
from pytorch_lightning.callbacks import ModelCheckpoint

from models.config import Config
from models.train import FitResult, fit
from sweep.artifacts import upload_trial_artifacts
from sweep.callbacks import CollapseStop, EpochProgress, pruning_callback
from sweep.provenance import provenance
from sweep.space import Space, suggest


@dataclass
class Objective:
    space: Space
    images: torch.Tensor
    store: FileSystemArtifactStore
    checkpoint_root: Path
    keep_checkpoints: bool = False
    keep_weights: bool = True  # upload final weights (settings.keep_weights; start --no-weights)
    on_epoch: Callable[[], None] | None = None  # e.g. redraw the live progress line

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...] | float:
        cfg = suggest(trial, self.space)
        ckpt_dir = self.checkpoint_root / f"trial-{root_trial_number(trial)}"
        last = ckpt_dir / "last.ckpt"
        # A worker killed while writing leaves a truncated file: torch.save writes a zip.
        resume_from = str(last) if last.exists() and zipfile.is_zipfile(last) else None
        stop = CollapseStop()
        # Top-1 with no monitor keeps the newest epoch's checkpoint under one name, rewritten
        # every epoch (save_last alone only writes when some top-k checkpoint was written).
        latest = ModelCheckpoint(dirpath=ckpt_dir, filename="last", save_top_k=1,
                                 enable_version_counter=False)
        callbacks: list[Any] = [stop, latest, EpochProgress(trial, self.on_epoch)]
        pruning = pruning_callback(trial, self.space)
        if pruning is not None:
            callbacks.append(pruning)
        started = time.perf_counter()
        result = fit(cfg, images=self.images, callbacks=callbacks, ckpt_path=resume_from,
                     root_dir=str(ckpt_dir))
        record(trial, cfg, result, time.perf_counter() - started, resume_from)
        # Weights of COMPLETE trials, and of the baseline and references whatever their fate
        # (the report scores them on held-out data), unless `start --no-weights`.
        complete = stop.state is None and (pruning is None or pruning.reason is None)
        labelled = "baseline" in trial.user_attrs or "reference" in trial.user_attrs
        keep = self.keep_weights and (complete or labelled)
        upload_trial_artifacts(trial, self.store, result.module, result.datamodule.val_images,
                               result.metrics, result.history, weights=keep)
        if not self.keep_checkpoints:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        if stop.state == "FAIL":
            trial.set_user_attr("fail_reason", stop.reason)
            return tuple(float("nan") for _ in self.space.objectives)
        if stop.state == "PRUNED":
            trial.set_user_attr("pruned_reason", stop.reason)
            raise optuna.TrialPruned(stop.reason)
        if pruning is not None and pruning.reason is not None:
            trial.set_user_attr("pruned_reason", pruning.reason)
            trial.set_user_attr("pruned_epoch", pruning.pruned_at)
            raise optuna.TrialPruned(pruning.reason)
        values = tuple(float(result.metrics[name]) for name in self.space.objectives)
        return values[0] if len(values) == 1 else values


def root_trial_number(trial: optuna.Trial) -> int:
    """The first trial of this trial's retry chain (itself when it is not a retry)."""
    frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
    history = RetryHeartbeatStaleTrialCallback.retry_history(frozen)
    return history[0] if history else trial.number


def record(trial: optuna.Trial, cfg: Config, result: FitResult, seconds: float,
           resumed_from: str | None) -> None:
    """Everything needed to compare and reproduce the trial, as user attrs."""
    attrs: dict[str, Any] = {
        **result.metrics,
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "history": result.history,
        "wall_time_s": round(seconds, 3),
        "resumed_from": resumed_from,
        **provenance(),
    }
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
