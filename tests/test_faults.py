"""A study survives the faults of real machines: 3 workers, one killed with SIGKILL (and
replaced) and one stopped with SIGTERM mid-trial, a trial whose loss is NaN, and (on
PostgreSQL, when CI gives this test a server of its own to stop: .ci/databases) the
database down while they run, and while a fourth worker, a ``start --no-run`` and a
``status`` start (they wait for it, as the running workers do). The study finishes its
budget, every fault is in the trials' attrs, and no finished trial is lost or duplicated.
(Out of memory is raised in-process: tests/test_worker.py.)"""

import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from sweep.runner.progress import results
from sweep.storage.database import open_storage

ROOT = Path(__file__).resolve().parent.parent
TOML = """
objectives = ["mse"]
pruner = "none"
[fixed]
synthetic_size = 512
width = 8
depth = 2
latent_dim = 8
batch_size = 32
max_epochs = 2
recon_reduction = "sum"
kl_schedule = "linear"
kl_warmup_steps = 100000
[search.lr]
low = 1e-3
high = 3e-3
log = true
"""
GOAL = 6


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def wait_for(check, seconds: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"timed out; stderr:\n{log.read_text()}"
        time.sleep(0.2)


@pytest.fixture
def backend(tmp_path):
    # Never the server other tests share: this one is stopped, and they run in parallel.
    url = os.environ.get("VAE_SWEEP_TEST_POSTGRES_OUTAGE_URL")
    ctl = os.environ.get("VAE_SWEEP_TEST_POSTGRES_OUTAGE_CTL")
    if url and ctl:
        return url, ctl
    return f"sqlite:///{tmp_path}/faults.db", None


def outage(ctl: str, name: str, tmp_path: Path, common: dict,
           workers_log: Path) -> dict[str, tuple[subprocess.Popen, Path]]:
    """Stop the server, start a worker, a ``start --no-run`` of another study and a
    ``status`` while it is down, and bring it back once each, and the running workers, have
    said they wait (6 s at least: longer than the heartbeat grace, so every beat missed it
    and no trial may be failed as stale for that once the server is back). Returns those
    three processes, running, with the files their stderr goes to."""
    subprocess.run(shlex.split(ctl) + ["stop", "-m", "fast"], check=True, capture_output=True)
    down = time.monotonic()
    commands = {"worker": ["worker", "--study", name, "--workers", "1"],
                "start --no-run": ["start", "--study", f"{name}-b", "--space", "f.toml",
                                   "--data", "synthetic", "--n-trials", "1", "--no-run"],
                "status": ["status", "--study", name]}
    logs = {what: tmp_path / f"{what.split()[0]}.err" for what in commands}
    late = {what: subprocess.Popen([sys.executable, "-m", "sweep", *args],
                                   stdout=subprocess.DEVNULL, stderr=logs[what].open("w"),
                                   **common) for what, args in commands.items()}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() - down < 6 or not all(
                "storage unreachable" in log.read_text() for log in [*logs.values(), workers_log]):
            for what, proc in late.items():
                assert proc.poll() is None, f"{what} exited in the outage: {logs[what].read_text()}"
            assert time.monotonic() < deadline, {w: log.read_text() for w, log in logs.items()}
            time.sleep(0.2)
    finally:
        subprocess.run(shlex.split(ctl) + ["start"], check=True, capture_output=True)
    return {what: (proc, logs[what]) for what, proc in late.items()}


@pytest.mark.slow
def test_a_study_survives_kill_sigterm_nan_and_a_database_outage(tmp_path, backend):
    url, ctl = backend
    name = f"faults-{uuid.uuid4().hex[:6]}"  # a server database outlives the test
    (tmp_path / "f.toml").write_text(TOML)
    env = dict(os.environ, PYTHONPATH=str(ROOT), VAE_SWEEP_STORAGE=url)
    store = tmp_path / "store"
    common = dict(cwd=tmp_path, env=env, text=True)
    subprocess.run([sys.executable, "-m", "sweep", "start", "--study", name, "--space", "f.toml",
                    "--data", "synthetic", "--n-trials", str(GOAL), "--heartbeat", "1",
                    "--no-baseline", "--artifacts", str(store), "--no-run"], check=True,
                   capture_output=True, **common)
    storage = open_storage(url, heartbeat_interval=None)  # postgresql:// with psycopg2
    study = optuna.load_study(study_name=name, storage=storage)
    study.enqueue_trial({"lr": 1e-3})
    study.enqueue_trial({"lr": 1e-3 * 1.5})
    study.enqueue_trial({"lr": 1e12})  # outside the search, as enqueued trials may be: NaN
    # stderr to a file: the test reads it while the workers run (the outage's notice).
    log = tmp_path / "workers.err"
    with log.open("w") as stderr:
        workers = subprocess.Popen([sys.executable, "-m", "sweep", "worker", "--study", name,
                                    "--workers", "3"], stdout=subprocess.DEVNULL,
                                   stderr=stderr, **common)
    try:
        ckpts = store / "checkpoints"
        busy: list[int] = []

        def two_workers_mid_trial() -> bool:
            # Workers whose trial is running and has a checkpoint: the faults hit mid-trial.
            # Not the NaN trial's: it writes its first epoch's checkpoint before it is told
            # FAIL, and a kill in that window would test the kill twice and the NaN never.
            busy[:] = [int(t.user_attrs["worker"].rsplit(":", 1)[1])
                       for t in study.get_trials(states=(TrialState.RUNNING,))
                       if "worker" in t.user_attrs and t.params.get("lr", 0) < 1
                       and (ckpts / name / f"trial-{t.number}" / "last.ckpt").exists()]
            return len(busy) >= 2

        wait_for(two_workers_mid_trial, 240, workers, log)
        assert set(busy) <= set(children(workers.pid))
        os.kill(busy[0], signal.SIGKILL)
        os.kill(busy[1], signal.SIGTERM)
        if ctl:
            late = outage(ctl, name, tmp_path, common, log)
        workers.wait(timeout=400)
    finally:
        if workers.poll() is None:
            workers.kill()
    err = log.read_text()
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    assert workers.returncode == 0, err
    assert "killed by SIGKILL" in err and "stopped by SIGTERM" in err, err
    # The killed worker is replaced (the budget remained: its own trial was unfinished), the
    # stopped one is not; the final line counts the loss.
    assert "killed by SIGKILL; replaced by pid" in err, err
    assert "met its goal (6/6) despite the above: 1 worker lost, 1 replaced" in err, err
    assert "Traceback" not in err, err
    if ctl:
        assert "storage unreachable" in err and "storage reachable again" in err, err
        for what, (proc, late_log) in late.items():  # started in the outage: waited, worked
            proc.wait(timeout=400)
            late_err = late_log.read_text()
            assert proc.returncode == 0, f"{what}: {late_err}"
            assert "storage unreachable" in late_err and "reachable again" in late_err, late_err
        optuna.delete_study(study_name=f"{name}-b", storage=storage)
    states = Counter(t.state for t in trials)
    assert states[TrialState.RUNNING] == states[TrialState.WAITING] == 0, err
    assert results(trials) == GOAL, err
    reasons = [t.user_attrs.get("fail_reason", "") for t in trials if t.state == TrialState.FAIL]
    assert any(r.startswith("interrupted by SIGTERM") for r in reasons), reasons
    assert any(r.startswith("no heartbeat") for r in reasons), reasons
    assert any("nan" in r.lower() for r in reasons), [
        (t.number, t.state.name, t.params, t.user_attrs.get("retry_of")) for t in trials]
    reruns = [t for t in trials if "retry_of" in t.user_attrs]
    assert len(reruns) >= 2 and all(t.user_attrs["retry_reason"] for t in reruns)
    assert any(t.user_attrs.get("resumed_from") for t in reruns)
    # Each chain of re-runs (named by its first trial) ends in one result, never two.
    history = RetryHeartbeatStaleTrialCallback.retry_history
    retried = {n for t in trials for n in history(t)}
    roots = Counter((history(t) or [t.number])[0] for t in trials
                    if t.state != TrialState.FAIL or t.number not in retried)
    assert sum(roots.values()) == GOAL and max(roots.values()) == 1
    if not url.startswith("sqlite"):
        optuna.delete_study(study_name=name, storage=storage)


def _open_at_once(url: str, barrier, results) -> None:
    """One of several processes opening a new database at the same moment (forked)."""
    try:
        barrier.wait(timeout=60)
        storage = open_storage(url, heartbeat_interval=None)
        with storage.study_lock("two"):  # what start holds around create_study
            optuna.create_study(study_name="two", storage=storage, load_if_exists=True)
        results.put("ok")
    except Exception as err:  # the parent asserts on it: every line of it is the evidence
        results.put(f"{type(err).__name__}: {err}")


def _fresh_postgres_schema(server: str) -> str:
    """A URL on ``server``'s database whose tables go into a new, empty schema."""
    import sqlalchemy

    schema = f"race_{uuid.uuid4().hex[:8]}"
    engine = sqlalchemy.create_engine(open_storage(server, heartbeat_interval=None).url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    return str(sqlalchemy.engine.make_url(server).update_query_dict(
        {"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False))


@pytest.mark.parametrize("server", ["sqlite", "postgresql"])
def test_processes_opening_a_new_database_at_once_all_get_it(tmp_path, server):
    """RDBStorage creates its tables check-then-create: 4 processes released together on a
    new database failed with "table studies already exists" (SQLite, 4 of 5 rounds) or
    "duplicate key ... pg_type_typname_nsp_index" (PostgreSQL, 3 of 3) without the
    creation lock, so one of two concurrent `start`s lost its budget."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    for round_ in range(3):
        if server == "sqlite":
            url = f"sqlite:///{tmp_path}/race-{round_}.db"
        else:
            pg = os.environ.get("VAE_SWEEP_TEST_POSTGRES_URL") or pytest.skip(
                "set VAE_SWEEP_TEST_POSTGRES_URL to race on PostgreSQL")
            url = _fresh_postgres_schema(pg)
        barrier, results = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open_at_once, args=(url, barrier, results))
                 for _ in range(4)]
        for p in procs:
            p.start()
        got = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert got == ["ok"] * 4, got
        names = [s.study_name for s in optuna.get_all_study_summaries(
            open_storage(url, heartbeat_interval=None), include_best_trial=False)]
        assert names == ["two"]
