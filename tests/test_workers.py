"""How a machine's workers are laid out: GPU slots pinned with CUDA_VISIBLE_DEVICES or CPU
processes, the threads each gets, and the environment a worker process starts with."""

import pytest

from sweep.errors import ParamError
from sweep.runner.create import default_study_name
from sweep.runner.processes import (
    THREADS_ENV,
    run_slots,
    threads_per_worker,
    worker_env,
    worker_slots,
)


@pytest.mark.parametrize("gpus,workers,per_gpu,visible,slots", [
    ([0, 1], None, 1, 2, ["0", "1"]),
    ([2, 3], None, 2, 8, ["2", "2", "3", "3"]),  # only the listed GPUs, K workers each
    ([0], None, 1, 1, ["0"]),  # named: pinned (so run in a process of its own)
    (None, 3, 1, 0, [None, None, None]),  # CPU workers leave CUDA_VISIBLE_DEVICES alone
    (None, None, 1, 2, ["0", "1"]),  # default: every visible GPU
    (None, None, 3, 1, ["0", "0", "0"]),
    (None, None, 1, 1, [None]),  # the only GPU, one worker: nothing to pin, in this process
    (None, None, 1, 0, [None]),  # no GPU: one worker, in the calling process
])
def test_worker_slots(gpus, workers, per_gpu, visible, slots):
    assert worker_slots(gpus, workers, per_gpu, visible) == slots


@pytest.mark.parametrize("gpus,workers,per_gpu,message", [
    ([0], 2, 1, "gpus and workers exclude each other; use trials_per_gpu"),
    (None, 0, 1, "workers must be >= 1, got 0"),
    (None, None, 0, "trials_per_gpu must be >= 1, got 0"),
    ([], None, 1, "gpus needs GPU ids like [0, 1], got []"),
    ([-1], None, 1, "gpus needs GPU ids like [0, 1], got [-1]"),
    ([7], None, 1, "gpus 7: no GPU 7 on this machine (4 visible: 0,1,2,3)"),  # not silently CPU
])
def test_worker_slots_refuse_bad_values_naming_the_parameter(gpus, workers, per_gpu, message):
    with pytest.raises(ParamError) as err:
        worker_slots(gpus, workers, per_gpu, 4)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("workers,threads,cores,expected", [
    (1, None, 8, 8), (2, None, 8, 4), (1, None, 3, 3), (4, None, 2, 1), (2, 3, 8, 3),
    # A share of 2 cores or fewer runs one thread: a second one cost more than it gave.
    (1, None, 2, 1), (3, None, 8, 1), (2, 2, 8, 2),
])
def test_threads_divide_the_cores_among_the_workers(monkeypatch, workers, threads, cores,
                                                    expected):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert threads_per_worker(workers, threads, cores) == expected


def test_threads_come_from_the_environment_unless_given(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "5")
    assert threads_per_worker(2, None, 8) == 5
    assert threads_per_worker(2, 1, 8) == 1
    with pytest.raises(ParamError, match="^threads must be >= 1"):
        threads_per_worker(1, 0, 8)


def test_a_gpu_worker_is_pinned_to_its_gpu_and_its_threads():
    env = worker_env(3, "1", 2)
    assert (env["CUDA_VISIBLE_DEVICES"], env["VAE_SWEEP_WORKER_ID"]) == ("1", "3")
    assert env["OMP_NUM_THREADS"] == env[THREADS_ENV] == "2"


def test_default_study_name_follows_the_dataset():
    assert default_study_name("cifar10") == "vae-cifar10"
    assert default_study_name("folder:/data/cifar/train/") == "vae-train"


