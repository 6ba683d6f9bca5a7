"""Storage: one contract for every backend we support (SQLite and a journal file always;
PostgreSQL and MySQL when $VAE_SWEEP_TEST_POSTGRES_URL / $VAE_SWEEP_TEST_MYSQL_URL name a
database), bad URLs refused before anything is written, and two worker processes sharing
one SQLite or journal file."""

import contextlib
import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep import optuna_private
from sweep.optuna_private import CONSTRAINTS_KEY
from sweep.space import Space, load_space
from sweep.storage.database import (
    DEFAULT_STORAGE,
    STORAGE_ENV,
    StorageError,
    artifact_dir,
    checkpoint_dir,
    open_storage,
    resolve_storage_url,
    safe_name,
)
from sweep.storage.names import portable_name, reserved

ROOT = Path(__file__).resolve().parents[1]
SERVERS = {"postgresql": "VAE_SWEEP_TEST_POSTGRES_URL", "mysql": "VAE_SWEEP_TEST_MYSQL_URL"}


FILES = {"sqlite": "sqlite:///{tmp}/new-dir/study.db",
         "journal": "journal://{tmp}/new-dir/study.log"}


def server(url: str) -> bool:
    """Whether ``url`` is a database server's (it outlives the test: its studies are deleted)."""
    return not url.startswith(("sqlite", "journal"))


@pytest.fixture(params=[*FILES, *SERVERS])
def url(request, tmp_path):
    if request.param in FILES:  # the directory is created too
        return FILES[request.param].format(tmp=tmp_path)
    server = os.environ.get(SERVERS[request.param])
    if not server:
        pytest.skip(f"set {SERVERS[request.param]} to a {request.param} URL to test it")
    return server


def test_storage_contract(url):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = f"contract-{uuid.uuid4().hex[:8]}"  # a server database outlives the test
    stale: list[int] = []
    storage = open_storage(url, heartbeat_interval=1, grace_period=1,
                           stale_trial_callback=lambda study, t: stale.append(t.number))
    assert storage.get_heartbeat_interval() == 1  # heartbeats on: dead workers' trials fail
    study = optuna.create_study(study_name=name, storage=storage)
    try:
        space = load_space(None)
        study.set_user_attr("settings", {"space": space.to_dict(), "goal": 3})
        study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=3)

        reader = open_storage(url, heartbeat_interval=None)
        assert reader.get_heartbeat_interval() is None
        again = optuna.load_study(study_name=name, storage=reader)
        trials = again.get_trials()
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
        assert [t.params for t in trials] == [t.params for t in study.get_trials()]
        settings = again.user_attrs["settings"]
        assert settings["goal"] == 3 and Space.from_dict(settings["space"]) == space
        assert list(settings["space"]["search"]) == list(space.params)  # order survives

        # A worker that beat once and died: after the grace period Optuna fails its trial
        # and calls the callback (what RetryHeartbeatStaleTrialCallback relies on).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ask() warns that heartbeats suit optimize()
            dead = study.ask()
        # what optimize()'s heartbeat thread does
        storage.record_heartbeat(optuna_private.trial_id(dead))
        deadline = time.monotonic() + 30
        while not stale:  # until the grace period has passed on the database's clock
            assert time.monotonic() < deadline, "the dead worker's trial never went stale"
            time.sleep(0.1)
            optuna.storages.fail_stale_trials(study)
        assert stale == [dead.number]
        assert again.get_trials()[dead.number].state == TrialState.FAIL
        if url.startswith("sqlite"):
            db = url.removeprefix("sqlite:///")
            with sqlite3.connect(db) as con:
                assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        if server(url):
            optuna.delete_study(study_name=name, storage=storage)


@pytest.mark.parametrize("backend", FILES)
def test_the_best_trial_the_dashboard_asks_for_is_feasible_once_one_is(tmp_path, backend):
    storage = open_storage(FILES[backend].format(tmp=tmp_path), heartbeat_interval=None)
    study = optuna.create_study(storage=storage)

    def add(value: float, constraint: float) -> int:
        trial = optuna.trial.create_trial(value=value, system_attrs={CONSTRAINTS_KEY: [constraint]})
        study.add_trial(trial)
        return study.trials[-1].number

    collapsed = add(1.0, 1.0)  # the lowest value, but no active unit
    sid = optuna_private.study_id(study)
    assert storage.get_best_trial(sid).number == collapsed  # none feasible yet
    kept, _ = add(3.0, 0.0), add(2.5, 0.5)
    assert storage.get_best_trial(sid).number == kept == study.best_trial.number


