"""A study's workers as a SLURM job array, submitted through submitit (the library Hydra's
SLURM launcher is built on): ``submit``, ``job_states``, ``cancel``.

- **One array of N tasks**, each running ``python -m sweep worker --study NAME`` on its node
  (``TaskWorker``): a worker per GPU that SLURM gave the task (``CUDA_VISIBLE_DEVICES``), or
  one on the CPU. The storage URL reaches the tasks through their environment, never
  through argv or submitit's pickle, since it may hold a password. Every task takes trials
  until the study's budget is spent, then ends COMPLETED; the budget is claimed under the
  study lock, so any number of tasks, started or requeued at any time, finish it exactly.
- **The storage must be reachable from every node**: a journal on the shared file system
  (``journal:///shared/path/study.log``) or a database server. An SQLite file is refused:
  its locks do not hold across machines.
- **The job ids are kept in the study** (its user attr ``JOBS_KEY``), so ``status`` lists
  the tasks' SLURM states and ``cancel`` ends them, from any machine that reaches both.
- **Preemption and time limits.** SLURM sends SIGTERM to every process of a task that it
  preempts, requeues or cancels, and the warning signal (``--signal``; submitit asks for
  SIGUSR2 ``signal_delay_s`` = 90 s before the time limit) to a task about to time out. A
  worker answers SIGTERM as it always does (``sweep.runner.interrupts``): its trial ends
  FAIL with one re-run queued that continues from its last epoch checkpoint, and it exits
  143. The task's own process turns the warning into that SIGTERM, waits for the worker to
  record its trial, and requeues the task (``scontrol requeue``): a time limit costs no
  trial, only the epoch under way. The worker ignores the warning itself (SLURM signals
  every process of the task). SLURM starts a requeued task again once it is eligible
  (after the cluster's ``cred_expire``, 120 s by default), and it joins the study where it
  stands.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep.errors import ParamError, RunError, UsageError
from sweep.scoped import environ_kept
from sweep.storage import settings as study_settings
from sweep.storage.database import (
    STORAGE_ENV,
    open_study,
    pinned,
    resolve_storage_url,
    shown,
    storage_file,
)
from sweep.storage.names import safe_name

if TYPE_CHECKING:
    import optuna

JOBS_KEY = "vae_sweep_slurm_jobs"
# Requeues of one task after its time limit before submitit gives up on it: the study's
# budget, not this, decides when the work ends.
MAX_TIMEOUTS = 1000
# submitit's parameters that take a list or a table: not settable as KEY=VALUE.
_NOT_SCALAR = {"setup", "teardown", "srun_args", "additional_parameters"}
# Task states after which nothing more runs (SLURM's, and ours for a task it forgot).
ENDED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL",
                   "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "ENDED"})
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


@dataclasses.dataclass(frozen=True)
class Submitted:
    """One array ``submit`` made: its SLURM job id, its task count, submitit's folder (the
    tasks' logs) and the parameters it was given."""

    job: str
    tasks: int
    folder: str
    slurm: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ArrayStates:
    """The states SLURM gives the tasks of one array (``12_3`` -> ``RUNNING``); a task it
    no longer knows of (ended longer ago than the cluster keeps records) is ``ENDED``.
    ``note``: why there are no states (no SLURM here)."""

    job: str
    tasks: int
    folder: str
    states: dict[str, str]
    note: str | None = None


def parse_slurm(text: str) -> dict[str, Any]:
    """``partition=gpu,gpus_per_node=4,time=04:00:00`` as submitit's SlurmExecutor
    parameters: numbers as ints, ``time`` (SLURM's formats) as minutes. ParamError naming
    the bad item; unknown keys are refused when the executor is made (``submit``)."""
    params: dict[str, Any] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key or not value.strip():
            raise ParamError("slurm", f"{item!r}: expected KEY=VALUE items, comma-separated "
                                      "(e.g. partition=gpu,gpus_per_node=4,time=04:00:00)")
        if key in _NOT_SCALAR:
            raise ParamError("slurm", f"{key} takes a list or a table: not settable here")
        value = value.strip()
        params[key] = _minutes(value) if key == "time" else (
            int(value) if value.isdigit() else value)
    return params


