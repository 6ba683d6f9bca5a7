"""A full SQLite disk: the reserve beside the database is made by writers only, emptied by
the first write that finds the database full (which then fits), and read by every worker
as "stop": its trial ends FAIL with one re-run queued, none is left RUNNING. A disk without
room for the reserve is one line, exit 1, before anything is written."""

import errno
import os
import shutil
import sqlite3

import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import TrialState
from test_worker import make, worker_of

import sweep.runner.objective
from sweep.cli import main
from sweep.errors import DatabaseFull
from sweep.runner.heartbeat import open_with_heartbeat
from sweep.storage.database import open_storage
from sweep.storage.reserve import RESERVE_BYTES, Reserve
from sweep.storage.retries import retrying


def _full() -> optuna.exceptions.StorageInternalError:
    """What Optuna raises when SQLite cannot commit on a full disk."""
    try:
        raise sqlalchemy.exc.OperationalError(
            "COMMIT", {}, sqlite3.OperationalError("database or disk is full"))
    except sqlalchemy.exc.OperationalError as err:
        try:
            raise optuna.exceptions.StorageInternalError("during the commit") from err
        except optuna.exceptions.StorageInternalError as wrapped:
            return wrapped


def test_writers_keep_an_allocated_reserve_and_readers_none(tmp_path):
    open_storage(f"sqlite:///{tmp_path}/r.db", heartbeat_interval=None)
    assert not (tmp_path / "r.db-reserve").exists()
    storage = open_with_heartbeat(f"sqlite:///{tmp_path}/w.db", 1)
    kept = tmp_path / "w.db-reserve"
    assert kept.stat().st_size == RESERVE_BYTES
    assert kept.stat().st_blocks * 512 >= RESERVE_BYTES  # allocated, not a sparse file
    storage.check_room()  # armed: nothing to say


def test_the_first_full_write_empties_the_reserve_and_fits_the_next_does_not(tmp_path):
    storage = open_with_heartbeat(f"sqlite:///{tmp_path}/w.db", 1)
    kept = tmp_path / "w.db-reserve"
    calls = []
    room_after_release = [True]

    class Store:  # a storage method that finds the disk full until the reserve is freed
        reserve = storage.reserve
        url = storage.url

        def write(self) -> str:
            calls.append(kept.stat().st_size)
            if calls[-1] or not room_after_release[0]:
                raise _full()
            return "written"

    assert retrying(Store().write)() == "written"
    assert calls == [RESERVE_BYTES, 0]  # tried again once, in the room the reserve freed
    with pytest.raises(DatabaseFull, match=r"w\.db is full \(its disk filled up"):
        storage.check_room()  # every worker on this file reads it as "stop"
    calls.clear()
    room_after_release[0] = False
    with pytest.raises(DatabaseFull, match="w.db is full .*database or disk is full"):
        retrying(Store().write)()
    assert calls == [0]  # the reserve is spent: not tried again, and never waited out


@pytest.mark.slow
def test_an_empty_reserve_stops_the_worker_with_its_trial_failed_and_re_queued(
        tmp_path, tiny, images, monkeypatch):
    """Another process found the database full mid-epoch: this worker's trial is FAIL with
    its re-run queued, the worker stops, and takes no further trial."""
    study, storage, settings, stores = make(tmp_path, tiny, goal=3)
    fit = sweep.runner.objective.fit

    def other_process_fills_the_disk(cfg, **kw):
        assert Reserve(tmp_path / "w.db").release()
        return fit(cfg, **kw)

    monkeypatch.setattr(sweep.runner.objective, "fit", other_process_fills_the_disk)
    with pytest.raises(DatabaseFull, match="is full"):
        worker_of(study, storage, settings, stores, images).run(timeout=None)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[0].user_attrs["fail_reason"] == "the database is full"
    assert trials[1].user_attrs["retry_of"] == 0


