"""Workers as a SLURM job array (sweep.runner.slurm, ``python -m sweep submit``): the
``--slurm`` parameters, what is refused before anything is submitted, and, on a real
one-node cluster (.ci/slurm starts it for .ci/run and sets $VAE_SWEEP_TEST_SLURM): the
README's commands as written, and an array of 2 workers over a journal file whose tasks are
requeued and warned of their time limit in mid-trial: the budget is exact, each interrupted
trial resumes from its checkpoint, and nothing is left RUNNING."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from conftest import README_TINY, readme_blocks, readme_section
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from sweep.errors import ParamError
from sweep.runner.progress import results
from sweep.runner.slurm import ENDED, ArrayStates, parse_slurm, render_states, submit
from sweep.storage.database import checkpoint_dir, open_storage

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("text,params", [
    ("partition=gpu,gpus_per_node=4,time=04:00:00",
     {"partition": "gpu", "gpus_per_node": 4, "time": 240}),
    ("time=90", {"time": 90}), ("time=1:30", {"time": 2}), ("time=2-00", {"time": 2880}),
    ("time=1-02:03:04, cpus-per-task=8", {"time": 1564, "cpus_per_task": 8}),  # rounded up
    ("", {}),
])
def test_slurm_parameters_are_submitits_with_time_in_minutes(text, params):
    assert parse_slurm(text) == params


@pytest.mark.parametrize("text,message", [
    ("partition", "slurm 'partition': expected KEY=VALUE items"),
    ("time=4h", "slurm time=4h: expected minutes, HH:MM:SS or D-HH:MM:SS"),
    ("setup=x", "slurm setup takes a list or a table"),
])
def test_bad_slurm_parameters_name_the_item(text, message):
    with pytest.raises(ParamError) as err:
        parse_slurm(text)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_an_sqlite_study_is_refused_before_anything_is_submitted(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    with pytest.raises(ParamError, match="^storage .*cannot be shared by the nodes"):
        submit("s", storage=url, slurm={"time": 60}, jobs=2)
    with pytest.raises(ParamError, match="^jobs must be >= 1, got 0"):
        submit("s", storage=url, slurm={"time": 60}, jobs=0)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ParamError, match="^slurm needs time=HH:MM:SS"):
        submit("s", storage=f"journal://{tmp_path}/s.log", slurm={"partition": "gpu"})
    assert list(tmp_path.iterdir()) == []


def test_the_command_line_names_the_flag_in_one_line(tmp_path, capsys):
    from sweep.cli import main

    assert main(["submit", "--study", "s", "--storage", f"journal://{tmp_path}/s.log",
                 "--slurm", "partition"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m sweep submit: error: --slurm 'partition': expected ")
    assert err.count("\n") == 1 and list(tmp_path.iterdir()) == []


def test_a_parameter_submitit_does_not_take_is_refused_naming_it(tmp_path):
    pytest.importorskip("submitit")
    if shutil.which("srun") is None:
        pytest.skip("submitit makes its SLURM executor only where srun is installed")
    from sweep.runner.slurm import slurm_executor

    with pytest.raises(ParamError) as err:
        slurm_executor(tmp_path, {"time": 60, "gpus_pernode": 4}, "s")
    assert str(err.value).startswith("slurm Unavailable parameter(s): ['gpus_pernode']")
    assert "\n" not in str(err.value)
    made = slurm_executor(tmp_path, {"time": 60, "partition": "gpu"}, "s")
    assert made.parameters["time"] == 60


def test_states_read_as_one_line_per_array():
    arrays = [ArrayStates("12", 3, "/logs", {"12_0": "RUNNING", "12_1": "PENDING",
                                             "12_2": "RUNNING"}),
              ArrayStates("14", 1, "/logs", {}, "no states: squeue: not found")]
    assert render_states(arrays).splitlines() == [
        "SLURM job 12 (3 tasks, logs in /logs): 1 PENDING, 2 RUNNING (12_0, 12_2)",
        "SLURM job 14 (1 task, logs in /logs): no states: squeue: not found"]


@pytest.fixture
def cluster() -> dict[str, str]:
    """The environment of a test cluster (.ci/slurm), or a skip naming how to get one."""
    if os.environ.get("VAE_SWEEP_TEST_SLURM") != "1" or not os.environ.get("SLURM_CONF"):
        pytest.skip("no SLURM test cluster: .ci/run starts one (.ci/slurm sets "
                    "$VAE_SWEEP_TEST_SLURM and $SLURM_CONF)")
    if shutil.which("sinfo") is None or subprocess.run(
            ["sinfo"], capture_output=True).returncode:
        pytest.skip(f"the SLURM cluster of {os.environ['SLURM_CONF']} does not answer")
    pytest.importorskip("submitit")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("VAE_SWEEP_STORAGE", None)
    return env


def sweep(*args: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "sweep", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def states(job: str) -> dict[str, str]:
    """The array's tasks and their states, as squeue has them."""
    out = subprocess.run(["squeue", "--noheader", "--array", "--states=all", f"--jobs={job}",
                          "--format=%i|%T"], capture_output=True, text=True).stdout
    return dict(line.split("|") for line in out.split())


