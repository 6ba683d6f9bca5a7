"""The Optuna objective: suggest a config, fit it, record it, return the chosen metrics.

A trial re-run after a crash (Optuna's RetryHeartbeatStaleTrialCallback enqueues it with the same
params and a ``retry_history``) resumes from the last checkpoint of the first trial in
that history, so epochs trained before the crash are not trained again. The checkpoint
lives in the study's checkpoint store (``sweep.storage.stores``), so the re-run may be on another
machine; it carries the random states (``RandomState``), so the resumed trial reproduces
the uninterrupted one on CPU. A checkpoint that cannot be read, or that ``torch.load(...,
weights_only=True)`` refuses, is noted (``checkpoint_refused``) and the trial restarts from
scratch. A checkpoint or image that cannot be written (disk full, store unreachable) is
noted (``checkpoint_missing``, ``artifacts_missing``) and the trial's metrics still count.

A configuration proposed again is not trained again: the trial takes the earlier COMPLETE
trial's values, marked ``repeat_of`` (``sweep.runner.repeats``; never for the baseline, the
references or the confirmation runs).

Collapse is a constraint, not an objective (``collapse_constraint``): a trial that ends with
no active unit, whether the collapse stop cut it short or it trained to the end, is COMPLETE
with its values and infeasible. It stays in the dashboard's plots with its value and its
``collapse_reason``, and no best trial, sampler model or recommendation counts it.
"""

from __future__ import annotations

import logging
import random
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytorch_lightning as pl
import torch
from optuna.storages import RetryHeartbeatStaleTrialCallback
from pytorch_lightning.callbacks import ModelCheckpoint

from models import networks
from models.config import Config
from models.train import FitResult, fit
from sweep import optuna_private
from sweep.answer.summary import note_collapse
from sweep.answer.trial_artifacts import upload_trial_artifacts
from sweep.provenance import provenance, torch_threads
from sweep.runner import repeats
from sweep.runner.callbacks import CollapseStop, EpochProgress, is_final_epoch, pruning_callback
from sweep.runner.stages import must_train_fully, trial_space
from sweep.space import Space, suggest
from sweep.storage import trial_record
from sweep.storage.stores import CheckpointStore, FolderCheckpoints, checkpoint_key

log = logging.getLogger(__name__)


