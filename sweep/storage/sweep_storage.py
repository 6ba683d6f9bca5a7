"""Optuna's RDBStorage, made safe for many workers on many machines: ``SweepStorage``.

What RDBStorage lacks, and only that, is added here:

- **Outages.** Every storage call that fails because the database cannot be reached (a
  server restarting, a dropped connection, SQLite's "database is locked" past its timeout)
  is retried with bounded exponential backoff (0.5 s doubling to 8 s, for at most
  ``sweep.storage.outages.outage_wait_s()``, 600 s unless $VAE_SWEEP_OUTAGE_WAIT_S says), with one
  line on stderr when the outage starts and one when it ends.
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
  ``flock`` on a lock file beside the database file.
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
import fcntl
import functools
import hashlib
import os
import sys
import threading
import time
from collections.abc import Callable, Container, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.distributions import BaseDistribution
from optuna.storages import RDBStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from sweep import optuna_private
from sweep.errors import DatabaseFull
from sweep.storage.outages import outage_wait_s
from sweep.storage.reserve import Reserve

if TYPE_CHECKING:
    from sweep.optuna_private import FrozenStudy, JSONSerializable

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
    if full_disk(err) or any(fragment in text for fragment in NEVER):
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


def _says_full(err: BaseException) -> bool:
    text = str(err).lower()
    return "disk is full" in text or "no space left" in text or "disk full" in text


def full_disk(err: BaseException) -> bool:
    """Whether ``err`` or any error it wraps says the disk is full: Optuna's
    StorageInternalError reads "An exception is raised during the commit", the driver's
    "database or disk is full" is underneath it."""
    return any(_says_full(e) for e in _chain(err))


def _shown_url(storage: object) -> str:
    """The storage's URL for messages (password hidden); the wrapped call's first argument
    is its storage when it is a method (an RDBStorage's URL always parses)."""
    url = getattr(storage, "url", None)
    if not isinstance(url, str):
        return "(this storage)"
    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)


def full_message(err: BaseException | str, where: str) -> str:
    """One line: which database is full, and the driver's words for it (or ``err``)."""
    if isinstance(err, str):
        words = err
    else:
        cause = next(e for e in _chain(err) if _says_full(e))
        words = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:200]
    return (f"the database {where} is full ({words}): free space or move it to a bigger "
            "disk, then run again (`python -m sweep resume` finishes a started study)")


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
                      f"{outage_wait_s():.0f} s", file=sys.stderr, flush=True)

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
    """``call`` retried through outages (bounded backoff, outage_wait_s() at most)."""

    # The storage whose method this is (``retrying(super().get_trial)``), or else the first
    # argument: its URL names the database, its reserve gives a full disk's last writes
    # their room.
    owner = getattr(call, "__self__", None)

    @functools.wraps(call)
    def wrapper(*args: Any, **kwargs: Any) -> _T:
        deadline = time.monotonic() + outage_wait_s()
        attempt = 0
        while True:
            try:
                result = call(*args, **kwargs)
            except Exception as err:
                if full_disk(err) and isinstance(err, (sqlalchemy.exc.SQLAlchemyError,
                                                   optuna.exceptions.StorageInternalError)):
                    # The first write to find the disk full frees the reserve and is tried
                    # again in that room (SQLite rolled it back whole); the worker sees the
                    # empty reserve at its next step and stops (SweepStorage.check_room).
                    reserve = getattr(owner, "reserve", None)
                    if isinstance(reserve, Reserve) and reserve.release():
                        continue
                    where = _shown_url(owner if owner is not None else args[0] if args else None)
                    raise DatabaseFull(full_message(err, where)) from err
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


_CREATION_KEY = "vae-sweep:create-tables"


def _lock_key(name: str) -> int:
    """A name as a PostgreSQL advisory lock key (a signed 64-bit integer)."""
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big", signed=True)


def _named_lock(backend: str, name: str) -> tuple[Any, Any, Any] | None:
    """(lock, unlock, parameter) of a server's named lock on ``name``; None on a backend
    without one."""
    if backend == "postgresql":
        return (sqlalchemy.text("SELECT pg_advisory_lock(:k)"),
                sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), _lock_key(name))
    if backend in ("mysql", "mariadb"):
        return (sqlalchemy.text("SELECT GET_LOCK(:k, 600)"),
                sqlalchemy.text("SELECT RELEASE_LOCK(:k)"), str(_lock_key(name)))
    return None


def _created(engine: sqlalchemy.Engine) -> bool:
    """Whether RDBStorage finished creating this database: its last step stamps the schema
    revision into ``alembic_version``."""
    try:
        with engine.connect() as conn:
            return conn.execute(sqlalchemy.text(
                "SELECT version_num FROM alembic_version")).first() is not None
    except sqlalchemy.exc.SQLAlchemyError:  # no such table yet (or no server: said later)
        return False


@contextlib.contextmanager
def _creation_lock(url: str, lock_file: Path | None,
                   engine_kwargs: dict[str, Any]) -> Iterator[None]:
    """Held while RDBStorage creates the tables: the file lock beside an SQLite file, a
    named lock on a server, taken on a connection of its own (closing it releases it).
    Not taken once the tables are there (RDBStorage then only reads), so a reader of an
    existing database leaves no lock file beside it."""
    engine = sqlalchemy.create_engine(url, **engine_kwargs)
    try:
        named = _named_lock(engine.dialect.name, _CREATION_KEY)
        if _created(engine) or (named is None and lock_file is None):
            yield
            return
        if lock_file is not None:
            with _FileLock.of(lock_file).held():
                yield
            return
        assert named is not None
        lock, unlock, param = named
        with engine.connect() as conn:
            conn.execute(lock, {"k": param})
            conn.commit()
            try:
                yield
            finally:
                with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
                    conn.execute(unlock, {"k": param})
                    conn.commit()
    finally:
        engine.dispose()


