"""One worker: runs trials of a stored study in this process until its budget is spent.

Everything it needs comes from the study's settings (``sweep.storage.settings``), so a worker on any
machine that reaches the storage runs the same trials, and writes to the same stores, as
the one that started the study.

The loop is Optuna's ask/tell, with what ``study.optimize`` lacks for many machines:

- **The budget is claimed atomically.** Under the study lock (``SweepStorage.study_lock``)
  a worker fails stale trials, then takes a queued trial, or a new one while finished +
  running + queued trials are fewer than the stored goal (re-read each time, so a second
  ``start`` that raises it is seen). So N workers finish exactly the goal, never overshoot
  it, and no trial is handed to two of them.
- **Heartbeats that outlive an outage** (``sweep.runner.heartbeat``): beats go through the storage's
  retries; the thread also fails other workers' stale trials and re-queues them within the
  grace period, even while every live worker is busy training. A worker whose trial was
  failed under it stops that run at the next epoch end, quietly, and takes the next one.
- **Faults are recorded, not fatal.** A trial that raises (out of memory, NaN inside a loss,
  a full disk) is FAIL with ``fail_reason`` (``sweep.runner.failures``) and the worker goes
  on (it stops after MAX_ERRORS unexpected errors in a row: a bug is not a trial's fault;
  and after MAX_OOMS trials in a row out of memory: one large config is a trial's fault,
  every config the machine's, and the worker says to shrink the batch or the width).
  SIGTERM and SIGINT stop a training trial at once (its last epoch checkpoint stays), mark
  it FAIL with the signal as its reason, re-queue it once to continue from that checkpoint,
  and end the worker; outside training they wait for the trial to be taken or told whole
  (``sweep.runner.interrupts``), so no trial is left RUNNING or failed without its re-run.
- **Re-runs are bounded and visible** (``sweep.runner.requeue``): at most MAX_RETRY per
  trial; each carries ``retry_of``, ``retry`` and ``retry_reason`` in its user attrs (the
  dashboard shows them), and Optuna's ``retry_history`` system attr, which
  ``progress.results`` counts by. Each worker's sampler has its own seed
  (``sweep.runner.seeds``).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import TrialState

from sweep import optuna_private
from sweep.errors import DatabaseFull, WorkerError
from sweep.logs import quiet_logs
from sweep.runner import confirm
from sweep.runner.failures import describe, free_memory, is_oom
from sweep.runner.heartbeat import Heartbeat, open_with_heartbeat
from sweep.runner.interrupts import (
    RECEIVED,
    armed,
    signals_interrupt,
    stop_if_signalled,
    stopped_by,
)
from sweep.runner.progress import Progress, results
from sweep.runner.requeue import Requeue, rerun_queued
from sweep.runner.seeds import sampler_seed
from sweep.storage import settings as study_settings
from sweep.storage.database import open_storage

if TYPE_CHECKING:
    import torch

    from sweep.storage.database import WorkerStorage

log = logging.getLogger(__name__)

MAX_ERRORS = 3  # unexpected errors in a row before a worker gives up
# Out-of-memory failures in a row before it gives up: more than MAX_ERRORS, as the sampler
# may well propose a few configurations too large for the machine in a row.
MAX_OOMS = 5
WAIT_S = 1.0  # between looks at the study while the other workers run its last trials
RECORD_TRIES = 3  # attempts at recording an interrupted trial, each on fresh connections


class TrialGone(Exception):
    """This worker's trial was finished by someone else (failed as stale): stop its run."""


