"""Optuna's RDBStorage, made safe for many workers on many machines: ``SweepStorage``.

What RDBStorage lacks, and only that, is added here:

- **Outages.** Every storage call that fails because the database cannot be reached (a
  server restarting, a dropped connection, SQLite's "database is locked" past its timeout)
  is retried (``sweep.storage.retries``: bounded exponential backoff, 0.5 s doubling to 8 s,
  for at most ``sweep.storage.outages.outage_wait_s()``, 600 s unless
  $VAE_SWEEP_OUTAGE_WAIT_S says), with one line on stderr when the outage starts and one
  when it ends.
  Heartbeats go through the same path, so a worker's trials survive the outage; and for one
  grace period after an outage (or after the server started) this process fails no trial as
  stale, since every worker's heartbeat stopped together and needs one interval to beat
  again. ``transient`` is the one
  place that tells an outage (wait) from storage that can never work (a wrong password,
  database or host: bad input, at once); ``sweep.storage.database.open_storage`` asks it too, so a
  process started during an outage waits like a running worker.
- **Claims on SQLite.** Optuna pops a WAITING trial by reading its state and then setting
  it to RUNNING; on PostgreSQL and MySQL the read holds a row lock (``FOR UPDATE``), on
  SQLite it holds nothing, so several processes could pop the same trial (measured: 10 of
  10 rounds of a 3-process race). Here that WAITING -> RUNNING step runs under an exclusive
  ``flock`` on a lock file beside the database file (``sweep.storage.locks``).
- **A study lock** (``study_lock``) that serialises a worker's "take a trial of the budget"
  across processes and machines: ``flock`` for SQLite, ``pg_advisory_lock`` for
  PostgreSQL, ``GET_LOCK`` for MySQL. The claim lock and the study lock are the same lock on
  SQLite (reentrant within a thread), so a claim inside the study lock cannot deadlock.
- **Creating the tables.** RDBStorage creates missing tables and writes the schema version
  check-then-create, so processes opening a new database at once collided ("table studies
  already exists", PostgreSQL's "duplicate key ... pg_type_typname_nsp_index") and one of
  two concurrent ``start``s lost its budget. Opening a storage holds the SQLite lock file,
  or a server's named lock on a connection of its own, around that creation.
- **A full SQLite disk.** The first write that finds it full empties the reserve beside
  the file (``sweep.storage.reserve``) and is tried once more in that room; ``check_room``
  tells every worker sharing the file to record its trial and stop. A full database is
  DatabaseFull, never retried as an outage.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from sweep import optuna_private
from sweep.errors import DatabaseFull
from sweep.storage import retries
from sweep.storage.locks import FileLock, creation_lock, named_lock
from sweep.storage.reserve import Reserve
from sweep.storage.retries import RetriedRDBStorage, full_message, retrying, shown_url


class SweepStorage(RetriedRDBStorage):
    """RDBStorage with retries through outages, an atomic claim on SQLite and a study lock
    (see the module docstring). ``lock_file``: the SQLite claim lock (None on servers);
    ``reserve``: the room kept for a full disk's last writes (``sweep.storage.reserve``)."""

    def __init__(self, url: str, *, lock_file: Path | None = None,
                 reserve: Reserve | None = None, **kwargs: Any) -> None:
        self.lock_file = lock_file
        self.reserve = reserve
        # RDBStorage creates the tables and writes the schema version when they are missing,
        # check-then-create: two processes opening a new database at once collide ("table
        # studies already exists"), so creation is serialised. Not retried here:
        # open_storage retries the whole construction through outages (transient() tells
        # an outage from a wrong URL, which fails at once).
        with creation_lock(url, lock_file, kwargs.get("engine_kwargs") or {}):
            super().__init__(url, **kwargs)

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Any = None) -> bool:
        call = retrying(super().set_trial_state_values)
        if state == TrialState.RUNNING and self.lock_file is not None:
            with FileLock.of(self.lock_file).held():
                return call(trial_id, state, values)
        return call(trial_id, state, values)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        grace = self.grace_period or 2 * (self.heartbeat_interval or 0)
        # Every heartbeat paused with the database: give them time to beat again, the
        # last backoff step included (a beat may retry that long after the database is back).
        # A process that saw the outage knows when it ended; one that started after it (its
        # first query once the server was back) asks the server how long it has been up.
        settle = grace + (self.heartbeat_interval or 0) + retries.BACKOFF_S[-1]
        if time.monotonic() - retries.OUTAGE.ended_at < settle or self.uptime() < settle:
            return []
        stale = retrying(super()._get_stale_trial_ids)(study_id)
        for trial_id in stale:  # said while it can be: a finished trial takes no attrs
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                self.set_trial_user_attr(
                    trial_id, "fail_reason",
                    f"no heartbeat for over {grace} s: its worker was killed, or lost the "
                    "database for longer than that")
        return stale

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        """The best trial, feasible first: ``Study.best_trial`` skips infeasible trials
        (Optuna's constraints), but optuna-dashboard's "Best Trial" asks the storage, which
        does not; a collapsed trial with the lowest value was shown as best there. With no
        feasible trial yet, the storage's answer stands: the dashboard needs one to draw."""
        return feasible_first(self, study_id, super().get_best_trial(study_id))

    def check_room(self) -> None:
        """DatabaseFull once any process sharing this database found it full (it emptied the
        reserve): nothing more should be written than what stops the run."""
        if self.reserve is not None and self.reserve.released():
            raise DatabaseFull(full_message(
                f"its disk filled up: {self.reserve.path.name} is used", shown_url(self)))

    def fresh_connections(self) -> None:
        """Drop this thread's session and every pooled connection: a signal that landed
        inside a query may have left them mid-transaction (see Worker._record_interruption)."""
        self.scoped_session.remove()
        self.engine.dispose()

    def uptime(self) -> float:
        """Seconds since the database server started (infinite for SQLite, which has none)."""
        backend = self.engine.dialect.name
        if backend == "postgresql":
            query, column = "SELECT EXTRACT(EPOCH FROM now() - pg_postmaster_start_time())", 0
        elif backend in ("mysql", "mariadb"):
            query, column = "SHOW GLOBAL STATUS LIKE 'Uptime'", 1  # (name, value) on both
        else:
            return float("inf")

        def read() -> float:
            with self.engine.connect() as conn:
                row = conn.execute(sqlalchemy.text(query)).first()
            return float("inf") if row is None else float(row[column])

        try:
            return retrying(read)()
        except sqlalchemy.exc.SQLAlchemyError:  # not allowed to read it: rely on OUTAGE
            return float("inf")

    def unclaimed_running(self, study_id: int) -> list[int]:
        """RUNNING trials that never beat: taken by a worker that died before its first
        heartbeat. Optuna's stale check skips them for good; read under the study lock (which
        a worker holds from taking a trial to its first beat) they can only be orphans."""
        models = optuna_private.rdb_models()

        def query() -> list[int]:
            session = self.scoped_session()
            try:
                return [row[0] for row in session.query(models.TrialModel.trial_id).filter(
                    models.TrialModel.study_id == study_id,
                    models.TrialModel.state == TrialState.RUNNING,
                    ~models.TrialModel.heartbeats.any()).all()]
            finally:
                session.close()

        return retrying(query)()

    @contextlib.contextmanager
    def study_lock(self, study_name: str) -> Iterator[None]:
        """Held by one process of the whole study at a time (see the module docstring)."""
        if self.lock_file is not None:
            with FileLock.of(self.lock_file).held():
                yield
            return
        named = named_lock(self.engine.dialect.name, f"vae-sweep:{study_name}")
        if named is None:  # a backend without named locks: Optuna's own row locks must do
            yield
            return
        lock, unlock, param = named

        def acquire() -> sqlalchemy.Connection:
            conn = self.engine.connect()
            try:
                conn.execute(lock, {"k": param})
                conn.commit()
            except Exception:
                conn.close()
                raise
            return conn

        conn = retrying(acquire)()
        try:
            yield
            with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
                conn.execute(unlock, {"k": param})
                conn.commit()
        finally:
            with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
                conn.close()  # a lost connection releases a server's lock by itself


def feasible_first(storage: optuna.storages.BaseStorage, study_id: int,
                   best: FrozenTrial) -> FrozenTrial:
    """``best`` (the storage's own answer) if it is feasible, else the best feasible trial,
    else ``best`` still (see SweepStorage.get_best_trial)."""
    if _feasible(best):
        return best
    complete = storage.get_all_trials(study_id, states=(TrialState.COMPLETE,))
    feasible = [t for t in complete if _feasible(t)]
    if not feasible:
        return best
    pick = max if storage.get_study_directions(study_id)[0] == StudyDirection.MAXIMIZE else min
    return pick(feasible, key=lambda t: float(t.value or 0.0))


def _feasible(trial: FrozenTrial) -> bool:
    """Optuna's rule: every constraint value at most 0 (none recorded: feasible)."""
    return all(c <= 0 for c in trial.constraints.values())