class RetriedRDBStorage(RDBStorage):
    """RDBStorage whose every call a worker makes is retried through outages (``retrying``).

    Each method is written out with Optuna's own signature, so mypy checks it against the
    installed Optuna. The last four are private: Optuna's _CachedStorage, which every Study
    puts around an RDBStorage, calls them (sweep.optuna_private.CACHED_STORAGE_CALLS)."""

    def create_new_study(self, directions: Sequence[StudyDirection],
                         study_name: str | None = None) -> int:
        return retrying(super().create_new_study)(directions, study_name)

    def delete_study(self, study_id: int) -> None:
        return retrying(super().delete_study)(study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        return retrying(super().set_study_user_attr)(study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: JSONSerializable) -> None:
        return retrying(super().set_study_system_attr)(study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return retrying(super().get_study_id_from_name)(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return retrying(super().get_study_name_from_id)(study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return retrying(super().get_study_directions)(study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return retrying(super().get_study_user_attrs)(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return retrying(super().get_study_system_attrs)(study_id)

    def get_all_studies(self) -> list[FrozenStudy]:
        return retrying(super().get_all_studies)()

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        return retrying(super().create_new_trial)(study_id, template_trial)

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        return retrying(super().set_trial_param)(trial_id, param_name, param_value_internal,
                                                 distribution)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return retrying(super().get_trial_id_from_study_id_trial_number)(study_id, trial_number)

    def get_trial_number_from_id(self, trial_id: int) -> int:
        return retrying(super().get_trial_number_from_id)(trial_id)

    def get_trial_param(self, trial_id: int, param_name: str) -> float:
        return retrying(super().get_trial_param)(trial_id, param_name)

    def set_trial_intermediate_value(self, trial_id: int, step: int,
                                     intermediate_value: float) -> None:
        return retrying(super().set_trial_intermediate_value)(trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        return retrying(super().set_trial_user_attr)(trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: JSONSerializable) -> None:
        return retrying(super().set_trial_system_attr)(trial_id, key, value)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return retrying(super().get_trial)(trial_id)

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return retrying(super().get_all_trials)(study_id, deepcopy, states)

    def get_n_trials(self, study_id: int,
                     state: tuple[TrialState, ...] | TrialState | None = None) -> int:
        return retrying(super().get_n_trials)(study_id, state)

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        return retrying(super().get_best_trial)(study_id)

    def get_trial_params(self, trial_id: int) -> dict[str, Any]:
        return retrying(super().get_trial_params)(trial_id)

    def get_trial_user_attrs(self, trial_id: int) -> dict[str, Any]:
        return retrying(super().get_trial_user_attrs)(trial_id)

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        return retrying(super().get_trial_system_attrs)(trial_id)

    def record_heartbeat(self, trial_id: int) -> None:
        return retrying(super().record_heartbeat)(trial_id)

    def _create_new_trial(self, study_id: int,
                          template_trial: FrozenTrial | None = None) -> FrozenTrial:
        return retrying(super()._create_new_trial)(study_id, template_trial)

    def _set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                         distribution: BaseDistribution,
                         previous_distribution: BaseDistribution | None) -> None:
        return retrying(super()._set_trial_param)(trial_id, param_name, param_value_internal,
                                                  distribution, previous_distribution)

    def _get_best_trial_id(self, study_id: int, direction: StudyDirection) -> int:
        return retrying(super()._get_best_trial_id)(study_id, direction)

    def _get_trials(self, study_id: int, states: Container[TrialState] | None,
                    included_trial_ids: set[int],
                    trial_id_greater_than: int) -> list[FrozenTrial]:
        return retrying(super()._get_trials)(study_id, states, included_trial_ids,
                                             trial_id_greater_than)


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
        with _creation_lock(url, lock_file, kwargs.get("engine_kwargs") or {}):
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

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        """The best trial, feasible first: ``Study.best_trial`` skips infeasible trials
        (Optuna's constraints), but optuna-dashboard's "Best Trial" asks the storage, which
        does not; a collapsed trial with the lowest value was shown as best there. With no
        feasible trial yet, the storage's answer stands: the dashboard needs one to draw."""
        best = super().get_best_trial(study_id)
        if all(c <= 0 for c in best.system_attrs.get(optuna_private.CONSTRAINTS_KEY, ())):
            return best
        complete = self.get_all_trials(study_id, states=(TrialState.COMPLETE,))
        feasible = [t for t in complete if all(
            c <= 0 for c in t.system_attrs.get(optuna_private.CONSTRAINTS_KEY, ()))]
        if not feasible:
            return best
        pick = max if self.get_study_directions(study_id)[0] == StudyDirection.MAXIMIZE else min
        return pick(feasible, key=lambda t: float(t.value or 0.0))

    def check_room(self) -> None:
        """DatabaseFull once any process sharing this database found it full (it emptied the
        reserve): nothing more should be written than what stops the run."""
        if self.reserve is not None and self.reserve.released():
            raise DatabaseFull(full_message(
                f"its disk filled up: {self.reserve.path.name} is used", _shown_url(self)))

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
            with _FileLock.of(self.lock_file).held():
                yield
            return
        named = _named_lock(self.engine.dialect.name, f"vae-sweep:{study_name}")
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
