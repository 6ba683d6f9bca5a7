"""Optuna's RDBStorage, made safe for many workers on many machines: ``SweepStorage``.

What RDBStorage lacks, and only that, is added here:

- **Outages.** Every storage call that fails because the database cannot be reached (a
  server restarting, a dropped connection, SQLite's "database is locked" past its timeout)
  is retried with bounded exponential backoff (0.5 s doubling to 8 s, for at most
  ``OUTAGE_WAIT_S``), with one line on stderr when the outage starts and one when it ends.
  Heartbeats go through the same path, so a worker's trials survive the outage; and for one
  grace period after an outage (or after the server started) this process fails no trial as
  stale, since every worker's heartbeat stopped together and needs one interval to beat
  again. ``transient`` is the one
  place that tells an outage (wait) from storage that can never work (a wrong password,
  database or host: bad input, at once); ``sweep.storage.open_storage`` asks it too, so a
  process started during an outage waits like a running worker.
- **Claims on SQLite.** Optuna pops a WAITING trial by reading its state and then setting
  it to RUNNING; on PostgreSQL and MySQL the read holds a row lock (``FOR UPDATE``), on
  SQLite it holds nothing, so several processes could pop the same trial (measured: 10 of
  10 rounds of a 3-process race). Here that WAITING -> RUNNING step runs under an exclusive
  ``flock`` on a lock file beside the database file.
- **A study lock** (``study_lock``) that serialises a worker's "take a trial of the budget"
  across processes and machines: ``flock`` for SQLite, ``pg_advisory_lock`` for
  PostgreSQL, ``GET_LOCK`` for MySQL. The claim lock and the study lock are the same lock on
  SQLite (reentrant within a thread), so a claim inside the study lock cannot deadlock.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from sweep.errors import DatabaseFull

OUTAGE_ENV = "VAE_SWEEP_OUTAGE_WAIT_S"
OUTAGE_WAIT_S = float(os.environ.get(OUTAGE_ENV, "600"))
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)

_T = TypeVar("_T")


# Fragments (lower case) of the drivers' messages for what no wait can cure: the URL names a
# user, password, database, host or table the server refuses or lacks (PostgreSQL, MySQL
# and MariaDB), or an SQLite file that cannot be used. A connection refused, dropped or
# timed out, a server starting or shutting down, "too many clients", "database is locked":
# every other connection error is an outage.
NEVER = (
    "password authentication failed", "no password supplied", "access denied",
    "no pg_hba.conf entry", "does not exist",  # role "x", database "x", relation "x"
    "unknown database", "name or service not known", "nodename nor servname",
    "unknown mysql server host", "certificate verify failed", "no such table",
    "no such column", "unable to open database file", "readonly database",
    "file is not a database",
)
_OUTAGE_TYPES = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
                 sqlalchemy.exc.DisconnectionError, sqlalchemy.exc.TimeoutError)


def transient(err: BaseException) -> bool:
    """Whether ``err`` (or what it wraps) is an outage, to wait out, rather than storage that
    can never work (bad input). The one place that decides: every retry and every storage
    open asks it."""
    chain = list(_chain(err))
    text = " ".join(str(e) for e in chain).lower()
    if any(_full(e) for e in chain) or any(fragment in text for fragment in NEVER):
        return False
    return any(isinstance(e, _OUTAGE_TYPES) or (
        isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated) for e in chain)


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and what it wraps (Optuna wraps SQLAlchemy's error, which wraps the driver's)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.orig is not None:
            yield current.orig
        current = current.__cause__ or current.__context__


def _root(err: BaseException) -> BaseException:
    """The error at the bottom of the chain (Optuna wraps the driver's in its own)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def _full(err: BaseException) -> bool:
    text = str(err).lower()
    return "disk is full" in text or "no space left" in text or "disk full" in text


class _Outage:
    """When this process last saw the database come back, and the notices of an outage."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.down_since: float | None = None
        self.ended_at = -float("inf")
        self.count = 0

    def failed(self, err: BaseException) -> None:
        with self.lock:
            if self.down_since is None:
                self.down_since = time.monotonic()
                self.count += 1
                root = _root(err)
                reason = (str(root).strip().splitlines() or [type(root).__name__])[0][:160]
                print(f"storage unreachable ({reason}); retrying for up to "
                      f"{OUTAGE_WAIT_S:.0f} s", file=sys.stderr, flush=True)

    def recovered(self) -> None:
        if self.down_since is None:
            return
        with self.lock:
            if self.down_since is not None:
                print(f"storage reachable again after {time.monotonic() - self.down_since:.0f} s",
                      file=sys.stderr, flush=True)
                self.down_since = None
                self.ended_at = time.monotonic()


OUTAGE = _Outage()  # per process: every storage of the process sees the same database go


def retrying(call: Callable[..., _T]) -> Callable[..., _T]:
    """``call`` retried through outages (bounded backoff, OUTAGE_WAIT_S at most)."""

    @functools.wraps(call)
    def wrapper(*args: Any, **kwargs: Any) -> _T:
        deadline = time.monotonic() + OUTAGE_WAIT_S
        attempt = 0
        while True:
            try:
                result = call(*args, **kwargs)
            except Exception as err:
                if _full(err) and isinstance(err, (sqlalchemy.exc.SQLAlchemyError,
                                                   optuna.exceptions.StorageInternalError)):
                    raise DatabaseFull(f"the database is full: {str(err).splitlines()[0]}") \
                        from err
                left = deadline - time.monotonic()
                if not transient(err) or left <= 0:
                    raise
                OUTAGE.failed(err)
                # The last try falls on the deadline itself, not up to 8 s past it.
                time.sleep(min(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)], left))
                attempt += 1
                continue
            OUTAGE.recovered()
            return result

    return wrapper


class _FileLock:
    """An exclusive ``flock`` on one file, shared by the threads of a process (reentrant
    per thread; other threads wait). One instance per path and process."""

    _all: dict[str, _FileLock] = {}
    _guard = threading.Lock()

    def __init__(self, path: str) -> None:
        self.path = path
        self.rlock = threading.RLock()
        self.depth = 0
        self.fd: int | None = None

    @classmethod
    def of(cls, path: Path) -> _FileLock:
        key = str(path.resolve())
        with cls._guard:
            return cls._all.setdefault(key, cls(key))

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self.rlock:
            if self.depth == 0:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
                fcntl.flock(self.fd, fcntl.LOCK_EX)
            self.depth += 1
            try:
                yield
            finally:
                self.depth -= 1
                if self.depth == 0 and self.fd is not None:
                    fcntl.flock(self.fd, fcntl.LOCK_UN)
                    os.close(self.fd)
                    self.fd = None


# The public BaseStorage calls a worker makes; each is retried through outages.
_RETRIED = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_all_studies", "create_new_trial",
    "set_trial_param", "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id",
    "get_trial_param", "set_trial_intermediate_value", "set_trial_user_attr",
    "set_trial_system_attr", "get_trial", "get_all_trials", "get_n_trials", "get_best_trial",
    "get_trial_params", "get_trial_user_attrs", "get_trial_system_attrs", "record_heartbeat",
    # What Optuna's _CachedStorage (the wrapper every Study puts around an RDBStorage) calls.
    "_create_new_trial", "_set_trial_param", "_get_best_trial_id", "_get_trials",
)


class SweepStorage(RDBStorage):
    """RDBStorage with retries through outages, an atomic claim on SQLite and a study lock
    (see the module docstring). ``lock_file``: the SQLite claim lock (None on servers)."""

    def __init__(self, url: str, *, lock_file: Path | None = None, **kwargs: Any) -> None:
        self.lock_file = lock_file
        # Not retried here: open_storage retries the whole construction through outages
        # (transient() tells an outage from a wrong URL, which fails at once).
        super().__init__(url, **kwargs)

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Any = None) -> bool:
        call = retrying(super().set_trial_state_values)
        if state == TrialState.RUNNING and self.lock_file is not None:
            with _FileLock.of(self.lock_file).held():
                return call(trial_id, state, values)
        return call(trial_id, state, values)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        grace = self.grace_period or 2 * (self.heartbeat_interval or 0)
        # Every heartbeat paused with the database: give them time to beat again, the
        # last backoff step included (a beat may retry that long after the database is back).
        # A process that saw the outage knows when it ended; one that started after it (its
        # first query once the server was back) asks the server how long it has been up.
        settle = grace + (self.heartbeat_interval or 0) + BACKOFF_S[-1]
        if time.monotonic() - OUTAGE.ended_at < settle or self.uptime() < settle:
            return []
        stale = retrying(super()._get_stale_trial_ids)(study_id)
        for trial_id in stale:  # said while it can be: a finished trial takes no attrs
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                self.set_trial_user_attr(
                    trial_id, "fail_reason",
                    f"no heartbeat for over {grace} s: its worker was killed, or lost the "
                    "database for longer than that")
        return stale

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
        from optuna.storages._rdb import models

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
            with _FileLock.of(self.lock_file).held():
                yield
            return
        key = int.from_bytes(hashlib.sha1(f"vae-sweep:{study_name}".encode()).digest()[:8],
                             "big", signed=True)
        backend = self.engine.dialect.name
        if backend == "postgresql":
            lock = sqlalchemy.text("SELECT pg_advisory_lock(:k)")
            unlock: Any = sqlalchemy.text("SELECT pg_advisory_unlock(:k)")
            param: Any = key
        elif backend in ("mysql", "mariadb"):
            lock = sqlalchemy.text("SELECT GET_LOCK(:k, 600)")
            unlock, param = sqlalchemy.text("SELECT RELEASE_LOCK(:k)"), str(key)
        else:  # a backend without named locks: Optuna's own row locks must do
            yield
            return

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


for _name in _RETRIED:
    if hasattr(RDBStorage, _name):
        setattr(SweepStorage, _name, retrying(getattr(RDBStorage, _name)))