def _minutes(text: str) -> int:
    """A SLURM time limit (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``) in whole
    minutes, rounded up (submitit's ``time``)."""
    match = _TIME.match(text)
    if not match:
        raise ParamError("slurm", f"time={text}: expected minutes, HH:MM:SS or D-HH:MM:SS")
    days, first, second, third = (int(g) if g else 0 for g in match.groups())
    if match.group(1):  # days-hours[:minutes[:seconds]]
        seconds = ((days * 24 + first) * 60 + second) * 60 + third
    elif match.group(4):  # hours:minutes:seconds
        seconds = (first * 60 + second) * 60 + third
    else:  # minutes[:seconds]
        seconds = first * 60 + second
    return max(1, math.ceil(seconds / 60))


def default_folder(url: str, study: str) -> Path:
    """submitit's folder (pickles, each task's stdout and stderr): beside the journal or
    database file (``<stem>-slurm/<study>``: on the shared file system with it), else
    ``./vae-sweep-slurm/<study>``."""
    path = storage_file(url)
    root = path.parent / f"{path.stem}-slurm" if path else Path("vae-sweep-slurm")
    return (root / safe_name(study)).absolute()


def slurm_executor(folder: Path, params: Mapping[str, Any], study: str) -> Any:
    """submitit's SlurmExecutor for ``params``; UsageError when there is no SLURM here,
    ParamError for a parameter it does not take."""
    try:
        import submitit
    except ImportError:
        raise UsageError("submitting to SLURM needs submitit: pip install "
                         "'vae-sweep[slurm]'") from None
    try:
        executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=MAX_TIMEOUTS)
    except RuntimeError as err:  # submitit's "Could not detect srun"
        raise UsageError(f"no SLURM on this machine: {err}") from None
    try:
        executor.update_parameters(**{"job_name": f"vae-sweep-{study}", **params})
    except (ValueError, TypeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ParamError("slurm", f"{first} (submitit's SlurmExecutor parameters: "
                                  "partition, time, gpus_per_node, cpus_per_task, mem, "
                                  "account, qos, constraint, signal_delay_s, ...)") from None
    return executor


def submit(study: str, *, storage: str | None = None, slurm: Mapping[str, Any] | None = None,
           jobs: int = 1, folder: str | Path | None = None) -> Submitted:
    """Submit ``jobs`` workers of ``study`` as one SLURM job array (see the module
    docstring), and keep its id in the study. Bad input raises before anything is
    submitted or written."""
    if jobs < 1:
        raise ParamError("jobs", f"must be >= 1, got {jobs}")
    params = dict(slurm or {})
    if "time" not in params:  # submitit's default would requeue every task each 5 minutes
        raise ParamError("slurm", "needs time=HH:MM:SS, the tasks' time limit (each task "
                                  "requeues itself when it is reached)")
    url = pinned(resolve_storage_url(storage))
    if url.startswith("sqlite"):
        raise ParamError("storage", f"{shown(url)}: an SQLite file cannot be shared by the "
                                    "nodes of a cluster (its locks do not hold on NFS or "
                                    "Lustre); use journal:///shared/path/study.log or a "
                                    "database server")
    loaded, _, _ = open_study(url, study)
    study_settings.load(loaded)  # made by start: its workers know what to run
    where = Path(folder).absolute() if folder else default_folder(url, study)
    executor = slurm_executor(where, params, study)
    with environ_kept():
        os.environ[STORAGE_ENV] = url  # sbatch passes the environment on to the tasks
        try:
            with executor.batch():
                handles = [executor.submit(TaskWorker(study)) for _ in range(jobs)]
        except (subprocess.CalledProcessError, OSError) as err:
            raise UsageError(f"sbatch refused the array: {_said(err)}") from None
    job = str(handles[0].job_id).split("_")[0]
    done = Submitted(job, jobs, str(where), params)
    record = {**dataclasses.asdict(done), "submitted": datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds")}
    loaded.set_user_attr(JOBS_KEY, [*loaded.user_attrs.get(JOBS_KEY, []), record])
    return done


def _said(err: BaseException) -> str:
    """The first line of what sbatch (or the OS) said."""
    out = getattr(err, "stderr", None) or getattr(err, "output", None) or str(err)
    text = out.decode() if isinstance(out, bytes) else str(out)
    return (text.strip().splitlines() or [type(err).__name__])[0][:300]


def recorded(study: optuna.Study) -> list[dict[str, Any]]:
    """The arrays ``submit`` recorded in ``study``, oldest first."""
    return list(study.user_attrs.get(JOBS_KEY, []))


def job_states(study: optuna.Study) -> list[ArrayStates]:
    """Each recorded array with its tasks' states, from ``squeue`` (see ArrayStates)."""
    out = []
    for rec in recorded(study):
        job, tasks, folder = str(rec["job"]), int(rec["tasks"]), str(rec["folder"])
        try:
            done = subprocess.run(["squeue", "--noheader", "--array", "--states=all",
                                   f"--jobs={job}", "--format=%i|%T"],
                                  capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as err:
            out.append(ArrayStates(job, tasks, folder, {}, f"no states: squeue: {err}"))
            continue
        states = dict(line.split("|", 1) for line in done.stdout.splitlines() if "|" in line)
        ids = [f"{job}_{i}" for i in range(tasks)] if tasks > 1 else [job]
        out.append(ArrayStates(job, tasks, folder, {i: states.get(i, "ENDED") for i in ids}))
    return out


def render_states(arrays: list[ArrayStates]) -> str:
    """One line per array: ``SLURM job 12 (8 tasks): 2 RUNNING (12_0, 12_1), 6 PENDING``."""
    lines = []
    for a in arrays:
        head = f"SLURM job {a.job} ({a.tasks} task{'s' * (a.tasks != 1)}, logs in {a.folder})"
        if a.note:
            lines.append(f"{head}: {a.note}")
            continue
        counts = Counter(a.states.values())
        parts = [f"{n} {state}" + (f" ({', '.join(t for t, s in a.states.items() if s == state)})"
                                   if state == "RUNNING" else "")
                 for state, n in sorted(counts.items())]
        lines.append(f"{head}: {', '.join(parts)}")
    return "\n".join(lines)


def cancel(study: str, *, storage: str | None = None) -> list[str]:
    """End every array ``submit`` recorded for ``study`` that has a task still queued or
    running (``scancel``: their workers get SIGTERM, record their trials with re-runs
    queued, and exit). Returns the job ids it cancelled (none: every task had ended)."""
    loaded, _, _ = open_study(pinned(resolve_storage_url(storage)), study)
    if not recorded(loaded):
        raise UsageError(f"study {study!r} has no SLURM jobs (submit records them)")
    jobs = [a.job for a in job_states(loaded)
            if a.note or any(s not in ENDED for s in a.states.values())]
    if not jobs:
        return []
    try:
        subprocess.run(["scancel", *jobs], check=True, capture_output=True, text=True,
                       timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        raise RunError(f"scancel {' '.join(jobs)}: {_said(err)}") from None
    return jobs


class TaskWorker:
    """What each task of the array runs (submitit pickles it and calls it on the node): the
    ``worker`` command, with SLURM's warning signal turned into a SIGTERM to it and a
    requeue of the task (see the module docstring). Returns the worker's exit code (0: the
    budget is spent; 143: stopped by SIGTERM, its trial re-queued); RunError for any other."""

    def __init__(self, study: str) -> None:
        self.study = study

    def __call__(self) -> int:
        import submitit

        warning = signal.Signals[f"SIG{submitit.JobEnvironment.USR_SIG}"]
        worker = subprocess.Popen(  # the warning is this process's to answer, not the worker's
            [sys.executable, "-m", "sweep", "worker", "--study", self.study],
            preexec_fn=lambda: signal.signal(warning, signal.SIG_IGN))
        warned: list[int] = []

        def stop(signum: int, frame: object) -> None:
            if signum == warning:
                warned.append(signum)
            worker.send_signal(signal.SIGTERM)  # a second one is ignored by the worker

        old = {s: signal.signal(s, stop) for s in (warning, signal.SIGTERM)}
        try:
            code = worker.wait()
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
        if warned:  # the time limit is near: this task goes back in the queue
            task = submitit.JobEnvironment().job_id
            try:
                subprocess.run(["scontrol", "requeue", task], check=True, capture_output=True,
                               text=True, timeout=60)
            except (OSError, subprocess.SubprocessError) as err:  # JobRequeue=0, say
                raise RunError(f"scontrol requeue {task}: {_said(err)}; its worker's trial "
                               "is queued again, another task or submit runs it") from None
            return code
        if code in (0, 128 + signal.SIGTERM, 128 + signal.SIGINT):
            return code
        raise RunError(f"the worker of study {self.study!r} exited {code}")