@pytest.mark.parametrize("bad", [
    "nope://x", "not a url", "", "sqlite://", "sqlite:///:memory:",
    "sqlite:///{tmp}/afile/x.db", "sqlite:///{tmp}/afile/sub/x.db", "sqlite:///{tmp}/notdb.db",
    "sqlite:///{tmp}", "journal://", "journal://{tmp}/afile/x.log", "journal://{tmp}/afile/sub/x.log",
    "journal://{tmp}/notdb.db", "journal://{tmp}", "journal://{tmp}/real.db", "{tmp}/real.db",
])
def test_bad_urls_raise_before_anything_is_written(tmp_path, monkeypatch, bad):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a file, not a directory")
    (tmp_path / "notdb.db").write_text("not an SQLite database\n")
    sqlite3.connect(tmp_path / "real.db").execute("CREATE TABLE t (x)").connection.close()
    before = {p: p.read_bytes() for p in tmp_path.rglob("*")}
    url = bad.format(tmp=tmp_path)
    with pytest.raises(StorageError) as err:
        open_storage(url)
    message = str(err.value)
    assert "\n" not in message and url in message
    assert {p: p.read_bytes() for p in tmp_path.rglob("*")} == before


def test_passwords_stay_out_of_messages():
    for url in ("nope://user:s3cret@host/db", "postgresql+nodriver://user:s3cret@host/db"):
        with pytest.raises(StorageError) as err:
            open_storage(url)
        assert "s3cret" not in str(err.value) and "user:***@host" in str(err.value)


def test_resolve_storage_url_prefers_argument_then_environment(monkeypatch):
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    assert resolve_storage_url(None) == DEFAULT_STORAGE == "sqlite:///sweeps.db"
    monkeypatch.setenv(STORAGE_ENV, "sqlite:///from-env.db")
    assert resolve_storage_url(None) == "sqlite:///from-env.db"
    assert resolve_storage_url("sqlite:///from-arg.db") == "sqlite:///from-arg.db"


def test_artifacts_and_checkpoints_sit_beside_the_database(tmp_path):
    url = f"sqlite:///{tmp_path}/runs/sweeps.db"
    assert artifact_dir(url) == tmp_path / "runs" / "sweeps-artifacts"
    assert checkpoint_dir(url, "vae-cifar10") == tmp_path / "runs/sweeps-checkpoints/vae-cifar10"
    assert not (tmp_path / "runs").exists()  # paths only: nothing is created
    assert artifact_dir("sqlite:///sweeps.db") == Path("sweeps-artifacts")
    assert checkpoint_dir("sqlite:///a/b.db", "s") == Path("a/b-checkpoints/s")
    assert artifact_dir(f"journal://{tmp_path}/runs/study.log") == tmp_path / "runs/study-artifacts"
    assert checkpoint_dir("journal://a/b.log", "s") == Path("a/b-checkpoints/s")
    assert artifact_dir("postgresql://h/db") == Path("vae-sweep-artifacts")
    assert checkpoint_dir("mysql://h/db", "s") == Path("vae-sweep-checkpoints/s")
    # study names that are not file names stay inside the root and apart from each other
    root = tmp_path / "runs" / "sweeps-checkpoints"
    odd = {checkpoint_dir(url, n) for n in ("a/b", "a_b", "..", "../x", "")}
    assert len(odd) == 5 and all(p.parent == root for p in odd)
    with pytest.raises(StorageError):
        artifact_dir("nope://x")


@pytest.mark.parametrize("name", ["CON", "nul", "Com1", "LPT9.txt", "aux .db", "..\\..\\WIN",
                                  "a\\b", "a/b"])
