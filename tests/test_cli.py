"""The command line as a user types it: ``python -m sweep ...`` in a subprocess.

Studies use tiny synthetic data and a tiny model fixed through a sweep TOML, so each trial
takes a second or two on CPU.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import forkserver
import optuna
import pytest
from optuna.trial import TrialState

from models.config import Config
from sweep.space import baseline_params, load_space
from sweep.storage import trial_record

ROOT = Path(__file__).resolve().parent.parent
TINY_TOML = """
objectives = ["mse", "rate", "active_units"]
[fixed]
synthetic_size = 96
width = 4
depth = 2
batch_size = 32
[search.kl_schedule]
choices = ["constant", "linear", "cyclical", "sigmoid"]
[search.kl_warmup_steps]
low = 1
high = 20
when = { kl_schedule = ["linear", "sigmoid"] }
[search.kl_weight]
low = 0.01
high = 10.0
log = true
[search.latent_dim]
choices = [4, 8, 256]
[search.lr]
low = 1e-4
high = 3e-3
log = true
[search.recon_reduction]
choices = ["sum", "mean"]
[search.kl_reduction]
choices = ["sum", "mean"]
"""

# A KL warm-up longer than any run here: no trial can be stopped for collapse. {} adds
# [fixed] fields; the search is the learning rate alone.
NO_COLLAPSE = """
[fixed]
{}
depth = 2
batch_size = 32
recon_reduction = "sum"
kl_schedule = "linear"
kl_warmup_steps = 100000
[search.lr]
low = 1e-3
high = 2e-3
"""


def sweep(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m sweep *args`` in ``cwd``, through the fork server (tests/forkserver.py)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("VAE_SWEEP_STORAGE", None)
    proc = forkserver.run(list(args), cwd=cwd, env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def free_port() -> int:
    """A port nothing listens on now (tests run in parallel: no fixed port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def states(db: Path, name: str) -> list[TrialState]:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    return [t.state for t in study.get_trials()]


@pytest.fixture
def tiny_toml(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TOML)
    return path


@pytest.mark.slow
def test_train_prints_the_metrics_as_json(tmp_path):
    out = sweep("train", "--data", "synthetic", "--set", "synthetic_size=96", "--set",
                "width=4", "--set", "depth=2", "--set", "latent_dim=8", "--set", "max_steps=3",
                cwd=tmp_path)
    metrics = json.loads(out.stdout)
    for key in ("mse", "rate", "neg_elbo", "bits_per_dim", "active_units", "mutual_info",
                "kl_per_dim", "collapsed", "images_per_sec", "git_sha", "versions"):
        assert key in metrics, (key, out.stderr)
    assert len(metrics["kl_per_dim"]) == 8 and metrics["config"]["dataset"] == "synthetic"


@pytest.mark.slow
def test_train_logs_through_lightnings_csv_logger(tmp_path):
    sweep("train", "--data", "synthetic", "--set", "synthetic_size=256", "--set", "width=4",
          "--set", "depth=2", "--set", "latent_dim=8", "--set", "batch_size=8", "--set",
          "max_steps=25", "--set", "kl_schedule=linear", "--set", "kl_warmup_steps=100",
          "--log-dir", "logs", "--json", "metrics.json", cwd=tmp_path)
    with open(tmp_path / "logs" / "version_0" / "metrics.csv") as f:  # sweep() shows stderr
        rows = list(csv.DictReader(f))
    # The logger writes after steps 9 and 19 (0-based) of 25, and the values it writes are
    # those of these very steps: the linear KL weight is 9/100 and 19/100 there.
    train = [r for r in rows if r["train/loss"]]
    assert [r["step"] for r in train] == ["9", "19"]
    assert [float(r["train/kl_weight"]) for r in train] == pytest.approx([0.09, 0.19])
    assert all(r["train/elbo"] for r in train)
    val = [r for r in rows if r["val/mse"]]
    assert len(val) == 1 and val[0]["val/active_units"] != ""
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert float(val[0]["val/mse"]) == pytest.approx(saved["mse"], rel=1e-5)


@pytest.mark.slow
def test_bench_reports_every_row(tmp_path):
    # Structure only: timings on a shared machine are noise at this size.
    # --trials-per-gpu on CPU runs the GPU rows' code path (variants, K processes) there.
    proc = sweep("bench", "--batch-size", "8", "--steps", "2", "--repeats", "1",
                 "--subset", "40", "--trials", "2", "--baseline-workers", "0",
                 "--device", "cpu", "--trials-per-gpu", "1", "--busy", "1",
                 "--json", "bench.json", cwd=tmp_path)
    result = json.loads((tmp_path / "bench.json").read_text())
    assert json.loads(proc.stdout) == result, proc.stderr
    for row in ("limit", "baseline", "project"):
        assert result[row] > 0 and len(result["repeats"][row]) == 1
    assert 0 <= result["sweep_overhead"] < 1 and 0 < result["trial_overhead"] < 1
    threads = result["threads"]
    assert threads["busy_processes"] == 1 and threads["wait_policy"] == "PASSIVE"
    for load in ("idle", "loaded"):  # every count and the default, beside 0 and 1 busy
        counts = set(threads[load]["repeats"])
        assert {"1", "default"} <= counts and str(threads[load]["best_fixed"]) in counts
        assert threads[load]["default_over_best"] > 0
    answer = result["time_to_answer"]
    assert {"baseline_s", "project_s", "ratio", "project_no_pruning_s"} <= set(answer)
    assert answer["trials"] == 2
    assert len(answer["fresh_seeds"]["seeds"]) == 2  # --fresh-seeds' default
    gpu = result["gpu"]
    assert set(gpu["variants"]) == {"32-true", "bf16-mixed", "32-true+channels_last",
                                    "bf16-mixed+channels_last"}
    rows = gpu["variants"]
    for r in rows.values():  # each variant measured (neg_elbo may be < 0: a density's)
        assert r["images_per_sec"] > 0 and math.isfinite(r["neg_elbo"]) and r["mse"] >= 0, r
    agree = [name for name, r in rows.items() if r["within_tolerance"]]
    # The chosen variant: the fastest of those that agree with the 32-bit reference.
    assert gpu["chosen"] == max(agree, key=lambda name: rows[name]["images_per_sec"])
    assert list(gpu["trials_per_gpu"]) == ["1"] and gpu["trials_per_gpu"]["1"] > 0
    assert proc.stderr.count("repeat ") == 1, proc.stderr  # one progress line per repeat
    assert "time_to_answer: sweep start, the default search, pruner none" in proc.stderr, \
        proc.stderr


@pytest.mark.slow
def test_start_runs_a_study_joins_it_again_and_reports(tmp_path, tiny_toml):
    db = tmp_path / "sweeps.db"
    proc = sweep("start", "--data", "synthetic", "--n-trials", "4", "--max-epochs", "1",
                 "--space", str(tiny_toml), cwd=tmp_path)
    assert "4/4 done" in proc.stdout, proc.stderr
    study = optuna.load_study(study_name="vae-synthetic", storage=f"sqlite:///{db}")
    trials = study.get_trials()
    assert len(trials) == 4, proc.stderr
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), proc.stderr
    assert study.metric_names == ["mse", "rate", "active_units"]
    baseline = trials[0]
    assert baseline.user_attrs["baseline"] is True
    assert baseline.params == baseline_params(load_space(tiny_toml))
    seed = Config().to_dict()
    assert all(trial_record.config(baseline)[k] == seed[k] for k in baseline.params)
    for t in trials:
        assert {"git_sha", "images_per_sec", "rate"} <= set(t.user_attrs)
        # [fixed] synthetic_size = 96 reaches the data: 86 training images, 2 batches of 32.
        assert trial_record.config(t)["synthetic_size"] == 96
        assert t.user_attrs["steps"] == 2 * len(trial_record.history(t))
    pngs = list((tmp_path / "sweeps-artifacts").rglob("*"))
    assert len([p for p in pngs if p.is_file()]) >= 4 * 3
    assert not list((tmp_path / "sweeps-checkpoints").rglob("*.ckpt"))  # deleted when done

    again = sweep("start", "--data", "synthetic", "--n-trials", "2", "--max-epochs", "1",
                  "--space", str(tiny_toml), cwd=tmp_path)
    assert len(optuna.get_all_study_summaries(f"sqlite:///{db}")) == 1
    trials = optuna.load_study(study_name="vae-synthetic", storage=f"sqlite:///{db}").trials
    assert len(trials) == 6, again.stderr
    assert sum(bool(t.user_attrs.get("baseline")) for t in trials) == 1
    # The second run's sampler does not replay the first run's random draws.
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 6

    status = sweep("status", cwd=tmp_path)
    report = status.stdout
    assert "Pareto front" in report, status.stderr
    assert "Baseline (the seed configuration, trial 0)" in report, report


