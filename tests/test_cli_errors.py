"""Bad input, as a user types it: exit 2, one line on stderr naming the bad key or value, and
nothing written; start refuses a bad sweep file before it imports torch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta
from optuna_dashboard import get_note
from test_cli import ROOT, sweep

BAD = [
    # train
    (["train", "--set", "lr=inf"], "lr"),
    (["train", "--set", "kl_weight=inf"], "kl_weight"),
    (["train", "--set", "lr=-1"], "lr"),
    (["train", "--set", "seed=-1"], "seed"),
    (["train", "--set", "latent_dim=1000000000"], "latent_dim"),
    (["train", "--set", "latent_dim=0"], "latent_dim"),
    (["train", "--set", "kl_schedule=exponential"], "kl_schedule"),
    (["train", "--set", "nope=3"], "nope"),
    (["train", "--set", "lr"], "lr"),
    (["train", "--json", "/missing/dir/m.json"], "--json"),
    (["train", "--data", "no-such"], "no-such"),
    (["train", "--data", "folder:empty"], "dataset"),
    (["train", "--threads", "0"], "--threads"),
    (["train", "--config", "missing.toml"], "missing.toml"),
    (["train", "--save", "/missing/dir/w.pt"], "--save"),
    # outputs that cannot be written: refused before training, not after it
    (["train", "--json", "/dev/null/m.json"], "--json"),
    (["train", "--save", "empty"], "--save"),
    (["train", "--log-dir", "/dev/null/logs"], "--log-dir"),
    (["bench", "--json", "empty"], "--json"),
    (["bench", "--json", "/dev/null/b.json"], "--json"),
    (["export", "--out", "/dev/null/x"], "--out"),
    # /proc takes no new file, even from root (who passes every permission check)
    (["train", "--json", "/proc/m.json"], "--json /proc/m.json"),
    (["train", "--save", "/proc/w.pt"], "--save /proc/w.pt"),
    (["train", "--log-dir", "/proc/logs"], "--log-dir /proc/logs"),
    (["bench", "--json", "/proc/b.json"], "--json /proc/b.json"),
    (["export", "--out", "/proc/x"], "--out /proc/x"),
    (["report", "--out", "/proc/x"], "--out /proc/x"),
    # start
    (["start", "--timeout", "-5"], "--timeout"),
    (["start", "--timeout", "0"], "--timeout"),
    (["start", "--heartbeat", "1e11"], "--heartbeat"),
    (["start", "--heartbeat", "100000"], "--heartbeat"),
    (["start", "--heartbeat", "0"], "--heartbeat"),
    (["start", "--set", "seed=-1"], "seed"),
    (["start", "--set", "lr=inf"], "lr"),
    (["start", "--set", "latent_dim=1000000000"], "latent_dim"),
    (["start", "--n-trials", "-1"], "--n-trials"),
    (["start", "--n-trials", "0"], "--n-trials"),
    (["start", "--study", ""], "--study"),
    (["start", "--study", " "], "--study"),
    (["start", "--workers", "0"], "--workers"),
    (["start", "--gpus", "0", "--workers", "2"], "--gpus"),
    (["start", "--gpus", "99", "--data", "synthetic"], "--gpus 99"),  # no such GPU here
    (["start", "--trials-per-gpu", "0"], "--trials-per-gpu"),
    (["start", "--threads", "0"], "--threads"),
    (["start", "--storage", "nope://where"], "nope://where"),
    (["start", "--space", "missing.toml"], "missing.toml"),
    (["start", "--data", "folder:empty"], "dataset"),
    (["start", "--no-such-flag"], "--no-such-flag"),
    (["start", "--artifacts", "http://host/x"], "--artifacts"),
    (["start", "--artifacts", "s3://"], "--artifacts"),
    (["start", "--artifacts", "s3://KEY:SECRET@bucket"], "AWS_ACCESS_KEY_ID"),
    # readers of a study that is not there
    (["resume", "--study", "x"], "sqlite:///sweeps.db"),
    (["worker", "--study", "x"], "sqlite:///sweeps.db"),
    (["status"], "sqlite:///sweeps.db"),
    (["report"], "sqlite:///sweeps.db"),
    (["report", "--test-data", "no-such"], "no-such"),
    (["export", "--out", "x"], "sqlite:///sweeps.db"),
    (["export", "--out", "x", "--trial", "-1"], "--trial"),
    (["export", "--out", "x", "--trial", "last"], "--trial"),
    (["export"], "--out"),
    (["export", "--out", "x", "--test-data", "no-such"], "no-such"),
    (["copy", "--from", "sqlite:///sweeps.db", "--to", "sqlite:///c.db"], "sqlite:///sweeps.db"),
    (["copy", "--to", "sqlite:///c.db"], "--from"),
    (["dashboard", "--port", "99999"], "--port"),
    (["dashboard", "--port", "-1"], "--port"),
    (["bench", "--steps", "0"], "--steps"),
    (["bench", "--repeats", "0"], "--repeats"),
    (["bench", "--data", "no-such"], "no-such"),
    (["bench", "--data", "folder:empty"], "dataset"),
    (["report", "--test-data", "folder:empty"], "sqlite:///sweeps.db"),
    (["bench", "--trials", "0"], "--trials"),
    (["bench", "--subset", "-1"], "--subset"),
    (["bench", "--margin", "nan"], "--margin"),
    (["bench", "--fresh-seeds", "-1"], "--fresh-seeds"),
    (["bench", "--only", "time_to_answer", "--no-sweep"], "--only"),
    (["bench", "--trials-per-gpu", "1,x"], "--trials-per-gpu"),
    (["bench", "--trials-per-gpu", "0"], "--trials-per-gpu"),
]


# Environment variables are input too: (variable, value, command).
BAD_ENV = [
    ("VAE_SWEEP_THREADS", "abc", ["start", "--data", "synthetic"]),
    ("VAE_SWEEP_THREADS", "0", ["start", "--data", "synthetic"]),
    ("VAE_SWEEP_THREADS", "abc", ["train", "--data", "synthetic"]),
    ("VAE_SWEEP_THREADS", "-2", ["worker", "--study", "x"]),
    ("VAE_SWEEP_OUTAGE_WAIT_S", "abc", ["start", "--data", "synthetic"]),
    ("VAE_SWEEP_OUTAGE_WAIT_S", "-1", ["status"]),
]
BAD += [(["env", f"{var}={value}", *command], var) for var, value, command in BAD_ENV]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, needle,
                                                          monkeypatch):
    (tmp_path / "empty").mkdir()
    if args[0] == "env":  # a BAD_ENV row: the variable set for that command
        var, value = args[1].split("=", 1)
        monkeypatch.setenv(var, value)
        args = args[2:]
    proc = sweep(*args, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]


SWEEP_FILES = [
    ('[fixed]\ndataset = "no-such"\n', "fixed.dataset"),
    ("[search.synthetic_size]\nlow = 64\nhigh = 96\n", "search.synthetic_size"),
    ("objectives = [\n", "bad.toml"),
    ("bogus = 1\n", "bogus"),
    ("[search.nope]\nlow = 1\nhigh = 2\n", "search.nope"),
    ("[search.lr]\nlow = 0.1\nhigh = 0.01\n", "search.lr"),
]


@pytest.mark.parametrize("text,needle", SWEEP_FILES)
def test_start_refuses_a_bad_sweep_file_before_importing_torch(tmp_path, text, needle):
    (tmp_path / "bad.toml").write_text(text)
    code = ("import sys; from sweep.cli import main; "
            "rc = main(['start', '--space', 'bad.toml']); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["bad.toml"]


CONFIG_FILES = [
    ("lr = 1e-3\n[fixed]\nseed = 1\n", "fixed"),
    ("nope = 3\n", "nope"),
    ("lr = -1.0\n", "lr"),
    ("kl_schedule = \"exponential\"\n", "kl_schedule"),
    ("latent_dim = [\n", "bad.toml"),
]


@pytest.mark.parametrize("text,needle", CONFIG_FILES)
def test_train_refuses_a_bad_config_file_in_one_line(tmp_path, text, needle):
    (tmp_path / "bad.toml").write_text(text)
    proc = sweep("train", "--config", "bad.toml", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["bad.toml"]


@pytest.mark.slow
def test_export_and_report_name_a_trial_or_study_that_is_not_there(tmp_path):
    study = optuna.create_study(study_name="there", storage=f"sqlite:///{tmp_path}/sweeps.db")
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    for command, needle in ((["export", "--study", "there", "--trial", "5"], "no such trial"),
                            (["export", "--study", "there"], "no complete trial"),
                            (["export", "--study", "there", "--trial", "0"], "never trained"),
                            (["report", "--study", "nosuch"], "'nosuch'")):
        proc = sweep(*command, "--out", "x", cwd=tmp_path, check=False) \
            if command[0] == "export" else sweep(*command, cwd=tmp_path, check=False)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_report_and_export_outputs_that_cannot_be_written_create_nothing(tmp_path):
    optuna.create_study(study_name="there", storage=f"sqlite:///{tmp_path}/sweeps.db")
    (tmp_path / "a-file").write_text("")
    (tmp_path / "empty").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    cases = [(["report", "--out", "a-file"], "--out a-file"),
             (["report", "--out", "/dev/null/r"], "--out /dev/null/r"),
             (["report", "--out", "/proc/r"], "--out /proc/r"),
             (["export", "--out", "a-file"], "--out a-file"),
             # the test set is read before the store is opened: no sweeps-artifacts/
             (["report", "--test-data", "folder:empty"], "empty")]
    if os.geteuid() != 0:  # root writes through permissions
        (tmp_path / "locked").mkdir(mode=0o555)
        before = sorted(p.name for p in tmp_path.iterdir())
        cases += [(["report", "--out", "locked/r"], "--out locked/r"),
                  (["export", "--out", "locked"], "--out locked")]
    for command, needle in cases:
        proc = sweep(*command, cwd=tmp_path, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == before, proc.stderr
    study = optuna.load_study(study_name="there", storage=f"sqlite:///{tmp_path}/sweeps.db")
    assert get_all_artifact_meta(study) == [] and get_note(study) == ""  # nothing uploaded


@pytest.mark.slow
def test_a_study_that_is_not_there_is_named(tmp_path):
    optuna.create_study(study_name="there", storage=f"sqlite:///{tmp_path}/sweeps.db")
    for command in (["worker", "--study", "nosuch"], ["resume", "--study", "nosuch"],
                    ["status", "--study", "nosuch"]):
        proc = sweep(*command, cwd=tmp_path, check=False)
        assert proc.returncode == 2 and "'nosuch'" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    # A study made with plain Optuna has no vae-sweep settings to run with.
    proc = sweep("worker", "--study", "there", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "not started by vae-sweep" in proc.stderr, proc.stderr


def test_dashboard_on_a_busy_port_exits_2(tmp_path):
    optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path}/sweeps.db")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = sweep("dashboard", "--port", str(port), cwd=tmp_path, check=False)
    assert proc.returncode == 2 and f"--port {port}" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_help_lists_config_keys_and_version(tmp_path):
    assert "latent_dim=256" in sweep("train", "--help", cwd=tmp_path).stdout
    assert "kl_schedule=constant" in sweep("start", "--help", cwd=tmp_path).stdout
    worker_help = sweep("worker", "--help", cwd=tmp_path).stdout
    assert "--study" in worker_help and "--heartbeat" not in worker_help
    assert sweep("--version", cwd=tmp_path).stdout.startswith("vae-sweep ")


def test_a_port_held_only_by_time_wait_sockets_is_free():
    """optuna-dashboard binds with SO_REUSEADDR: the pre-check refused such a port ~60 s."""
    from sweep.commands.dashboard import check_port

    with socket.socket() as server:  # a dashboard that served and stopped (it reuses too)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        conn.close()  # the side that closes first keeps the port in TIME-WAIT
        client.close()
    check_port("127.0.0.1", port)


def test_status_into_a_closed_pipe_is_quiet(tmp_path):
    """`status | head -3`: the reader went away; no BrokenPipeError traceback."""
    from sweep.space import load_space
    from sweep.storage import settings as study_settings

    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path}/sweeps.db")
    study_settings.save(study, study_settings.Settings(load_space(None), goal=2, heartbeat=10))
    proc = subprocess.Popen([sys.executable, "-m", "sweep", "status"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    proc.stdout.close()  # before status prints: its write meets a closed pipe
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0 and err == "", err
