"""The Python API of a sweep: ``start``, ``resume`` and ``join`` a study. The commands of the
same names are thin wrappers around these, so a study runs the same from Python::

    import sweep
    study = sweep.start("sweep.toml", study="cifar", n_trials=20, fixed={"max_epochs": 3})
    study = sweep.resume("cifar")

Every argument is checked before torch is imported or anything is written: bad input raises
one of ``sweep.errors.BAD_INPUT`` naming it. A worker process that dies raises
``WorkerFailed``; Ctrl-C re-raises KeyboardInterrupt once the workers have recorded their
trials (``resume`` continues them from their last checkpoints).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.config import Config
from sweep import settings as study_settings
from sweep.errors import UsageError
from sweep.references import enqueue_references
from sweep.settings import Settings
from sweep.space import baseline_params, fix, load_space
from sweep.storage import check_url, checkpoint_dir, open_storage, resolve_storage_url
from sweep.workers import (
    WORKER_ID_ENV,
    check_slot_flags,
    check_threads,
    run_slots,
    threads_per_worker,
    worker_slots,
)

if TYPE_CHECKING:
    import optuna
    import torch


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGINT) stopped study ``study``'s run; its trials are recorded as failed."""

    def __init__(self, study: str) -> None:
        super().__init__(study)
        self.study = study


def default_study_name(dataset: str) -> str:
    name = dataset.split(":", 1)[-1].rstrip("/")
    return "vae-" + (Path(name).name if dataset.startswith("folder:") else name)


def _check_run_flags(gpus: str | None, workers: int | None, trials_per_gpu: int,
                     threads: int | None, timeout: float | None) -> None:
    check_slot_flags(gpus, workers, trials_per_gpu)
    check_threads(threads)
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise UsageError(f"--timeout must be a positive number of seconds, got {timeout}")


def start(config: str | Path | None = None, *, study: str | None = None,
          storage: str | None = None, n_trials: int = 20,
          fixed: Mapping[str, Any] | None = None, baseline: bool = True,
          keep_checkpoints: bool = False, heartbeat: int = 10, gpus: str | None = None,
          workers: int | None = None, trials_per_gpu: int = 1, threads: int | None = None,
          timeout: float | None = None, references: bool = True,
          weights: bool = True) -> optuna.Study:
    """Create study ``study`` (or add ``n_trials`` to the one of that name) and run it.

    ``config`` is a sweep TOML (None: the built-in space); ``fixed`` are Config fields that
    win over the file (the command line's ``--set``, ``--data``, ``--max-epochs``).
    ``references``: enqueue the literature's fixes after the baseline (``sweep.references``);
    ``weights``: keep the final weights of COMPLETE trials as artifacts.
    """
    url = resolve_storage_url(storage)
    check_url(url)
    _check_run_flags(gpus, workers, trials_per_gpu, threads, timeout)
    Config.from_dict(dict(fixed or {}))  # a bad field is named as the user wrote it
    space = fix(load_space(config), dict(fixed or {}))
    settings = Settings(space, goal=n_trials, heartbeat=heartbeat,
                        keep_checkpoints=keep_checkpoints, keep_weights=weights)
    name = study or default_study_name(settings.base.dataset)

    import optuna
    import torch

    from models.data import load_images
    from sweep.logs import quiet_logs
    from sweep.progress import results
    from sweep.worker import open_with_heartbeat

    images = load_images(settings.base)  # a dataset that cannot load fails before any write
    slots = worker_slots(gpus, workers, trials_per_gpu, torch.cuda.device_count())
    quiet_logs()
    created = optuna.create_study(study_name=name, storage=open_with_heartbeat(url, heartbeat),
                                  directions=space.directions(),  # type: ignore[arg-type]
                                  load_if_exists=True)
    old = created.user_attrs.get(study_settings.KEY)
    if old and old["space"]["objectives"] != list(space.objectives):
        raise UsageError(f"study {name!r} has objectives {old['space']['objectives']}; "
                         f"this config asks for {list(space.objectives)}")
    created.set_metric_names(list(space.objectives))
    goal = results(created.get_trials(deepcopy=False)) + n_trials
    study_settings.save(created, Settings(space, goal, heartbeat, keep_checkpoints, weights))
    if baseline and n_trials > 0:
        created.enqueue_trial(baseline_params(space), user_attrs={"baseline": True},
                              skip_if_exists=True)
    if references:  # they count toward n_trials, after the baseline
        for line in enqueue_references(created, space, n_trials - int(baseline)):
            print(line, flush=True)
    print(f"study {name!r} in {url}: {n_trials} trial(s) to run, objectives "
          f"{', '.join(space.objectives)}", flush=True)
    _run(url, name, slots, threads, timeout, images)
    return created