@pytest.mark.slow
def test_two_workers_share_one_sqlite_file(tmp_path, tiny_toml):
    proc = sweep("start", "--data", "synthetic", "--n-trials", "4", "--max-epochs", "1",
                 "--workers", "2", "--space", str(tiny_toml), "--study", "two", cwd=tmp_path)
    assert "locked" not in proc.stderr + proc.stdout, proc.stderr
    assert "GPU available" not in proc.stderr, proc.stderr  # Lightning quiet in workers too
    got = states(tmp_path / "sweeps.db", "two")
    assert len(got) == 4 and TrialState.RUNNING not in got and TrialState.FAIL not in got, (
        got, proc.stderr)
    seeds = {json.dumps(t.params, sort_keys=True) for t in
             optuna.load_study(study_name="two", storage=f"sqlite:///{tmp_path}/sweeps.db").trials}
    assert len(seeds) == len(got)  # no two workers proposed the same trial


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # even where the test runner ignores it


@pytest.mark.slow
@pytest.mark.parametrize("sig,left", [
    (signal.SIGKILL, [TrialState.RUNNING]),
    (signal.SIGINT, [TrialState.FAIL, TrialState.WAITING]),
    (signal.SIGTERM, [TrialState.FAIL, TrialState.WAITING]),
], ids=["kill-9", "ctrl-c", "sigterm"])
def test_resume_after_kill_or_ctrl_c_reruns_the_trial_from_its_checkpoint(tmp_path, sig, left):
    toml = tmp_path / "slow.toml"
    toml.write_text('objectives = ["mse"]\n' + NO_COLLAPSE.format(
        "synthetic_size = 512\nwidth = 8\nlatent_dim = 8\nmax_epochs = 3"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "sweep", "start", "--data", "synthetic", "--n-trials", "1",
           "--no-baseline", "--heartbeat", "1", "--space", str(toml), "--study", "k"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    ckpt = tmp_path / "sweeps-checkpoints" / "k" / "trial-0" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not zipfile.is_zipfile(ckpt) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # wait for a whole checkpoint: the file is written in place
    if not zipfile.is_zipfile(ckpt):
        proc.kill()
        raise AssertionError(f"no checkpoint was written\n{proc.communicate()[1]}")
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    db = tmp_path / "sweeps.db"
    # kill -9 leaves the trial RUNNING for the heartbeat to fail; Ctrl-C and SIGTERM (kill,
    # systemd, docker stop) fail it at once, saying why, and queue its re-run
    assert states(db, "k") == left, err
    if sig != signal.SIGKILL:
        name = signal.Signals(sig).name
        assert proc.returncode == 128 + sig and "python -m sweep resume --study k" in err, err
        assert f"interrupted by {name}" in err and "Traceback" not in err, err
        first = optuna.load_study(study_name="k", storage=f"sqlite:///{db}").trials[0]
        assert first.user_attrs["fail_reason"].startswith(f"interrupted by {name}"), err

    resumed = sweep("resume", "--study", "k", cwd=tmp_path).stderr
    trials = optuna.load_study(study_name="k", storage=f"sqlite:///{db}").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE], err + resumed
    rerun = trials[1]
    assert rerun.params == trials[0].params
    assert rerun.user_attrs["resumed_from"].endswith("trial-0/last.ckpt"), err + resumed
    assert rerun.user_attrs["start_epoch"] >= 1, err + resumed
    assert rerun.user_attrs["epochs_trained"] == 3 - rerun.user_attrs["start_epoch"]
    assert [h["epoch"] for h in trial_record.history(rerun)] == [0, 1, 2]


@pytest.mark.slow
def test_dashboard_serves_the_study_with_names_attrs_and_images(tmp_path):
    # Both trials complete with active units (a low threshold: one epoch of 96 images), so
    # both are feasible and the study has a Pareto front to show.
    toml = tmp_path / "warm.toml"
    toml.write_text('objectives = ["mse", "rate", "active_units"]\n' + NO_COLLAPSE.format(
        "synthetic_size = 96\nwidth = 4\nau_threshold = 0.0001"))
    sweep("start", "--data", "synthetic", "--n-trials", "2", "--max-epochs", "1",
          "--space", str(toml), cwd=tmp_path)
    with sqlite3.connect(tmp_path / "sweeps.db") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # status on a study with a front: its rows are the trials, with the searched param.
    status = sweep("status", cwd=tmp_path)
    lines = status.stdout.splitlines()
    assert lines[0].startswith("study 'vae-synthetic'") and "2 complete" in lines[0], (
        status.stdout, status.stderr)
    front = next(i for i, line in enumerate(lines) if line.startswith("Pareto front ("))
    header = lines[front + 1].split()
    assert header == ["trial", "mse", "rate", "active_units", "neg_elbo", "lr"]
    rows = [line.split() for line in lines if line[:1].isdigit()]
    study = optuna.load_study(study_name="vae-synthetic", storage=f"sqlite:///{tmp_path}/sweeps.db")
    assert rows and sorted(int(r[0]) for r in rows) == sorted(t.number for t in study.best_trials)
    for r in rows:
        t = study.trials[int(r[0])]
        assert float(r[1]) == pytest.approx(t.values[0], rel=1e-3)
        assert float(r[5]) == pytest.approx(t.params["lr"], rel=1e-3)
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server_log = tmp_path / "dashboard.log"  # its stderr, for the assertion messages
    server = subprocess.Popen([sys.executable, "-m", "sweep", "dashboard", "--port", str(port)],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=server_log.open("w"))
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> bytes:
        with urllib.request.urlopen(base + path, timeout=10) as r:
            return r.read()

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = json.loads(get("/api/studies"))["study_summaries"]
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, \
                    server_log.read_text()
                time.sleep(0.2)
        detail = json.loads(get(f"/api/studies/{studies[0]['study_id']}"))
        assert detail["objective_names"] == ["mse", "rate", "active_units"], \
            server_log.read_text()
        assert [t["state"] for t in detail["trials"]] == ["Complete", "Complete"]
        assert detail["best_trials"]
        trial = detail["trials"][1]
        keys = {a["key"] for a in trial["user_attrs"]}
        assert {"active_units", "neg_elbo", "mutual_info", "git_sha"} <= keys
        names = {a["filename"]: a for a in trial["artifacts"]}
        assert {"reconstructions.png", "samples.png", "kl_per_dim.png", "metrics.csv"} <= set(names)
        png = get(f"/artifacts/{trial['study_id']}/{trial['trial_id']}/"
                  f"{names['reconstructions.png']['artifact_id']}")
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        # `docker stop` or systemd: the server stops as on Ctrl-C (exit 0), not killed (-15).
        server.terminate()
        assert server.wait(timeout=60) == 0, server_log.read_text()
    finally:
        server.kill()
        server.wait()
    # The README's plain optuna-dashboard command, as --print-command gives it, serves the
    # same image (the console script sits beside this Python).
    port = free_port()
    printed = sweep("dashboard", "--port", str(port), "--print-command", cwd=tmp_path)
    line = printed.stdout.strip().splitlines()[-1]
    assert line.startswith('optuna-dashboard "$VAE_SWEEP_STORAGE" ') and "--artifact-dir" in line
    # Run as the note says: the URL in the environment, the line through a shell.
    script = shlex.quote(str(Path(sys.executable).with_name("optuna-dashboard"))) + line[16:]
    plain_log = tmp_path / "optuna-dashboard.log"
    plain = subprocess.Popen(["bash", "-c", f"exec {script}"], cwd=tmp_path,
                             env=dict(os.environ, VAE_SWEEP_STORAGE="sqlite:///sweeps.db"),
                             stdout=subprocess.DEVNULL, stderr=plain_log.open("w"))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                png = get(f"/artifacts/{trial['study_id']}/{trial['trial_id']}/"
                          f"{names['reconstructions.png']['artifact_id']}")
                break
            except OSError:
                assert time.monotonic() < deadline and plain.poll() is None, \
                    plain_log.read_text()
                time.sleep(0.2)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        plain.kill()
        plain.wait()


COLLAPSING = """
objectives = ["mse"]
pruner = "none"
[fixed]
synthetic_size = 96
width = 4
depth = 2
latent_dim = 8
batch_size = 32
max_epochs = 2
[search.kl_weight]
low = 1.0
high = 2.0
"""


@pytest.mark.slow
def test_collapse_and_a_nan_loss_are_recorded_with_their_reasons(tmp_path):
    (tmp_path / "c.toml").write_text(COLLAPSING)
    # The seed's constant KL weight collapses the tiny model at once; lr=1e6 diverges.
    first = sweep("start", "--space", "c.toml", "--data", "synthetic", "--n-trials", "1",
                  "--no-baseline", "--study", "collapse", cwd=tmp_path)
    second = sweep("start", "--space", "c.toml", "--data", "synthetic", "--n-trials", "1",
                   "--no-baseline", "--study", "nan", "--set", "lr=1000000", cwd=tmp_path,
                   check=False)
    # Its only trial failed: no answer, exit 1 and one line saying why.
    assert second.returncode == 1 and "with no COMPLETE trial: 1 failed, most often training " \
        "diverged (nan)" in second.stderr.splitlines()[-1], second.stderr
    storage = f"sqlite:///{tmp_path}/sweeps.db"
    (collapsed,) = optuna.load_study(study_name="collapse", storage=storage).trials
    # Collapse is a constraint: COMPLETE with its values (the dashboard plots it), infeasible
    # (constraint 1 - active units > 0), so it is never the best trial.
    assert collapsed.state == TrialState.COMPLETE and collapsed.values, first.stderr
    assert collapsed.user_attrs["collapse_reason"].startswith("posterior collapse: 0 active units")
    assert collapsed.user_attrs["active_units"] == 0
    assert collapsed.constraints == {"0": 1.0}
    (diverged,) = optuna.load_study(study_name="nan", storage=storage).trials
    assert diverged.state == TrialState.FAIL, second.stderr
    assert diverged.user_attrs["fail_reason"] == ("training diverged (nan) at step 2: "
                                                  "validation neg_elbo is nan")
    assert trial_record.config(diverged)["lr"] == 1e6  # the command line's value, not searched


@pytest.mark.slow
def test_timeout_stops_starting_trials_and_keep_checkpoints_keeps_them(tmp_path):
    toml = tmp_path / "warm.toml"
    toml.write_text(NO_COLLAPSE.format("synthetic_size = 96\nwidth = 4\nmax_epochs = 2"))
    started = time.monotonic()
    proc = sweep("start", "--space", str(toml), "--data", "synthetic", "--n-trials", "50",
                 "--timeout", "0.5", "--keep-checkpoints", "--study", "t", cwd=tmp_path)
    elapsed = time.monotonic() - started
    trials = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path}/sweeps.db").trials
    # Optuna checks the timeout between trials: the first trial runs, then no new one starts.
    assert 1 <= len(trials) < 50 and elapsed < 120, proc.stderr
    assert all(t.state == TrialState.COMPLETE for t in trials), proc.stderr
    for t in trials:
        ckpt = tmp_path / "sweeps-checkpoints" / "t" / f"trial-{t.number}" / "last.ckpt"
        assert zipfile.is_zipfile(ckpt)