def restarts(task: str) -> int:
    out = subprocess.run(["scontrol", "show", "job", task], capture_output=True, text=True)
    return int(out.stdout.split("Restarts=")[1].split()[0])


def wait_for(check, seconds: float, logs: Path) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            tails = {p.name: p.read_text()[-1500:] for p in logs.rglob("*.err")}
            raise AssertionError(f"timed out; the tasks' stderr: {tails}")
        time.sleep(0.1)


def task_of(trial: optuna.trial.FrozenTrial) -> str:
    """The array task whose worker runs ``trial`` (its process, on this one node)."""
    pid = trial.user_attrs["worker"].rsplit(":", 1)[1]
    env = dict(item.split("=", 1) for item in
               Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"


TOML = """
objectives = ["mse"]
pruner = "none"
[fixed]
synthetic_size = 512
width = 8
depth = 2
latent_dim = 8
batch_size = 32
max_epochs = 3
[search.lr]
low = 1e-3
high = 3e-3
log = true
"""


def root(trial: optuna.trial.FrozenTrial) -> int:
    """The first run of ``trial``'s chain of re-runs (its checkpoint folder's number)."""
    return (RetryHeartbeatStaleTrialCallback.retry_history(trial) or [trial.number])[0]


@pytest.mark.slow
def test_requeued_and_warned_tasks_resume_their_trials_and_the_budget_stays_exact(
        tmp_path, cluster):
    """One task is requeued (SIGTERM) in mid-trial; while SLURM holds it, the other one is
    warned of its time limit (SIGUSR2) in mid-trial, whatever trial it runs by then (the
    first one's re-run, if its own was done): each stop is caught in a trial's own window,
    one after the other, so the test never waits for the two tasks' trials to overlap."""
    import sweep as library

    (tmp_path / "f.toml").write_text(TOML)
    url, name, goal = f"journal://{tmp_path}/study.log", "requeued", 2
    library.start(tmp_path / "f.toml", study_name=name, storage=url, n_trials=goal,
                  fixed={"dataset": "synthetic"}, baseline=False, run=False)
    with pytest.MonkeyPatch.context() as mp:  # what the tasks inherit through sbatch
        mp.setenv("PYTHONPATH", str(ROOT))
        job = submit(name, storage=url, slurm={"time": 30}, jobs=2).job
    logs = tmp_path / "study-slurm"
    study = optuna.load_study(study_name=name, storage=open_storage(url, heartbeat_interval=None))
    ckpts = checkpoint_dir(url, name)
    stopped: list[optuna.trial.FrozenTrial] = []

    def stop_mid_trial(signal_it, but: set[str]) -> str:
        """Stop the first task (none of ``but``) whose trial is past an epoch checkpoint."""
        found: list[optuna.trial.FrozenTrial] = []

        def mid_trial() -> bool:
            found[:] = [t for t in study.get_trials(states=(TrialState.RUNNING,))
                        if "worker" in t.user_attrs and task_of(t) not in but
                        and (ckpts / f"trial-{root(t)}" / "last.ckpt").exists()]
            return bool(found)

        wait_for(mid_trial, 240, logs)
        task = task_of(found[0])
        signal_it(task)
        wait_for(lambda: study.trials[found[0].number].state == TrialState.FAIL, 120, logs)
        stopped.append(found[0])
        return task

    # SIGTERM to every process of the task, then SLURM requeues it.
    requeued = stop_mid_trial(lambda task: subprocess.run(["scontrol", "requeue", task],
                                                          check=True), set())
    # SLURM's warning before a time limit (submitit asks for SIGUSR2), to the task's steps:
    # the task requeues itself.
    warned = stop_mid_trial(lambda task: subprocess.run(["scancel", "--signal=USR2", task],
                                                        check=True), {requeued})
    assert {requeued, warned} == {f"{job}_0", f"{job}_1"}
    # SLURM starts both again after the cluster's cred_expire (.ci/slurm: 10 s).
    wait_for(lambda: set(states(job).values()) <= ENDED, 300, logs)
    assert states(job) == {f"{job}_0": "COMPLETED", f"{job}_1": "COMPLETED"}
    assert restarts(requeued) == restarts(warned) == 1

    trials = study.get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert results(trials) == goal
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert sorted(t.number for t in failed) == sorted(t.number for t in stopped)
    for t in failed:
        assert t.user_attrs["fail_reason"].startswith("interrupted by SIGTERM")
        [rerun] = [r for r in trials if r.user_attrs.get("retry_of") == t.number]
        assert rerun.user_attrs["retry_reason"].startswith(f"trial {t.number}: interrupted")
    for t in trials:  # every re-run continued its chain's checkpoint
        if "retry_of" in t.user_attrs and t.state == TrialState.COMPLETE:
            assert t.user_attrs["resumed_from"].endswith(f"trial-{root(t)}/last.ckpt")
            assert t.user_attrs["start_epoch"] >= 1
    roots = Counter(root(t) for t in trials if t.state != TrialState.FAIL)
    assert sum(roots.values()) == goal and max(roots.values()) == 1  # no trial trained twice


@pytest.mark.slow
def test_the_readmes_commands_run_as_written(tmp_path, cluster):
    """At a test's size (synthetic data, tiny model, 2 one-epoch trials: flags the command
    line has, after the README's own) and with the journal under tmp_path: the array of 8
    tasks is submitted, status lists it, --cancel ends it and no trial is left RUNNING."""
    (block,) = readme_blocks(readme_section("On a SLURM cluster"), "bash")
    export, *commands = [shlex.split(line.split("#")[0]) for line in block.splitlines()]
    start, submit_, status, cancel = commands
    variable, value = export[1].split("=", 1)
    env = {**cluster, variable: value.replace("/shared/", f"{tmp_path}/")}
    tiny = [a for k, v in README_TINY.items() for a in ("--set", f"{k}={v}")]
    sweep(*start[3:], "--data", "synthetic", "--n-trials", "2", "--max-epochs", "1", *tiny,
          cwd=tmp_path, env=env)
    out = sweep(*submit_[3:], cwd=tmp_path, env=env)
    job = out.split("submitted SLURM job ")[1].split(":")[0]
    logs = tmp_path / "sweeps" / "vae-slurm" / "vae"
    assert "8 tasks, each a worker of study 'vae'" in out and str(logs) in out
    assert set(states(job)) == {f"{job}_{i}" for i in range(8)}
    study = optuna.load_study(study_name="vae", storage=open_storage(
        env[variable], heartbeat_interval=None))
    wait_for(lambda: any("worker" in t.user_attrs for t in study.get_trials()), 240, logs)
    lines = sweep(*status[3:], cwd=tmp_path, env=env).splitlines()
    assert lines[0].startswith("study 'vae' (journal://")
    assert lines[-1].startswith(f"SLURM job {job} (8 tasks, logs in {logs}): ")
    assert sweep(*cancel[3:], cwd=tmp_path, env=env).startswith(f"cancelled SLURM job {job} ")
    wait_for(lambda: set(states(job).values()) <= ENDED, 120, logs)
    assert "CANCELLED" in states(job).values()
    trials = study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    reruns = {t.user_attrs.get("retry_of") for t in trials}
    assert all(t.number in reruns for t in trials if t.state == TrialState.FAIL)
    assert sweep(*cancel[3:], cwd=tmp_path, env=env).startswith("nothing to cancel")