@pytest.mark.slow
def test_a_trial_half_taken_when_the_database_fills_is_given_back(tmp_path, tiny, images,
                                                                  monkeypatch):
    study, storage, settings, stores = make(tmp_path, tiny, goal=3)

    def full(trial_id):
        raise DatabaseFull("the database is full (database or disk is full)")

    monkeypatch.setattr(storage, "record_heartbeat", full)
    with pytest.raises(DatabaseFull):
        worker_of(study, storage, settings, stores, images).run(timeout=None)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[0].user_attrs["fail_reason"] == "the database is full"


def test_an_emptied_reserve_is_armed_again_where_the_database_moved(tmp_path):
    storage = open_with_heartbeat(f"sqlite:///{tmp_path}/w.db", 1)
    optuna.create_study(study_name="s", storage=storage)
    assert storage.reserve is not None and storage.reserve.release()
    storage.engine.dispose()  # the run ended
    (tmp_path / "big").mkdir()
    for name in ("w.db", "w.db-wal"):  # what the message says to move
        if (tmp_path / name).exists():
            os.replace(tmp_path / name, tmp_path / "big" / name)
    moved = open_with_heartbeat(f"sqlite:///{tmp_path}/big/w.db", 1)
    assert (tmp_path / "big" / "w.db-reserve").stat().st_size == RESERVE_BYTES
    assert optuna.load_study(study_name="s", storage=moved).study_name == "s"
    open_with_heartbeat(f"sqlite:///{tmp_path}/w.db", 1)  # in place, once room was freed
    assert (tmp_path / "w.db-reserve").stat().st_size == RESERVE_BYTES


def test_an_emptied_reserve_is_not_taken_back_while_the_disk_is_still_full(tmp_path,
                                                                         monkeypatch):
    """A writer opening the database just after it filled up would take back the room the
    stopping workers write their trials' FAIL in."""
    storage = open_with_heartbeat(f"sqlite:///{tmp_path}/w.db", 1)
    assert storage.reserve is not None and storage.reserve.release()
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: usage._replace(free=2 * RESERVE_BYTES - 1))
    with pytest.raises(DatabaseFull, match="w.db-reserve was emptied when the disk filled up"):
        open_with_heartbeat(f"sqlite:///{tmp_path}/w.db", 1)
    assert (tmp_path / "w.db-reserve").stat().st_size == 0
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=10**9))
    open_with_heartbeat(f"sqlite:///{tmp_path}/w.db", 1)  # space freed: armed again
    assert (tmp_path / "w.db-reserve").stat().st_size == RESERVE_BYTES


def test_no_room_for_the_reserve_is_one_line_exit_1_and_nothing_held(tmp_path, capsys,
                                                                    monkeypatch):
    def no_room(fd, offset, size):
        os.ftruncate(fd, size // 2)  # what a file system may leave of a failed allocation
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_room)
    url = f"sqlite:///{tmp_path}/s.db"
    assert main(["start", "--storage", url, "--data", "synthetic", "--n-trials", "1"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"the database {url} is full (no room for s.db-reserve" in lines[0]
    assert not (tmp_path / "s.db-reserve").exists()  # the half allocated given back
    assert optuna.get_all_study_summaries(f"sqlite:///{tmp_path}/s.db") == []


def test_tables_that_do_not_fit_beside_the_reserve_give_its_room_back(tmp_path, monkeypatch):
    """Measured on a 700 KB tmpfs: the reserve fitted, the tables did not; the line named
    "(this storage)" and the reserve kept its 512 KB of the user's full disk."""
    def no_room(self, url, **kwargs):
        raise _full()

    monkeypatch.setattr(optuna.storages.RDBStorage, "__init__", no_room)
    url = f"sqlite:///{tmp_path}/w.db"
    with pytest.raises(DatabaseFull) as caught:
        open_with_heartbeat(url, 1)
    assert str(caught.value).startswith(f"the database {url} is full (")
    assert "database or disk is full" in str(caught.value)
    assert (tmp_path / "w.db-reserve").stat().st_size == 0
