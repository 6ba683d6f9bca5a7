"""Running a study on this machine: ``optimize`` (what ``Sweep.optimize`` calls) adds trials
to its budget and runs this machine's workers (``RunOptions``: GPUs, workers, threads,
timeout) until the budget is spent; ``retry_unfinished`` re-queues what a stopped run left
(``resume``, ``sweep.runner.entry``)::

    import sweep
    s = sweep.create_study("sweep.toml", study_name="cifar", fixed={"max_epochs": 3})
    s.optimize(n_trials=20, gpus=[0, 1])

Every argument is checked before torch is imported or anything is written: bad input raises
one of ``sweep.errors.BAD_INPUT``, a ``ParamError`` naming the parameter. A run that ends
without meeting the study's goal because workers died raises ``WorkerFailed`` (each dead
worker named with its exit code), one whose budget is spent with no COMPLETE trial raises
``NoResult`` (how many failed, and why); SIGINT (Ctrl-C) or SIGTERM raises ``Interrupted`` once
every worker has recorded and re-queued its trial (``resume`` continues them from their last
checkpoints).

What happens is told through the ``sweep`` logger (``logging``; the command line prints
it). A run leaves the calling process as it found it: its signal handlers, environment,
torch thread count, warning filters and log levels are restored when it ends.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from typing import TYPE_CHECKING

from models.networks import in_process
from sweep.errors import DatabaseFull, NoResult, ParamError, UsageError
from sweep.runner import budget, network
from sweep.runner.processes import (
    FULL_WORDS,
    WORKER_ID_ENV,
    WorkerFailed,
    check_slot_flags,
    check_threads,
    lost_workers,
    run_slots,
    threads_per_worker,
    worker_slots,
)
from sweep.storage import settings as study_settings
from sweep.storage.database import open_storage, shown
from sweep.storage.settings import Settings

if TYPE_CHECKING:
    import optuna
    import torch

    from sweep.storage.stores import CheckpointStore

log = logging.getLogger(__name__)


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM stopped study ``study``'s run on this machine; its running
    trials are recorded as failed and re-queued to continue from their checkpoints."""

    def __init__(self, study: str, signal: str = "SIGINT") -> None:
        super().__init__(study)
        self.study = study
        self.signal = signal


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How this machine runs a study's trials; checked when made (``ParamError``).

    ``gpus``: the GPU ids to use, ``trials_per_gpu`` workers each (default: every visible
    GPU); ``workers``: worker processes on a machine without GPUs (excludes ``gpus``);
    ``threads``: CPU threads per worker (default: $VAE_SWEEP_THREADS, else the cores divided
    among the workers); ``timeout``: seconds after which no trial starts; ``model``: where
    this machine imports the study's network from (``--model``: a study that trains a
    network of the user's runs only where it is named, see ``sweep.runner.network``).
    """

    gpus: list[int] | None = None
    workers: int | None = None
    trials_per_gpu: int = 1
    threads: int | None = None
    timeout: float | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        check_slot_flags(self.gpus, self.workers, self.trials_per_gpu)
        check_threads(self.threads)
        timeout = self.timeout
        if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
            raise ParamError("timeout", f"must be a positive number of seconds, got {timeout}")

    def slots(self) -> list[str | None]:
        import torch

        return worker_slots(self.gpus, self.workers, self.trials_per_gpu,
                            torch.cuda.device_count())


def slots(options: RunOptions, model: str | None) -> list[str | None]:
    """This machine's worker slots for ``options`` (a GPU that is not there fails here, before
    the data loads); ParamError when ``model``, a network defined in this process, would
    have to run in other processes."""
    found = options.slots()
    if model is not None and in_process(model) and found != [None]:
        raise ParamError("model", f"{model} is defined in this process only: workers in "
                                  "other processes cannot import it; name it as "
                                  "module:function or file.py:function")
    return found


def optimize(study: optuna.Study, url: str, n_trials: int | None, options: RunOptions,
             images: torch.Tensor | None = None) -> None:
    """``Sweep.optimize`` of ``study`` in storage ``url``: add ``n_trials`` to its goal
    (None: none), then run this machine's workers until the goal is met (or
    ``options.timeout``); ``images``: the data, when the caller has it loaded already."""
    if n_trials is not None:
        budget.check(n_trials)
    settings = study_settings.load(study)
    name = study.study_name
    network.require(settings, name, options.model)
    found = slots(options, settings.base.model)

    from sweep.logs import quiet_logs

    with quiet_logs():
        if n_trials is not None:
            budget.add(url, name, n_trials)
        _run(url, name, found, options, images)


def resume_run(url: str, name: str, options: RunOptions) -> None:
    """``resume``'s run (``sweep.runner.entry``): fail the trials whose worker is gone and
    re-queue them from their last checkpoints (``retry_unfinished``), then run this
    machine's workers until the study's stored goal is met."""
    _, settings = load_settings(url, name)
    network.require(settings, name, options.model)

    import optuna

    from sweep.logs import quiet_logs
    from sweep.runner.heartbeat import open_with_heartbeat
    from sweep.runner.progress import results
    from sweep.storage.stores import open_stores

    found = options.slots()
    with quiet_logs():
        beating = optuna.load_study(study_name=name,
                                    storage=open_with_heartbeat(url, settings.heartbeat))
        stores = open_stores(settings.artifacts, url, name)
        retry_unfinished(beating, stores.checkpoints, grace=3 * settings.heartbeat)
        done = results(beating.get_trials(deepcopy=False))
        log.info("resuming study %r: %d/%d trials done", name, done, settings.goal)
        _run(url, name, found, options)


def load_settings(url: str, name: str) -> tuple[optuna.Study, Settings]:
    """Study ``name`` at ``url`` and its settings; UsageError when there is no such study."""
    import optuna

    storage = open_storage(url, heartbeat_interval=None, must_exist=True)
    try:
        loaded = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise UsageError(f"no study {name!r} in {shown(url)}") from None
    return loaded, study_settings.load(loaded)


def _run(url: str, name: str, slots: list[str | None], options: RunOptions,
         images: torch.Tensor | None = None) -> None:
    """This machine's workers: one in this process, or one process per slot with progress.

    Raises Interrupted on SIGINT/SIGTERM (once the workers have recorded their trials) and
    WorkerFailed when the study's goal was not met because workers died.
    """
    import optuna

    from sweep.runner.loop import run_worker
    from sweep.runner.progress import Progress, no_result, results

    # A worker process started by another's run_slots reports nothing itself: its parent
    # draws the progress line for all of them.
    child = WORKER_ID_ENV in os.environ
    worker_id = int(os.environ.get(WORKER_ID_ENV, "0"))
    reader = optuna.load_study(study_name=name,
                               storage=open_storage(url, heartbeat_interval=None))
    progress = Progress(reader, study_settings.load(reader).goal)
    timeout = options.timeout
    started = time.monotonic()
    try:
        dead = run_slots(slots, threads_per_worker(len(slots), options.threads), name, url,
                         timeout,
                         run_here=lambda: run_worker(url, name, worker_id, timeout,
                                                     images=images, show_progress=not child),
                         poll=progress.poll,
                         budget_left=lambda: results(reader.get_trials(deepcopy=False))
                         < study_settings.load(reader).goal, model=options.model)
    except KeyboardInterrupt as err:  # the worker, or run_slots, names the signal it got
        how = str(err.args[0]) if err.args else "SIGINT"
        raise Interrupted(name, how if how.startswith("SIG") else "SIGINT") from None
    if child:
        return
    if any(line.endswith(FULL_WORDS) for line in dead):
        # The command line adds how to resume (RunError.study).
        raise DatabaseFull(f"the database {shown(url)} is full: its workers stopped; free "
                           "space or move it (with its -wal file) to a bigger disk",
                           study=name)
    goal = study_settings.load(reader).goal
    done = results(reader.get_trials(deepcopy=False))
    timed_out = timeout is not None and time.monotonic() - started >= timeout
    for line in dead:
        log.warning("%s", line)
    if done >= goal:
        if dead:
            log.warning("study %r met its goal (%d/%d) despite the above%s", name, done, goal,
                        f": {lost_workers(dead)}" if lost_workers(dead) else "")
        from sweep.answer.summary import save_notes

        save_notes(reader)  # the answer where the dashboard shows it
        fruitless = no_result(reader.get_trials(deepcopy=False))
        if fruitless:  # "met its goal" with nothing to show: not a success (exit 1)
            raise NoResult(f"study {name!r} spent its budget ({done}/{goal}) with {fruitless}")
        return
    if timed_out and not dead:
        log.info("timeout reached: %d/%d trials done; resuming study %r continues it",
                 done, goal, name)
        return
    raise WorkerFailed(f"study {name!r} stopped at {done}/{goal} trials"
                       f"{' (' + '; '.join(dead) + ')' if dead else ''}", study=name)


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

    from sweep.runner.requeue import Requeue

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