def test_study_names_make_folder_names_safe_on_every_platform(name):
    safe = safe_name(name)
    assert safe != name and not reserved(safe) and re.fullmatch(r"[A-Za-z0-9._-]+", safe)
    assert safe_name("a\\b") != safe_name("a/b") != safe_name("a_b")  # apart, hashed
    # The readable names (report-NAME) keep one folder: "\\" is a separator as "/" is.
    assert portable_name(f"report-{name}") == "report-" + name.replace("\\", "_").replace(
        "/", "_")
    assert portable_name('a:b*c?d"e<f>g|h\x01') == "a_b_c_d_e_f_g_h_"


def test_a_reserved_study_name_is_refused_before_anything_is_written(tmp_path, monkeypatch,
                                                                     capsys):
    from sweep.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["start", "--study", "NUL", "--data", "synthetic", "--n-trials", "1",
                 "--storage", "sqlite:///s.db"]) == 2
    assert capsys.readouterr().err == (
        "python -m sweep start: error: --study 'NUL' is a device name on Windows (CON, PRN, "
        "AUX, NUL, COM0-9, LPT0-9): choose another\n")
    assert list(tmp_path.iterdir()) == []
    assert not reserved("CONSOLE") and not reserved("vae-con") and reserved("con.tar.gz")


WORKER = """
import os, sys, time
from pathlib import Path
import optuna
from sweep.storage.database import open_storage

url, ready, me = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.load_study(study_name="race", storage=open_storage(url, heartbeat_interval=1))
(ready / me).touch()
deadline = time.monotonic() + 30
while len(list(ready.iterdir())) < 2 and time.monotonic() < deadline:
    time.sleep(0.01)  # both workers start their trials together: the writes collide

def objective(trial):
    for i in range(5):  # several small writes per trial, as a real trial's records make
        trial.set_user_attr(f"attr{i}", i)
    trial.set_user_attr("pid", os.getpid())
    return trial.suggest_float("x", 0, 1)

study.optimize(objective, n_trials=6)
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", FILES)
def test_two_worker_processes_share_one_file(tmp_path, backend):
    url = FILES[backend].format(tmp=tmp_path)
    optuna.create_study(study_name="race", storage=open_storage(url))
    ready = tmp_path / "ready"
    ready.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, str(ready), str(i)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert "database is locked" not in out + err
    study = optuna.load_study(study_name="race", storage=open_storage(url))
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.COMPLETE] * 12
    assert len({t.user_attrs["pid"] for t in study.get_trials()}) == 2


ASKER = """
import sys, time
from pathlib import Path
import optuna
from sweep.storage.database import open_storage

url, sync, me, rounds = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.load_study(study_name=sys.argv[5],
                          storage=open_storage(url, heartbeat_interval=None))
for r in range(rounds):
    go = sync / f"go-{r}"
    while not go.exists():
        pass  # spin: the three ask() calls start within a millisecond of each other
    number = study.ask().number
    # Written aside, then renamed: the test reads a "got" file as soon as it appears.
    (sync / f"tmp-{r}-{me}").write_text(str(number))
    (sync / f"tmp-{r}-{me}").rename(sync / f"got-{r}-{me}")
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", [*FILES, "postgresql", "mysql"])
def test_three_processes_asking_at_once_never_share_a_waiting_trial(tmp_path, backend):
    """Optuna pops a WAITING trial with a read then a write; SQLite has no row lock to hold
    between them, so without the claim lock 2-3 of the 3 processes got the same trial (a
    journal's replay gives it to the first record)."""
    if backend in FILES:
        url = FILES[backend].format(tmp=tmp_path)
    else:
        url = os.environ.get(SERVERS[backend]) or pytest.skip(f"set {SERVERS[backend]}")
    storage = open_storage(url, heartbeat_interval=None)
    name = f"claim-{uuid.uuid4().hex[:8]}"  # a server database outlives the test
    study = optuna.create_study(study_name=name, storage=storage)
    sync = tmp_path / "sync"
    sync.mkdir()
    rounds = 10
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    logs = [tmp_path / f"asker-{i}.err" for i in range(3)]  # their stderr, for the messages
    procs = [subprocess.Popen([sys.executable, "-c", ASKER, url, str(sync), str(i), str(rounds),
                               name], cwd=ROOT, env=env, stderr=logs[i].open("w"))
             for i in range(3)]

    def stderr() -> str:
        return "\n".join(log.read_text() for log in logs)

    try:
        shared = []
        for r in range(rounds):
            study.enqueue_trial({})
            waiting = study.get_trials(states=(TrialState.WAITING,))[0].number
            (sync / f"go-{r}").touch()
            deadline = time.monotonic() + 60
            while len(list(sync.glob(f"got-{r}-*"))) < 3:
                assert time.monotonic() < deadline and all(
                    p.poll() in (None, 0) for p in procs), stderr()
                time.sleep(0.01)
            got = [int(p.read_text()) for p in sync.glob(f"got-{r}-*")]
            shared.append(got.count(waiting))
            for t in study.get_trials(states=(TrialState.RUNNING,)):
                study.tell(t.number, 0.0)
        # each round: exactly one process got the queued trial
        assert shared == [1] * rounds, stderr()
    finally:
        for p in procs:  # a failed round leaves the others spinning on a "go" that never comes
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=30)
            p.kill()
        if server(url):
            optuna.delete_study(study_name=name, storage=storage)