class Worker:
    """The claim/run/tell loop (see the module docstring)."""

    def __init__(self, study: optuna.Study, storage: WorkerStorage, objective: Any,
                 settings: study_settings.Settings, progress: Progress) -> None:
        self.study, self.storage, self.objective = study, storage, objective
        self.settings, self.progress = settings, progress
        self.beat: Heartbeat | None = None
        objective.on_epoch = self.on_epoch

    def on_epoch(self) -> None:
        if self.beat is not None and self.beat.gone.is_set():
            raise TrialGone
        self.storage.check_room()  # a full database: record this trial and stop
        if self.progress.echo:
            self.progress.poll()

    def claim(self) -> optuna.Trial | bool:
        """A trial to run; True: wait (the others run the last ones); False: done."""
        self.storage.check_room()  # a full database: take nothing more
        with self.storage.study_lock(self.study.study_name):
            optuna.storages.fail_stale_trials(self.study)
            self._fail_orphans()
            trials = self.study.get_trials(deepcopy=False)
            goal = study_settings.load(self.study).goal  # a concurrent start may raise it
            waiting = sum(t.state == TrialState.WAITING for t in trials)
            running = sum(t.state == TrialState.RUNNING for t in trials)
            # The budget spent and every trial told: the best configurations get their
            # confirmation runs (sweep.runner.confirm), queued once, then taken like any
            # queued trial.
            if not waiting and results(trials) + running >= goal and (
                    running or not confirm.enqueue(self.study, trials)):
                return running > 0
            stop_if_signalled()  # a signal noted while waiting for the lock: take nothing
            try:
                trial = self.study.ask()
                # Stale detection only sees trials that beat once: beat before the lock goes.
                self.storage.record_heartbeat(optuna_private.trial_id(trial))
            except DatabaseFull:  # the trial half taken (if any) is ours: give it back
                with suppress(DatabaseFull):
                    self._fail_orphans("the database is full")
                raise
            return trial

    def _fail_orphans(self, reason: str = "its worker died while taking it (before its "
                                          "first heartbeat)") -> None:
        """Fail and re-queue trials whose worker died between taking them and its first
        heartbeat (see SweepStorage.unclaimed_running); the caller holds the study lock."""
        for trial_id in self.storage.unclaimed_running(optuna_private.study_id(self.study)):
            self.storage.set_trial_user_attr(trial_id, "fail_reason", reason)
            if self.storage.set_trial_state_values(trial_id, TrialState.FAIL):
                Requeue(reason)(self.study, self.storage.get_trial(trial_id))

    def run(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        errors = ooms = 0
        while deadline is None or time.monotonic() < deadline:
            stop_if_signalled()
            trial = self.claim()
            if trial is False:
                return
            if trial is True:
                time.sleep(WAIT_S)
                continue
            assert isinstance(trial, optuna.Trial)
            reason = self.run_trial(trial)
            errors = errors + 1 if reason and not is_oom(reason) else 0
            ooms = ooms + 1 if reason and is_oom(reason) else 0
            if errors >= MAX_ERRORS:
                raise WorkerError(f"{errors} trials in a row failed with errors; the last: "
                                  f"{reason}")
            if ooms >= MAX_OOMS:
                raise WorkerError(f"{ooms} trials in a row ran out of memory (the last: "
                                  f"{reason}): this machine needs a smaller batch_size or "
                                  "width (fix them, or narrow their [search] range), or "
                                  "fewer workers")

    def run_trial(self, trial: optuna.Trial) -> str | None:
        """Run one trial and record it; returns the reason of an unexpected failure.

        A signal stops it at once while it trains, and is only noted elsewhere
        (``sweep.runner.interrupts``): either way the trial ends FAIL with the signal as its
        reason and one re-run queued, or, once its result is told, finished as it was; the
        caller then stops."""
        self.beat = Heartbeat(self.study, self.storage, optuna_private.trial_id(trial),
                              self.settings.heartbeat)
        self.beat.start()
        values: Any = None
        state, error = TrialState.COMPLETE, None
        try:
            self._attr(trial, "worker", f"{socket.gethostname()}:{os.getpid()}")  # who ran it
            values = self._train(trial)
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except (TrialGone, optuna.exceptions.UpdateFinishedTrialError):
            log.warning("trial %d was failed under this worker (no heartbeat reached the "
                        "database in time); its re-run continues it", trial.number)
            return None
        except (KeyboardInterrupt, SystemExit) as err:
            # Ours, or Lightning's SystemExit (its sys.exit(1) after a KeyboardInterrupt, its
            # SIGTERMException): a signal, or an exit, stopped the trial.
            how = stopped_by(err)
            self._record_interruption(trial, how)
            if how.startswith("exit"):
                raise
            raise KeyboardInterrupt(how) from None
        except Exception as err:
            if RECEIVED:  # what the signal cut short failed in turn: still an interruption
                self._record_interruption(trial, RECEIVED[0])
                raise KeyboardInterrupt(RECEIVED[0]) from None
            if isinstance(err, DatabaseFull):  # not this trial's fault; no other could be stored
                self._stop_full(trial)
                raise
            state, error = TrialState.FAIL, describe(err)  # a fault of this trial: go on
            if is_oom(error):
                free_memory()
            log.warning("trial %d FAIL: %s", trial.number, error)
        finally:
            self.beat.stop()
        self._tell(trial, values, state, error)
        return error

    def _tell(self, trial: optuna.Trial, values: Any, state: TrialState,
              error: str | None) -> None:
        """Record the trial's result (FAIL with ``error`` when there is one)."""
        values = values if isinstance(values, (tuple, list)) else (
            None if values is None else [values])
        if values is not None and any(np.isnan(v) for v in values):
            state, values = TrialState.FAIL, None  # the objective recorded its fail_reason
        try:
            if error is not None:
                self._attr(trial, "fail_reason", error)
            frozen = self.study.tell(trial, values, state=state, skip_if_finished=True)
        except DatabaseFull:  # even the reserve's room was taken: the re-run, if it fits
            self._stop_full(trial)
            raise
        if frozen.state == state:
            self.progress.report(self.study, frozen)
        else:  # failed under us between the last epoch and now: its re-run counts instead
            log.warning("trial %d was finished (%s) by another process before this worker "
                        "told its result", trial.number, frozen.state.name)

    def _train(self, trial: optuna.Trial) -> Any:
        """The objective, with signals raising at once (``sweep.runner.interrupts``)."""
        with armed():
            return self.objective(trial)

    def _attr(self, trial: optuna.Trial, key: str, value: Any) -> None:
        try:
            trial.set_user_attr(key, value)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # failed under us meanwhile: its re-run has the story

    def _stop_full(self, trial: optuna.Trial) -> None:
        """Fail and re-queue the trial, in the room the database's reserve freed
        (``sweep.storage.reserve``); should even that be taken, it stays RUNNING and
        ``resume`` fails and re-queues it once its heartbeat is stale. Either way its re-run
        is not lost."""
        with suppress(DatabaseFull, optuna.exceptions.UpdateFinishedTrialError):
            self._fail_with_rerun(trial, "the database is full")

    def _fail_with_rerun(self, trial: optuna.Trial, reason: str) -> None:
        """The trial FAIL with ``reason`` and exactly one re-run queued, unless it was
        finished meanwhile or another process queued its re-run already."""
        self._attr(trial, "fail_reason", reason)
        self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        frozen = self.storage.get_trial(optuna_private.trial_id(trial))
        if frozen.state == TrialState.FAIL and not rerun_queued(self.study, frozen.number):
            Requeue(reason)(self.study, frozen)

    def _record_interruption(self, trial: optuna.Trial, how: str) -> None:
        """``_fail_with_rerun`` with ``how`` in the reason, through fresh connections."""
        reason = f"interrupted by {how}; its re-run continues from the last epoch checkpoint"
        # The heartbeat goes on (run_trial stops it afterwards): should this record wait out
        # an outage, the trial must not look abandoned to the other workers meanwhile.
        for attempt in range(RECORD_TRIES):
            # The signal may have landed inside a query of this thread: its session would
            # be mid-transaction, and on SQLite its connection, with the statement never
            # finished, would go on reading the snapshot from before (measured: tell()
            # then returned the trial as RUNNING, and no re-run was queued). Record
            # through fresh sessions and connections (a journal: replayed afresh).
            self.storage.fresh_connections()
            try:
                self._fail_with_rerun(trial, reason)
                return
            except Exception as err:
                if attempt == RECORD_TRIES - 1:
                    log.warning("trial %d: could not record the interruption (%s); `python -m "
                                "sweep resume` re-queues it", trial.number, describe(err))


def run_worker(url: str, name: str, worker_id: int, timeout: float | None,
               images: torch.Tensor | None = None, show_progress: bool = True) -> None:
    """Run trials of study ``name`` until its budget is spent (or ``timeout`` seconds pass).

    ``images``: the study's data when the caller has loaded it already (else loaded here).
    Log levels, warning filters and signal handlers are the caller's again once it returns.
    """
    with quiet_logs(), warnings.catch_warnings():
        # This loop is the heartbeat-aware optimize that Optuna's warning asks ask() users for.
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
        # A re-run writes into its first run's checkpoint folder on purpose.
        warnings.filterwarnings("ignore",
                                message="Checkpoint directory .* exists and is not empty")
        _run_worker(url, name, worker_id, timeout, images, show_progress)


def _run_worker(url: str, name: str, worker_id: int, timeout: float | None,
                images: torch.Tensor | None, show_progress: bool) -> None:
    from models.data import load_images
    from sweep.runner.objective import Objective
    from sweep.storage.stores import open_stores

    reader = open_storage(url, heartbeat_interval=None, must_exist=True)
    settings = study_settings.load(optuna.load_study(study_name=name, storage=reader))
    storage = open_with_heartbeat(url, settings.heartbeat)
    base = settings.base
    sampler = optuna.samplers.TPESampler(seed=sampler_seed(base.seed, worker_id, storage, name),
                                         constant_liar=True)
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler,
                              pruner=settings.space.make_pruner())
    stores = open_stores(settings.artifacts, url, name)
    progress = Progress(study, settings.goal, echo=show_progress)
    objective = Objective(settings.space, load_images(base) if images is None else images,
                          stores.artifacts, stores.checkpoints, settings.keep_checkpoints,
                          settings.keep_weights,
                          on_epoch=progress.poll if show_progress else None)
    with signals_interrupt():
        Worker(study, storage, objective, settings, progress).run(timeout)
