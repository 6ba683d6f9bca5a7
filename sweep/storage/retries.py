"""Database outages: telling one from storage that can never work (``transient``), waiting
it out (``retrying``: tenacity's retries, 0.5 s doubling to 8 s between tries, for at most
``sweep.storage.outages.outage_wait_s()``, with one line on stderr when the outage starts
and one when it ends), and ``RetriedRDBStorage``, Optuna's RDBStorage with every call a
worker makes retried that way. A full disk is never an outage: ``DatabaseFull``, after the
first full write was given the reserve's room (``sweep.storage.reserve``).
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Callable, Container, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import optuna
import sqlalchemy
import sqlalchemy.exc
import tenacity
from optuna.distributions import BaseDistribution
from optuna.storages import RDBStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

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


def shown_url(storage: object) -> str:
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


class Outage:
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


OUTAGE = Outage()  # per process: every storage of the process sees the same database go


def retrying(call: Callable[..., _T]) -> Callable[..., _T]:
    """``call`` retried through outages (tenacity: the waits of BACKOFF_S, the last one
    repeated, for outage_wait_s() at most)."""

    # The storage whose method this is (``retrying(super().get_trial)``), or else the first
    # argument: its URL names the database, its reserve gives a full disk's last writes
    # their room.
    owner = getattr(call, "__self__", None)

    @functools.wraps(call)
    def wrapper(*args: Any, **kwargs: Any) -> _T:
        limit = outage_wait_s()  # read at each call: a test or a caller may set it
        backoff = tenacity.wait_chain(*(tenacity.wait_fixed(s) for s in BACKOFF_S))

        def wait(state: tenacity.RetryCallState) -> float:
            # The last try falls on the deadline itself, not up to 8 s past it.
            return min(backoff(state), max(0.0, limit - (time.monotonic() - state.start_time)))

        def attempt() -> _T:
            return _in_reserve(owner, call, *args, **kwargs)

        result = tenacity.Retrying(
            retry=tenacity.retry_if_exception(transient), stop=tenacity.stop_after_delay(limit),
            wait=wait, before_sleep=_outage_seen, reraise=True)(attempt)
        OUTAGE.recovered()
        return result

    return wrapper


def _outage_seen(state: tenacity.RetryCallState) -> None:
    assert state.outcome is not None  # tenacity sleeps only after a failed attempt
    err = state.outcome.exception()
    assert err is not None
    OUTAGE.failed(err)


def _in_reserve(owner: object, call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``call``; should it find the disk full, once more in the room the reserve frees, and
    then ``DatabaseFull`` (waiting does not make room: never retried as an outage)."""
    try:
        return call(*args, **kwargs)
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as err:
        if not full_disk(err):
            raise
        # The first write to find the disk full frees the reserve and is tried again in
        # that room (SQLite rolled it back whole); the worker sees the empty reserve at its
        # next step and stops (SweepStorage.check_room).
        reserve = getattr(owner, "reserve", None)
        if isinstance(reserve, Reserve) and reserve.release():
            return _in_reserve(owner, call, *args, **kwargs)
        where = shown_url(owner if owner is not None else args[0] if args else None)
        raise DatabaseFull(full_message(err, where)) from err


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
