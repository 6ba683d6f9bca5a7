"""Database outages: one place (``sweep.storage.retries.transient``) tells an outage, to
wait out, from storage that can never work; opening a storage waits an outage out with one
line and a bounded backoff, and gives up at once on bad input; no trial is stale while the
server is just back. (Real outages of a PostgreSQL server: tests/test_faults.py.)"""

import re
import sqlite3
import time
import warnings

import optuna
import pytest
from optuna.trial import TrialState

from sweep import optuna_private
from sweep.storage.database import StorageError, open_storage


def _driver_error(driver: str, message: str, code: int | None = None) -> Exception:
    """``message`` as SQLAlchemy raises it from ``driver`` (what every storage call sees)."""
    import psycopg2
    import pymysql
    import sqlalchemy.exc

    orig: Exception = {"psycopg2": lambda: psycopg2.OperationalError(message),
                       "pymysql": lambda: pymysql.err.OperationalError(code, message),
                       "sqlite3": lambda: sqlite3.OperationalError(message)}[driver]()
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, orig)


PG = 'connection to server at "127.0.0.1", port 5432 failed: '
OUTAGES = [
    ("psycopg2", PG + "Connection refused\n\tIs the server running on that host?", None),
    ("psycopg2", PG + "FATAL:  the database system is shutting down", None),
    ("psycopg2", PG + "FATAL:  the database system is starting up", None),
    ("psycopg2", "server closed the connection unexpectedly\n\tThis probably means...", None),
    ("psycopg2", "terminating connection due to administrator command", None),
    ("psycopg2", PG + "timeout expired", None),
    ("psycopg2", PG + "FATAL:  sorry, too many clients already", None),
    ("psycopg2", 'could not translate host name "db" to address: Temporary failure in name '
                 "resolution", None),
    ("pymysql", "Can't connect to MySQL server on '127.0.0.1' ([Errno 111] Connection refused)",
     2003),
    ("pymysql", "Lost connection to MySQL server during query", 2013),
    ("pymysql", "MySQL server has gone away", 2006),
    ("sqlite3", "database is locked", None),
]
NEVER_WORKS = [
    ("psycopg2", PG + 'FATAL:  password authentication failed for user "sweep"', None),
    ("psycopg2", PG + "fe_sendauth: no password supplied", None),
    ("psycopg2", PG + 'FATAL:  database "sweeps" does not exist', None),
    ("psycopg2", PG + 'FATAL:  role "sweep" does not exist', None),
    ("psycopg2", PG + 'FATAL:  no pg_hba.conf entry for host "10.0.0.2", user "sweep"', None),
    ("psycopg2", 'could not translate host name "dbb" to address: Name or service not known',
     None),
    ("pymysql", "Access denied for user 'sweep'@'10.0.0.2' (using password: YES)", 1045),
    ("pymysql", "Unknown database 'sweeps'", 1049),
    ("sqlite3", "unable to open database file", None),
    ("sqlite3", "attempt to write a readonly database", None),
    ("sqlite3", "database or disk is full", None),
]


@pytest.mark.parametrize("driver,message,code", OUTAGES + NEVER_WORKS)
def test_one_place_tells_an_outage_from_storage_that_can_never_work(driver, message, code):
    from optuna.exceptions import StorageInternalError

    from sweep.storage.retries import transient

    outage = (driver, message, code) in OUTAGES
    err = _driver_error(driver, message, code)
    assert transient(err) is outage
    try:  # as Optuna raises it from a commit: the driver's error two levels down
        raise StorageInternalError("An exception is raised during the commit.") from err
    except StorageInternalError as wrapped:
        assert transient(wrapped) is outage
    assert not transient(ValueError("Connection refused"))  # not from the database at all


@pytest.fixture
def quick_outages(monkeypatch):
    """The outage wait in tenths of a second, not minutes, and this test's own outage
    notices (the process-wide ones would carry an unended outage into the next test)."""
    import sweep.storage.retries

    monkeypatch.setattr(sweep.storage.retries, "OUTAGE", sweep.storage.retries.Outage())
    monkeypatch.setenv("VAE_SWEEP_OUTAGE_WAIT_S", "0.3")
    monkeypatch.setattr(sweep.storage.retries, "BACKOFF_S", (0.05,))


