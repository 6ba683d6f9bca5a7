"""Bad input, as a user types it: exit 2, one line on stderr naming the bad key or value, and
nothing written; start refuses a bad sweep file before it imports torch."""

from __future__ import annotations

import socket
import subprocess
import sys

import optuna
import pytest
from test_cli import ROOT, sweep

BAD = [
    # train
    (["train", "--set", "lr=inf"], "lr"),
    (["train", "--set", "kl_weight=inf"], "kl_weight"),
    (["train", "--set", "lr=-1"], "lr"),
    (["train", "--set", "seed=-1"], "seed"),
    (["train", "--set", "latent_dim=1000000000"], "latent_dim"),
    (["train", "--set", "kl_schedule=exponential"], "kl_schedule"),
    (["train", "--set", "nope=3"], "nope"),
    (["train", "--set", "lr"], "lr"),
    (["train", "--json", "/missing/dir/m.json"], "--json"),
    (["train", "--data", "no-such"], "no-such"),
    (["train", "--data", "folder:empty"], "dataset"),
    (["train", "--threads", "0"], "--threads"),
    (["train", "--config", "missing.toml"], "missing.toml"),
    (["train", "--save", "/missing/dir/w.pt"], "--save"),
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
    (["start", "--workers", "0"], "--workers"),
    (["start", "--gpus", "0", "--workers", "2"], "--gpus"),
    (["start", "--trials-per-gpu", "0"], "--trials-per-gpu"),
    (["start", "--threads", "0"], "--threads"),
    (["start", "--storage", "nope://where"], "nope://where"),
    (["start", "--config", "missing.toml"], "missing.toml"),
    (["start", "--data", "folder:empty"], "dataset"),
    (["start", "--no-such-flag"], "--no-such-flag"),
    (["start", "--artifacts", "http://host/x"], "--artifacts"),
    (["start", "--artifacts", "s3://"], "--artifacts"),
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
    (["dashboard", "--port", "99999"], "--port"),
    (["dashboard", "--port", "-1"], "--port"),
    (["bench", "--steps", "0"], "--steps"),
    (["bench", "--repeats", "0"], "--repeats"),
    (["bench", "--data", "no-such"], "no-such"),
    (["bench", "--trials", "0"], "--trials"),
    (["bench", "--subset", "-1"], "--subset"),
    (["bench", "--margin", "nan"], "--margin"),
    (["bench", "--trials-per-gpu", "1,x"], "--trials-per-gpu"),
    (["bench", "--trials-per-gpu", "0"], "--trials-per-gpu"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, needle):
    (tmp_path / "empty").mkdir()
    proc = sweep(*args, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]


SWEEP_FILES = [
    ('[fixed]\ndataset = "no-such"\n', "fixed.dataset"),
    ("[search.synthetic_size]\nlow = 64\nhigh = 96\n", "search.synthetic_size"),
    ("objectives = [\n", "bad.toml"),
    ("[search.lr]\nlow = 0.1\nhigh = 0.01\n", "search.lr"),
]


@pytest.mark.parametrize("text,needle", SWEEP_FILES)
def test_start_refuses_a_bad_sweep_file_before_importing_torch(tmp_path, text, needle):
    (tmp_path / "bad.toml").write_text(text)
    code = ("import sys; from sweep.cli import main; "
            "rc = main(['start', '--config', 'bad.toml']); "
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