def test_workers_get_the_storage_url_through_their_environment_not_argv(monkeypatch):
    """Every local user reads a process's argv (``ps``): the URL's password stays out."""
    import subprocess

    started: list[tuple[list[str], dict[str, str]]] = []

    class Done:
        returncode, pid = 0, 1

        def __init__(self, args: list[str], env: dict[str, str]) -> None:
            started.append((args, env))

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(subprocess, "Popen", Done)
    url = "postgresql://sweep:hunter2@db.example/sweeps"
    assert run_slots([None, None], 1, "s", url, None, run_here=lambda: None,
                     poll=lambda: None) == []
    assert len(started) == 2
    for args, env in started:
        assert not any("hunter2" in a for a in args), args
        assert env["VAE_SWEEP_STORAGE"] == url


# A stand-in for `python -m sweep worker`: counts its runs per slot in the folder it is
# given; the first run in slot 1 is killed by SIGKILL, as `kill -9` or the OOM killer would.
FAKE_WORKER = """
import os, signal, sys
from pathlib import Path
runs = Path(sys.argv[1]) / ("runs-" + os.environ["VAE_SWEEP_WORKER_ID"])
n = len(runs.read_text()) if runs.exists() else 0
runs.write_text("x" * (n + 1))
if os.environ["VAE_SWEEP_WORKER_ID"] == "1" and (n == 0 or sys.argv[2] == "always"):
    os.kill(os.getpid(), signal.SIGKILL)
"""


def fake_workers(monkeypatch, folder, kill: str = "first") -> None:
    import sys

    import sweep.runner.processes as processes

    monkeypatch.setattr(processes, "worker_command", lambda study, threads, timeout, model=None: [
        sys.executable, "-c", FAKE_WORKER, str(folder), kill])


def runs(folder) -> dict[str, int]:
    return {p.name: len(p.read_text()) for p in sorted(folder.glob("runs-*"))}


@pytest.mark.slow
def test_a_worker_killed_with_sigkill_is_replaced_while_budget_remains(tmp_path, monkeypatch,
                                                                       caplog):
    from sweep.runner.processes import lost_workers

    fake_workers(monkeypatch, tmp_path)
    with caplog.at_level("WARNING", logger="sweep.runner.processes"):
        lines = run_slots([None, None], 1, "s", "sqlite:///s.db", None, run_here=lambda: None,
                          poll=lambda: None, budget_left=lambda: True)
    assert runs(tmp_path) == {"runs-0": 1, "runs-1": 2}  # slot 1 ran again
    assert len(lines) == 1 and lines[0].startswith("worker 1 (pid ")
    assert " killed by SIGKILL; replaced by pid " in lines[0]
    assert [r.getMessage() for r in caplog.records] == lines  # said when it happened
    assert lost_workers(lines) == "1 worker lost, 1 replaced"


@pytest.mark.slow
def test_a_lost_worker_is_not_replaced_once_the_budget_is_spent_nor_without_end(tmp_path,
                                                                               monkeypatch):
    from sweep.runner.processes import MAX_REPLACEMENTS, lost_workers

    fake_workers(monkeypatch, tmp_path / "spent")
    (tmp_path / "spent").mkdir()
    lines = run_slots([None, None], 1, "s", "sqlite:///s.db", None, run_here=lambda: None,
                      poll=lambda: None, budget_left=lambda: False)
    assert runs(tmp_path / "spent") == {"runs-0": 1, "runs-1": 1}
    assert [line.split(": ", 1)[1] for line in lines] == ["killed by SIGKILL"]
    assert lost_workers(lines) == "1 worker lost, 0 replaced"
    fake_workers(monkeypatch, tmp_path, kill="always")  # every worker in slot 1 is killed
    lines = run_slots([None, None], 1, "s", "sqlite:///s.db", None, run_here=lambda: None,
                      poll=lambda: None, budget_left=lambda: True)
    assert runs(tmp_path) == {"runs-0": 1, "runs-1": 1 + MAX_REPLACEMENTS}
    assert lost_workers(lines) == (f"{1 + MAX_REPLACEMENTS} workers lost, {MAX_REPLACEMENTS} "
                                   "replaced")