def test_opening_storage_waits_out_an_outage_with_one_line(tmp_path, monkeypatch, capsys,
                                                           quick_outages):
    import sweep.storage.sweep_storage

    real = sweep.storage.sweep_storage.SweepStorage.__init__
    down = [_driver_error("psycopg2", PG + "Connection refused")] * 2

    def after_two_refusals(self, *args, **kwargs):
        if down:
            raise down.pop()
        real(self, *args, **kwargs)

    monkeypatch.setattr(sweep.storage.sweep_storage.SweepStorage, "__init__", after_two_refusals)
    storage = open_storage(f"sqlite:///{tmp_path}/s.db", heartbeat_interval=None)
    assert storage.get_all_studies() == [] and not down
    lines = capsys.readouterr().err.splitlines()
    assert [re.sub(r" \(.*| \d+ s$", "", line) for line in lines] == [
        "storage unreachable", "storage reachable again after"]


def test_opening_storage_gives_up_after_the_outage_wait_and_at_once_on_bad_input(
        monkeypatch, capsys, quick_outages):
    import sweep.storage.sweep_storage
    from sweep.errors import BAD_INPUT, RunError, StorageUnreachable

    calls = []

    def refuse(message):
        def init(self, *args, **kwargs):
            calls.append(message)
            raise _driver_error("psycopg2", PG + message)
        return init

    url = "postgresql+psycopg2://sweep:s3cret@127.0.0.1:5432/sweeps"
    monkeypatch.setattr(sweep.storage.sweep_storage.SweepStorage, "__init__",
                        refuse("Connection refused"))
    started = time.monotonic()
    with pytest.raises(StorageUnreachable) as down:
        open_storage(url)
    assert 0.3 <= time.monotonic() - started < 5 and len(calls) > 2
    assert isinstance(down.value, RunError) and not isinstance(down.value, BAD_INPUT)
    assert "still unreachable after 0 s" in str(down.value) and "s3cret" not in str(down.value)
    assert capsys.readouterr().err.count("storage unreachable") == 1

    calls.clear()
    monkeypatch.setattr(sweep.storage.sweep_storage.SweepStorage, "__init__",
                        refuse('FATAL:  password authentication failed for user "sweep"'))
    with pytest.raises(StorageError, match="cannot open storage: .*password authentication"):
        open_storage(url)
    assert len(calls) == 1 and "storage unreachable" not in capsys.readouterr().err


def test_no_trial_is_stale_while_the_server_is_just_back(tmp_path, monkeypatch):
    """A process whose first query came after an outage did not see it: the server's uptime
    tells it every heartbeat was cut, so it fails no trial until they could beat again."""
    import sweep.storage.retries

    # None seen here.
    monkeypatch.setattr(sweep.storage.retries, "OUTAGE", sweep.storage.retries.Outage())
    storage = open_storage(f"sqlite:///{tmp_path}/s.db", heartbeat_interval=1, grace_period=1)
    assert storage.uptime() == float("inf")  # SQLite has no server to restart
    study = optuna.create_study(storage=storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ask() warns that heartbeats suit optimize()
        trial = study.ask()
    storage.record_heartbeat(optuna_private.trial_id(trial))
    with sqlite3.connect(tmp_path / "s.db") as db:  # its last beat 5 s ago: stale by now
        db.execute("UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-5 seconds')")
    settle = 1 + 1 + sweep.storage.retries.BACKOFF_S[-1]
    monkeypatch.setattr(type(storage), "uptime", lambda self: settle - 1)
    optuna.storages.fail_stale_trials(study)
    assert study.trials[0].state == TrialState.RUNNING
    monkeypatch.setattr(type(storage), "uptime", lambda self: settle + 1)
    optuna.storages.fail_stale_trials(study)
    assert study.trials[0].state == TrialState.FAIL

