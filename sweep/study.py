"""The Python API of a sweep: ``start``, ``resume`` and ``join`` a study. The commands of the
same names are thin wrappers around these, so a study runs the same from Python::

    import sweep
    study = sweep.start("sweep.toml", study="cifar", n_trials=20, fixed={"max_epochs": 3})
    study = sweep.resume("cifar")

Every argument is checked before torch is imported or anything is written: bad input raises
one of ``sweep.errors.BAD_INPUT`` naming it. A run that ends without meeting the study's goal
because workers died raises ``WorkerFailed`` (each dead worker named with its exit code);
SIGINT (Ctrl-C) or SIGTERM raises ``Interrupted`` once every worker has recorded and
re-queued its trial (``resume`` continues them from their last checkpoints).
"""

from __future__ import annotations

import math
import os
import sys
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
from sweep.storage import check_url, open_storage, resolve_storage_url, shown
from sweep.stores import normalize as normalize_store
from sweep.workers import (
    WORKER_ID_ENV,
    WorkerFailed,
    check_slot_flags,
    check_threads,
    run_slots,
    threads_per_worker,
    worker_slots,
)

if TYPE_CHECKING:
    import optuna
    import torch

    from sweep.stores import CheckpointStore


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM stopped study ``study``'s run on this machine; its running
    trials are recorded as failed and re-queued to continue from their checkpoints."""

    def __init__(self, study: str, signal: str = "SIGINT") -> None:
        super().__init__(study)
        self.study = study
        self.signal = signal


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
          timeout: float | None = None, artifacts: str | None = None,
          run: bool = True, if_new: bool = False, references: bool = True,
          weights: bool = True) -> optuna.Study:
    """Create study ``study`` (or add ``n_trials`` to the one of that name) and run it.

    ``config`` is a sweep TOML (None: the built-in space); ``fixed`` are Config fields that
    win over the file (the command line's ``--set``, ``--data``, ``--max-epochs``).
    ``artifacts``: the study's image and checkpoint store (``sweep.stores``), kept in its
    settings; None keeps the one it has (or the default beside the SQLite file).
    ``run=False`` only creates the study (and adds the trials): ``worker`` processes run it.
    ``if_new=True`` leaves an existing study of that name as it is (adds no trials).
    ``references``: enqueue the literature's fixes after the baseline (``sweep.references``);
    ``weights``: keep the final weights of COMPLETE trials as artifacts.

    Budgets add up: each ``start`` adds ``n_trials`` to the study's stored goal under the
    study lock, so two concurrent ``start --n-trials 3`` run 6 trials.
    """
    url = resolve_storage_url(storage)
    check_url(url)
    _check_run_flags(gpus, workers, trials_per_gpu, threads, timeout)
    Config.from_dict(dict(fixed or {}))  # a bad field is named as the user wrote it
    space = fix(load_space(config), dict(fixed or {}))
    store = normalize_store(artifacts) if artifacts else None
    settings = Settings(space, goal=n_trials, heartbeat=heartbeat,
                        keep_checkpoints=keep_checkpoints, keep_weights=weights, artifacts=store)
    name = study or default_study_name(settings.base.dataset)

    import optuna
    import torch

    from models.data import load_images
    from sweep.logs import quiet_logs
    from sweep.progress import results
    from sweep.worker import open_with_heartbeat

    images = load_images(settings.base) if run else None  # bad data fails before any write
    slots = worker_slots(gpus, workers, trials_per_gpu, torch.cuda.device_count())
    quiet_logs()
    beating = open_with_heartbeat(url, heartbeat)
    with beating.study_lock(name):
        created = optuna.create_study(study_name=name, storage=beating,
                                      directions=space.directions(),  # type: ignore[arg-type]
                                      load_if_exists=True)
        old = created.user_attrs.get(study_settings.KEY)
        if old and if_new:
            print(f"study {name!r} in {shown(url)} exists: left as it is (--if-new)",
                  flush=True)
            n_trials = 0
        elif old and old["space"]["objectives"] != list(space.objectives):
            raise UsageError(f"study {name!r} has objectives {old['space']['objectives']}; "
                             f"this config asks for {list(space.objectives)}")
        created.set_metric_names(list(space.objectives))
        done = results(created.get_trials(deepcopy=False))
        before = old["goal"] if old else 0
        goal = max(before, done) + n_trials
        if old and if_new:
            store = old.get("artifacts")
        else:
            store = store or (old or {}).get("artifacts")
            study_settings.save(created, Settings(space, goal, heartbeat, keep_checkpoints,
                                                  weights, store))
        if baseline and n_trials > 0:
            created.enqueue_trial(baseline_params(space), user_attrs={"baseline": True},
                                  skip_if_exists=True)
        if references and n_trials > 0:  # they count toward n_trials, after the baseline
            for line in enqueue_references(created, space, n_trials - int(baseline)):
                print(line, flush=True)
    if old and if_new:
        pass
    elif before > done:
        print(f"study {name!r} in {shown(url)} had {before - done} trial(s) still to run (running "
              f"elsewhere, or left by a stopped run): joined it with {n_trials} more, "
              f"{goal - done} to run", flush=True)
    else:
        print(f"study {name!r} in {shown(url)}: {n_trials} trial(s) to run, objectives "
              f"{', '.join(space.objectives)}", flush=True)
    print(f"images and checkpoints: {_where(store, url, name)}", flush=True)
    if store is None and not url.startswith("sqlite"):
        print("note: they stay on this machine; pass --artifacts (a shared folder or "
              "s3://BUCKET) when workers run on several machines", flush=True)
    if run:
        _run(url, name, slots, threads, timeout, images)
    else:
        print(f"run it from any machine: python -m sweep worker --study {name} "
              f"--storage {shown(url)}", flush=True)
    return created


def _where(store: str | None, url: str, name: str) -> str:
    from sweep.stores import open_stores

    return open_stores(store, url, name).where if store is None else store


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
    from sweep.stores import open_stores
    from sweep.worker import open_with_heartbeat

    slots = worker_slots(gpus, workers, trials_per_gpu, torch.cuda.device_count())
    quiet_logs()
    beating = optuna.load_study(study_name=study,
                                storage=open_with_heartbeat(url, settings.heartbeat))
    stores = open_stores(settings.artifacts, url, study)
    retry_unfinished(beating, stores.checkpoints, grace=3 * settings.heartbeat)
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
        raise UsageError(f"no study {name!r} in {shown(url)}") from None
    return loaded, study_settings.load(loaded)


def _run(url: str, name: str, slots: list[str | None], threads: int | None,
         timeout: float | None, images: torch.Tensor | None = None) -> None:
    """This machine's workers: one in this process, or one process per slot with progress.

    Raises Interrupted on SIGINT/SIGTERM (once the workers have recorded their trials) and
    WorkerFailed when the study's goal was not met because workers died.
    """
    import optuna

    from sweep.interrupts import RECEIVED
    from sweep.progress import Progress, results
    from sweep.worker import run_worker

    # A worker process started by another's run_slots reports nothing itself: its parent
    # draws the progress line for all of them.
    child = WORKER_ID_ENV in os.environ
    worker_id = int(os.environ.get(WORKER_ID_ENV, "0"))
    reader = optuna.load_study(study_name=name,
                               storage=open_storage(url, heartbeat_interval=None))
    progress = Progress(reader, study_settings.load(reader).goal)
    started = time.monotonic()
    try:
        dead = run_slots(slots, threads_per_worker(len(slots), threads), name, url, timeout,
                         run_here=lambda: run_worker(url, name, worker_id, timeout,
                                                     images=images, show_progress=not child),
                         poll=progress.poll)
    except KeyboardInterrupt as err:
        how = RECEIVED[0] if RECEIVED else (str(err.args[0]) if err.args else "SIGINT")
        raise Interrupted(name, how if how.startswith("SIG") else "SIGINT") from None
    if child:
        return
    goal = study_settings.load(reader).goal
    done = results(reader.get_trials(deepcopy=False))
    timed_out = timeout is not None and time.monotonic() - started >= timeout
    for line in dead:
        print(f"{line}", file=sys.stderr, flush=True)
    if done >= goal:
        if dead:
            print(f"study {name!r} met its goal ({done}/{goal}) despite the above",
                  file=sys.stderr, flush=True)
        return
    if timed_out and not dead:
        print(f"--timeout reached: {done}/{goal} trials done; `python -m sweep resume "
              f"--study {name}` continues", flush=True)
        return
    raise WorkerFailed(f"study {name!r} stopped at {done}/{goal} trials"
                       f"{' (' + '; '.join(dead) + ')' if dead else ''}; "
                       f"`python -m sweep resume --study {name}` continues it")


def retry_unfinished(study: optuna.Study, ckpt: CheckpointStore, grace: float) -> None:
    """Fail trials whose worker is gone and enqueue their re-runs.

    RUNNING trials are failed by Optuna once their heartbeat is older than the grace period
    (waited for here, at most ``grace`` seconds, since ``resume`` means the run stopped);
    trials that ended FAIL while training and still have a checkpoint, and were not
    re-queued already (a worker stopped by a signal re-queues its own), are retried too.
    """
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    from sweep.worker import Requeue

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
                and ckpt.fetch(root) is not None):
            Requeue("it stopped while training")(study, t)
