"""Measure that a study shared by 4 worker processes, run 3 times (each ``start`` adds
``--n-trials`` to its budget), finishes exactly its budget each time, with no trial trained
twice and nothing left RUNNING or WAITING: on a journal file, or any storage URL given.
``--kill`` sends SIGKILL to the worker of the first trial that runs in each run: its trial
is failed once its heartbeat is stale (2 s heartbeats here) and re-run by another worker.

    PYTHONPATH=. python scripts/budget_runs.py [--storage URL] [--kill]

One line per run: its wall time, the goal, the results counted as progress counts them
(a failed trial that was re-run counts once), the trials by state, and whether each chain
of re-runs ends in exactly one result. Tiny synthetic trials (1 epoch); exits 1 when a run
breaks one of those rules.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from sweep.runner.progress import results
from sweep.storage import settings as study_settings
from sweep.storage.database import open_storage

TINY = ["--set", "synthetic_size=96", "--set", "latent_dim=8", "--set", "batch_size=32",
        "--set", "width=4", "--set", "depth=2"]


def check(url: str, name: str) -> tuple[bool, str]:
    study = optuna.load_study(study_name=name, storage=open_storage(url, heartbeat_interval=None))
    trials = study.get_trials()
    goal = study_settings.load(study).goal
    states = Counter(t.state.name for t in trials)
    history = RetryHeartbeatStaleTrialCallback.retry_history
    retried = {n for t in trials for n in history(t)}
    roots = Counter((history(t) or [t.number])[0] for t in trials
                    if t.state != TrialState.FAIL or t.number not in retried)
    once = max(roots.values(), default=1) == 1
    done = results(trials)
    ok = done == goal and once and not states["RUNNING"] and not states["WAITING"]
    return ok, (f"goal {goal}, results {done}, trials {dict(sorted(states.items()))}, "
                f"each chain one result: {once}")


def trials_of(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials; none while it does not exist yet."""
    try:
        storage = open_storage(url, heartbeat_interval=None, must_exist=True)
        return optuna.load_study(study_name=name, storage=storage).get_trials()
    except (KeyError, ValueError):  # ValueError: the storage's no-such-file (UsageError)
        return []


def kill_first_worker(url: str, name: str, before: set[int],
                      proc: subprocess.Popen[str]) -> str:
    """SIGKILL the worker of the first trial of this run to be RUNNING (none of ``before``,
    the trials of earlier runs); the pid killed, or why none was."""
    while proc.poll() is None:
        for t in trials_of(url, name):
            if t.number not in before and t.state == TrialState.RUNNING and (
                    "worker" in t.user_attrs):
                pid = int(t.user_attrs["worker"].rsplit(":", 1)[1])
                os.kill(pid, signal.SIGKILL)
                return f"killed pid {pid} in trial {t.number}"
        time.sleep(0.1)
    return "no trial to kill"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", help="default: a journal file in a temporary folder")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--n-trials", type=int, default=8)
    parser.add_argument("--kill", action="store_true",
                        help="SIGKILL one worker mid-trial in each run")
    args = parser.parse_args()
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    folder = Path(tempfile.mkdtemp(prefix="budget-runs-"))
    url = args.storage or f"journal://{folder}/study.log"
    env = dict(os.environ, VAE_SWEEP_THREADS="1")
    failures = 0
    for run in range(1, args.runs + 1):
        before = {t.number for t in trials_of(url, "budget")}
        began = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "sweep", "start", "--study", "budget",
                                 "--storage", url, "--data", "synthetic", "--max-epochs", "1",
                                 "--n-trials", str(args.n_trials), "--workers",
                                 str(args.workers), "--heartbeat", "2", *TINY],
                                cwd=folder, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        killed = ""
        if args.kill:
            killed = f", {kill_first_worker(url, 'budget', before, proc)}"
        _, err = proc.communicate()
        ok, line = check(url, "budget")
        failures += not ok
        print(f"run {run}: {time.monotonic() - began:.0f} s, exit {proc.returncode}{killed}, "
              f"{line}{'' if ok else ' FAILED: ' + err[-800:]}", flush=True)
    print(f"{url}: {args.runs - failures}/{args.runs} runs exact")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