@pytest.mark.parametrize("installed,url,driver", [
    ({"psycopg2"}, "postgresql://u@h/db", "postgresql+psycopg2"),  # the [postgresql] extra
    ({"psycopg", "psycopg2"}, "postgresql://u@h/db", "postgresql+psycopg"),  # SQLAlchemy's own
    ({"pymysql"}, "mysql://u@h/db", "mysql+pymysql"),  # the [mysql] extra
    ({"psycopg"}, "postgresql+psycopg2://u@h/db", "postgresql+psycopg2"),  # named: kept
    (set(), "postgresql://u@h/db", "postgresql"),  # none: check_url names the missing one
])
def test_a_url_without_a_driver_gets_the_installed_one(monkeypatch, installed, url, driver):
    import importlib.util

    from sqlalchemy.engine import make_url

    from sweep.storage.database import _MODULES, with_driver

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: real("os") if name in {
        _MODULES[d] for d in installed} else None)
    assert with_driver(make_url(url)).drivername == driver


@pytest.mark.parametrize("url,extra", [
    ("postgresql://u@h/db", "postgresql"), ("postgresql+psycopg2://u@h/db", "postgresql"),
    ("mysql://u@h/db", "mysql"), ("mariadb+pymysql://u@h/db", "mysql"),
    ("mysql+mysqldb://u@h/db", None),  # a driver the extra does not install: no advice
])
def test_a_missing_driver_names_the_extra_that_installs_it(monkeypatch, url, extra):
    import importlib.util
    import sys

    from sweep.storage.database import _MODULES, check_url

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    for module in _MODULES.values():
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(StorageError, match="driver is not installed") as err:
        check_url(url)
    assert ("pip install -e '.[" in str(err.value)) == (extra is not None)
    if extra:
        assert str(err.value).endswith(f"; install it: pip install -e '.[{extra}]'")


def test_a_full_database_is_one_line_naming_it_and_never_retried(tmp_path):
    """Optuna wraps the driver's "database or disk is full" in a StorageInternalError that
    reads "An exception is raised during the commit": the whole chain is read."""
    import sqlalchemy.exc

    from sweep.errors import DatabaseFull
    from sweep.storage.retries import retrying, transient

    url = f"sqlite:///{tmp_path}/full.db"
    storage = open_storage(url, heartbeat_interval=None)
    calls = []

    def commit(self) -> None:
        calls.append(self)
        try:
            raise sqlalchemy.exc.OperationalError(
                "COMMIT", {}, sqlite3.OperationalError("database or disk is full"))
        except sqlalchemy.exc.OperationalError as err:
            raise optuna.exceptions.StorageInternalError(
                "An exception is raised during the commit. This typically happens due to "
                "invalid data in the commit, e.g. exceeding max length.") from err

    with pytest.raises(DatabaseFull) as caught:
        retrying(commit)(storage)
    assert calls == [storage]  # waiting does not make room: not retried
    assert not transient(caught.value.__cause__)
    message = str(caught.value)
    assert "\n" not in message and url in message and "database or disk is full" in message


def test_a_server_says_how_long_it_has_been_up(url):
    if not server(url):
        pytest.skip("a file has no server")
    assert 0 < open_storage(url, heartbeat_interval=None).uptime() < 10 * 365 * 86400
