"""One worker: runs trials of a stored study in this process until its goal is met.

Everything it needs comes from the study's settings (``sweep.settings``), so a worker on any
machine that reaches the storage runs the same trials as the one that started the study.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback

from sweep import settings as study_settings
from sweep.logs import quiet_logs
from sweep.progress import Progress
from sweep.storage import artifact_dir, checkpoint_dir, open_storage

if TYPE_CHECKING:
    import torch

MAX_RETRY = 3  # re-runs of a trial whose worker died, before it stays FAIL


def open_with_heartbeat(url: str, heartbeat: int) -> optuna.storages.BaseStorage:
    """The storage as workers use it: heartbeats on, stale trials failed and re-queued."""
    retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    return open_storage(url, heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
                        stale_trial_callback=retry)


def sampler_seed(seed: int, worker_id: int, storage: optuna.storages.BaseStorage,
                 name: str) -> int:
    """A sampler seed that differs per worker and per run of the same study.

    TPE's first trials are random draws from this seed: with the same seed, two workers,
    or a second ``start`` joining the study, would propose the very trials already run.
    The study's trial count when the worker starts tells runs apart, reproducibly.
    """
    study_id = storage.get_study_id_from_name(name)
    n_trials = len(storage.get_all_trials(study_id, deepcopy=False))
    return int(np.random.SeedSequence([seed, worker_id, n_trials]).generate_state(1)[0])


def run_worker(url: str, name: str, worker_id: int, timeout: float | None,
               images: torch.Tensor | None = None, show_progress: bool = True) -> None:
    """Run trials of study ``name`` until its goal is met (or ``timeout`` seconds pass).

    ``images``: the study's data when the caller has loaded it already (else loaded here).
    """
    from optuna.artifacts import FileSystemArtifactStore

    from models.data import load_images
    from sweep.objective import Objective

    quiet_logs()
    reader = open_storage(url, heartbeat_interval=None, must_exist=True)
    settings = study_settings.load(optuna.load_study(study_name=name, storage=reader))
    storage = open_with_heartbeat(url, settings.heartbeat)
    base = settings.base
    sampler = optuna.samplers.TPESampler(seed=sampler_seed(base.seed, worker_id, storage, name),
                                         constant_liar=True)
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler,
                              pruner=settings.space.make_pruner())
    artifacts = artifact_dir(url)
    artifacts.mkdir(parents=True, exist_ok=True)  # the store writes into it without creating it
    progress = Progress(study, settings.goal, echo=show_progress)
    objective = Objective(settings.space, load_images(base) if images is None else images,
                          FileSystemArtifactStore(str(artifacts)),
                          checkpoint_dir(url, name), settings.keep_checkpoints,
                          settings.keep_weights,
                          on_epoch=progress.poll if show_progress else None)
    if progress.covered():
        return
    study.optimize(objective, timeout=timeout, callbacks=[progress], catch=(RuntimeError,))
