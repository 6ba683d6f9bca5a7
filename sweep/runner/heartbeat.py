"""Heartbeats that outlive an outage: the storage as workers open it (heartbeats on, stale
trials failed and re-queued), and the thread that beats for a worker's trial."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from sweep.errors import DatabaseFull
from sweep.runner.requeue import Requeue
from sweep.storage.database import open_storage

if TYPE_CHECKING:
    from sweep.storage.database import WorkerStorage


def open_with_heartbeat(url: str, heartbeat: int) -> WorkerStorage:
    """The storage as workers use it: heartbeats on, stale trials failed and re-queued."""
    storage = open_storage(url, heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
                           stale_trial_callback=Requeue(), reserve=True)
    return storage  # type: ignore[return-value]


class Heartbeat(threading.Thread):
    """Beats for one trial every ``interval`` s, through outages; sets ``gone`` when the
    trial is no longer RUNNING; fails (and so re-queues) other workers' stale trials. Stops
    once the database is full (its beats would take the room its trial's FAIL needs)."""

    def __init__(self, study: optuna.Study, storage: WorkerStorage, trial_id: int,
                 interval: float) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{trial_id}")
        self.study, self.storage, self.trial_id, self.interval = study, storage, trial_id, interval
        self.stopped = threading.Event()
        self.gone = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.storage.check_room()
                self.storage.record_heartbeat(self.trial_id)
                if self.storage.get_trial(self.trial_id).state != TrialState.RUNNING:
                    self.gone.set()
                    return
                optuna.storages.fail_stale_trials(self.study)
            except DatabaseFull:  # the worker sees it at its next epoch end (check_room)
                return
            except Exception:  # past the storage's retries: keep beating
                continue

    def stop(self) -> None:
        self.stopped.set()
        self.join()