def resume(study: str, *, storage: str | None = None, gpus: str | None = None,
           workers: int | None = None, trials_per_gpu: int = 1, threads: int | None = None,
           timeout: float | None = None) -> optuna.Study:
    """Continue a stopped study with its stored settings; trials that a crash, kill -9 or
    Ctrl-C left unfinished re-run from their last checkpoint."""
    url = resolve_storage_url(storage)
    _check_run_flags(gpus, workers, trials_per_gpu, threads, timeout)
    loaded, settings = _load(url, study)

    import optuna
    import torch

    from sweep.logs import quiet_logs
    from sweep.progress import results
    from sweep.worker import open_with_heartbeat

    slots = worker_slots(gpus, workers, trials_per_gpu, torch.cuda.device_count())
    quiet_logs()
    beating = optuna.load_study(study_name=study,
                                storage=open_with_heartbeat(url, settings.heartbeat))
    retry_unfinished(beating, checkpoint_dir(url, study), grace=3 * settings.heartbeat)
    done = results(beating.get_trials(deepcopy=False))
    print(f"resuming study {study!r}: {done}/{settings.goal} trials done", flush=True)
    _run(url, study, slots, threads, timeout)
    return loaded


def join(study: str, *, storage: str | None = None, gpus: str | None = None,
         workers: int | None = None, trials_per_gpu: int = 1, threads: int | None = None,
         timeout: float | None = None) -> optuna.Study:
    """Run trials of an existing study from this machine until its stored goal is met."""
    url = resolve_storage_url(storage)
    _check_run_flags(gpus, workers, trials_per_gpu, threads, timeout)
    loaded, _ = _load(url, study)

    import torch

    slots = worker_slots(gpus, workers, trials_per_gpu, torch.cuda.device_count())
    _run(url, study, slots, threads, timeout)
    return loaded


def _load(url: str, name: str) -> tuple[optuna.Study, Settings]:
    import optuna

    storage = open_storage(url, heartbeat_interval=None, must_exist=True)
    try:
        loaded = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise UsageError(f"no study {name!r} in {url}") from None
    return loaded, study_settings.load(loaded)


def _run(url: str, name: str, slots: list[str | None], threads: int | None,
         timeout: float | None, images: torch.Tensor | None = None) -> None:
    """This machine's workers: one in this process, or one process per slot with progress."""
    import optuna

    from sweep.progress import Progress
    from sweep.worker import run_worker

    # A worker process started by another's run_slots reports nothing itself: its parent
    # draws the progress line for all of them.
    child = WORKER_ID_ENV in os.environ
    worker_id = int(os.environ.get(WORKER_ID_ENV, "0"))
    reader = optuna.load_study(study_name=name,
                               storage=open_storage(url, heartbeat_interval=None))
    progress = Progress(reader, study_settings.load(reader).goal)
    try:
        run_slots(slots, threads_per_worker(len(slots), threads), name, url, timeout,
                  run_here=lambda: run_worker(url, name, worker_id, timeout, images=images,
                                              show_progress=not child),
                  poll=progress.poll)
    except KeyboardInterrupt:
        raise Interrupted(name) from None


def retry_unfinished(study: optuna.Study, ckpt_root: Path, grace: float) -> None:
    """Fail trials whose worker is gone and enqueue their re-runs.

    RUNNING trials are failed by Optuna once their heartbeat is older than the grace period
    (waited for here, at most ``grace`` seconds, since ``resume`` means the run stopped);
    trials that ended FAIL while training (Ctrl-C) and still have a checkpoint are retried
    the same way, so they too continue from it.
    """
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    from sweep.worker import MAX_RETRY

    deadline = time.monotonic() + grace + 2
    while True:
        optuna.storages.fail_stale_trials(study)
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}
    for t in trials:
        root = (RetryHeartbeatStaleTrialCallback.retry_history(t) or [t.number])[0]
        if (t.state == TrialState.FAIL and t.number not in retried
                and (ckpt_root / f"trial-{root}" / "last.ckpt").exists()):
            RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, t)