class RandomState(pl.Callback):
    """Saves the torch, CUDA, NumPy and Python random states in each checkpoint and restores
    them on resume, so the data order and the posterior samples of the epochs after the
    checkpoint are those of the uninterrupted run. Kept as tensors and lists only, so the
    checkpoint loads with ``weights_only=True``."""

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        return {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": [str(kind), torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                          int(pos), int(has_gauss), float(gauss)],
                "python": _lists(random.getstate())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(_tuples(state["python"]))


def _lists(value: Any) -> Any:
    return [_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (tuple, list)) else value


class LastCheckpoint(ModelCheckpoint):
    """The newest epoch's checkpoint under one name, handed to the store after each write;
    a write that fails (disk full, store unreachable) is noted and training goes on.

    Without ``final`` the final epoch writes none: nothing resumes from it (see
    ``usable_checkpoint``), so unless the study keeps checkpoints it would be written only
    to be removed; a worker that dies before recording the result leaves the epoch before's,
    from which the re-run trains the last epoch alone."""

    def __init__(self, dirpath: Path, on_saved: Callable[[], None], final: bool = True) -> None:
        # Top-1 with no monitor keeps the newest epoch's checkpoint, rewritten every epoch
        # (save_last alone only writes when some top-k checkpoint was written).
        super().__init__(dirpath=dirpath, filename="last", save_top_k=1,
                         enable_version_counter=False)
        self.on_saved = on_saved
        self.final = final
        self.missing: str | None = None

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        if not self.final and is_final_epoch(trainer):
            return
        try:
            super()._save_checkpoint(trainer, filepath)
            self.on_saved()
        except Exception as err:  # the trial goes on; only a resume elsewhere is lost
            self.missing = trial_record.error_reason(err)


def usable_checkpoint(path: Path | None, cfg: Config) -> tuple[str | None, str | None]:
    """(``path`` if it can be resumed from, why it cannot). Lightning reads the file again
    (``models.train.fit``), also with ``weights_only=True``: a file swapped in between (on a
    shared store, by anyone who can write there) is refused as well, and runs nothing.

    A checkpoint of the run's final epoch (its worker died between the last save and
    recording the result) is not resumed: there is nothing left to train, so no validation
    would run to give the metrics; the trial is trained again, to the same result."""
    if path is None or not path.exists():
        return None, None
    if not zipfile.is_zipfile(path):  # torch.save writes a zip; a killed writer leaves less
        with path.open("rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80" and len(head) == 2 and 2 <= head[1] <= 5:  # a pickle's opcode
            return None, ("a legacy (pickle, not zip) torch checkpoint: it cannot be loaded "
                          "safely (weights_only), so the trial starts over")
        return None, "not a whole checkpoint (a write was cut short)"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        return None, trial_record.error_reason(err)
    epochs_done = int(state.get("epoch", -1)) + 1
    if epochs_done >= cfg.max_epochs or 0 < cfg.max_steps <= int(state.get("global_step", 0)):
        return None, f"the checkpoint is of the final epoch ({epochs_done}): trained again"
    return str(path), None


@dataclass
class Objective:
    space: Space
    images: torch.Tensor
    store: Any  # an Optuna artifact store (FileSystemArtifactStore, Boto3ArtifactStore...)
    checkpoints: CheckpointStore | Path  # a Path: a folder of trial-N checkpoint folders
    keep_checkpoints: bool = False
    keep_weights: bool = True  # upload final weights (settings.keep_weights; start --no-weights)
    on_epoch: Callable[[], None] | None = None  # e.g. redraw the live progress line

    def __post_init__(self) -> None:
        if isinstance(self.checkpoints, Path):
            self.checkpoints = FolderCheckpoints(self.checkpoints)

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...] | float:
        assert not isinstance(self.checkpoints, Path)
        stage, space = trial_space(trial, self.space)
        cfg = suggest(trial, space)
        earlier = repeats.earlier_run(trial, cfg, stage)
        if earlier is not None:  # proposed again: the finished trial's values, not a rerun
            return repeats.take(trial, earlier)
        root = root_trial_number(trial)
        ckpt_dir = self.checkpoints.local_dir(root)
        resume_from, refused = usable_checkpoint(self.checkpoints.fetch(root), cfg)
        if refused:
            trial.set_user_attr("checkpoint_refused", refused)
            self.checkpoints.remove(root)  # start from scratch, and write a good one
        stop = CollapseStop()
        latest = LastCheckpoint(ckpt_dir, lambda: self.checkpoints.saved(root),  # type: ignore
                                final=self.keep_checkpoints)
        callbacks: list[Any] = [stop, RandomState(), latest, EpochProgress(trial, self.on_epoch)]
        pruning = pruning_callback(trial, space, prune=not must_train_fully(stage))
        if pruning is not None:
            callbacks.append(pruning)
        started = time.perf_counter()
        # Epochs before the last compute the mutual information only when the pruner
        # reads it (an objective); the answer reads the final epoch's.
        result = fit(cfg, images=self.images, callbacks=callbacks, ckpt_path=resume_from,
                     root_dir=str(ckpt_dir),
                     mutual_info_every_epoch="mutual_info" in self.space.objectives)
        document = record(trial, cfg, result, time.perf_counter() - started,
                          None if resume_from is None else checkpoint_key(root))
        if latest.missing:
            trial.set_user_attr("checkpoint_missing", latest.missing)
        # Weights of COMPLETE trials, and of the baseline and references whatever their fate
        # (the report scores them on held-out data), unless `start --no-weights`.
        complete = stop.state is None and (pruning is None or pruning.reason is None)
        labelled = "baseline" in trial.user_attrs or "reference" in trial.user_attrs
        try:
            upload_trial_artifacts(trial, self.store, result.module,
                                   result.datamodule.val_images, result.metrics, result.history,
                                   weights=self.keep_weights and (complete or labelled),
                                   document=document)
        except Exception as err:  # the store is full or unreachable: the metrics still count
            why = trial_record.error_reason(err)
            trial.set_user_attr("artifacts_missing", why)
            log.warning("trial %d: images not stored (%s)", trial.number, why)
        if not self.keep_checkpoints:
            self.checkpoints.remove(root)
        if stop.state == "FAIL":
            trial.set_user_attr("fail_reason", stop.reason)
            return tuple(float("nan") for _ in self.space.objectives)
        collapse_constraint(trial, result.metrics)
        collapse = None
        if stop.state == "PRUNED":  # collapsed: kept COMPLETE (infeasible) with its values
            collapse = stop.reason
        elif pruning is not None and pruning.reason is not None:
            trial.set_user_attr("pruned_reason", pruning.reason)
            trial.set_user_attr("pruned_epoch", pruning.pruned_at)
            raise optuna.TrialPruned(pruning.reason)
        elif not result.metrics["active_units"]:  # trained to its end collapsed (no stop
            # before the warm-up ended or at the final epoch): infeasible all the same, and said
            collapse = f"posterior collapse: 0 active units at epoch {result.metrics['epochs']}"
        if collapse:  # said where a dashboard user looks first: the trial's note
            trial.set_user_attr("collapse_reason", collapse)
            note_collapse(trial, collapse, result.metrics, result.module.warmup_end())
        values = tuple(float(result.metrics[name]) for name in self.space.objectives)
        return values[0] if len(values) == 1 else values


def collapse_constraint(trial: optuna.Trial, metrics: dict[str, Any]) -> None:
    """Optuna's constraint on the trial (feasible when <= 0): 1 - active units, so a trial is
    feasible exactly when it kept an active unit. Written before ``tell`` under the system
    attr that ``TPESampler(constraints_func=...)`` fills (a list under "constraints"), where
    TPE (which ranks infeasible trials after every feasible one), ``study.best_trial`` and
    ``best_trials`` (which skip them) and optuna-dashboard (which greys them out and reads
    only that key) all find it; the deprecated ``constraints_func`` is not needed."""
    value = 1.0 - float(metrics["active_units"])
    trial.storage.set_trial_system_attr(optuna_private.trial_id(trial),
                                        optuna_private.CONSTRAINTS_KEY, [value])


def root_trial_number(trial: optuna.Trial) -> int:
    """The first trial of this trial's retry chain (itself when it is not a retry)."""
    frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
    history = RetryHeartbeatStaleTrialCallback.retry_history(frozen)
    return history[0] if history else trial.number


def record(trial: optuna.Trial, cfg: Config, result: FitResult, seconds: float,
           resumed_from: str | None) -> dict[str, Any]:
    """Everything needed to compare and reproduce the trial: the long values (config,
    history, kl_per_dim, provenance) as system attrs (``sweep.storage.trial_record``), the
    short ones as user attrs, led by a one-line summary. Returns the whole record, the
    contents of the trial's ``trial.json``."""
    trial_record.write(trial, cfg.to_dict(), result.history, result.metrics.get("kl_per_dim"),
                       provenance())
    run = {"seed": cfg.seed, "wall_time_s": round(seconds, 3), "threads": torch_threads()}
    # The network as the study names it, and the hash of the source this worker built it
    # from (its --model may name another path to the same file): whole in the record, cut
    # to a dashboard line in the attrs.
    network = {"model": cfg.model, "model_sha256": networks.source_sha256(cfg.model)}
    # A resumed path is cut from its front: its last parts say which trial it came from.
    shown = None if resumed_from is None else trial_record.clip(resumed_from, tail=True)
    sha = network["model_sha256"]
    attrs = {trial_record.SUMMARY: trial_record.summary(trial.user_attrs, result.metrics),
             **trial_record.short_metrics(result.metrics), **run, "resumed_from": shown,
             "model": trial_record.clip(cfg.model, tail=True),
             "model_sha256": sha[:16] if sha else None, "git_sha": provenance()["git_sha"]}
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    return {"study": trial.study.study_name, "trial": trial.number, **run, **network,
            "resumed_from": resumed_from, "config": cfg.to_dict(), "metrics": result.metrics,
            "history": result.history, "provenance": provenance()}
