"""How a machine's share of a study is laid out: worker slots, threads, and the processes.

``worker_slots`` maps ``gpus``/``workers``/``trials_per_gpu`` to one entry per worker
(the CUDA_VISIBLE_DEVICES it gets), ``threads_per_worker`` divides the cores among them so
that N CPU workers do not each start a thread per core (measured on 2 cores: one tiny fit
took 0.72 s with one thread and 3.8-32 s with torch's default under load). ``run_slots``
runs a single slot that needs no device of its own in this process, else one ``python -m sweep
worker`` process per slot, shows the study's progress while they run, passes SIGTERM/SIGINT on
to them, replaces one that was lost (killed by a signal: ``kill -9``, the kernel's OOM killer)
while the study's budget remains, and names each one that died with its exit code. The
calling process keeps its environment and, once the run is over, its torch thread count.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from sweep.errors import ParamError, RunError, UsageError
from sweep.scoped import environ_kept
from sweep.storage.database import STORAGE_ENV

THREADS_ENV = "VAE_SWEEP_THREADS"
WORKER_ID_ENV = "VAE_SWEEP_WORKER_ID"

log = logging.getLogger(__name__)


class WorkerFailed(RunError):
    """The study's goal was not met: worker processes died, or the storage failed."""


def check_slot_flags(gpus: list[int] | None, workers: int | None, per_gpu: int) -> None:
    """Refuse values that cannot lay out workers (before anything is imported or written)."""
    if per_gpu < 1:
        raise ParamError("trials_per_gpu", f"must be >= 1, got {per_gpu}")
    if gpus is not None:
        if workers is not None:
            raise ParamError("gpus", "and {workers} exclude each other; "
                                     "use {trials_per_gpu} for several workers per GPU")
        if not gpus or any(not isinstance(g, int) or g < 0 for g in gpus):
            raise ParamError("gpus", f"needs GPU ids like [0, 1], got {gpus!r}")
    if workers is not None and workers < 1:
        raise ParamError("workers", f"must be >= 1, got {workers}")


def worker_slots(gpus: list[int] | None, workers: int | None, per_gpu: int,
                 device_count: int) -> list[str | None]:
    """One entry per worker: the CUDA_VISIBLE_DEVICES value it gets (None: leave as is).

    ``gpus=[0, 1]`` gives ``per_gpu`` workers to each listed GPU; ``workers=N`` runs N
    workers on what the machine has (CPU here); with neither, every visible GPU gets
    ``per_gpu`` workers, and a machine with no GPU, or one that a single worker takes,
    runs that worker in this process.
    """
    check_slot_flags(gpus, workers, per_gpu)
    if gpus is not None:
        # Checked before anything is written: a worker given a GPU that is not there would
        # train on the CPU, silently.
        missing = [g for g in gpus if g >= device_count]
        if missing:
            visible = ",".join(map(str, range(device_count))) or "none"
            raise ParamError("gpus", f"{','.join(map(str, gpus))}: no GPU "
                             f"{', '.join(map(str, missing))} on this machine ({device_count} "
                             f"visible: {visible})")
        return [str(g) for g in gpus for _ in range(per_gpu)]
    if workers is not None:
        return [None] * workers
    if device_count == 1 and per_gpu == 1:  # the only GPU it sees: nothing to pin
        return [None]
    return [str(g) for g in range(device_count) for _ in range(per_gpu)] or [None]


def check_threads(threads: int | None) -> None:
    """Refuse ``--threads`` below 1, and a $VAE_SWEEP_THREADS that would be used and is not
    a whole number >= 1."""
    if threads is not None and threads < 1:
        raise ParamError("threads", f"must be >= 1, got {threads}")
    if threads is None:
        env_threads()


def env_threads() -> int | None:
    """$VAE_SWEEP_THREADS as a number (None: unset); UsageError naming it otherwise."""
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"{THREADS_ENV}={text!r}: expected a whole number >= 1")
    return int(text)


# A share of this many cores or fewer runs one thread. On 2 cores (batch 40, CIFAR-10, the
# passive wait policy below; ``python -m sweep bench`` thread rows, 5 alternating repeats) one
# thread trained at 1248 images/s idle against 1155 for two, and at 822 against 659 beside two
# busy processes: at this model size a second thread's wake-ups and barriers cost more than
# its half of each convolution gives back, and it leaves a core to the rest of the machine.
SMALL_SHARE = 2


def threads_per_worker(workers: int, threads: int | None = None, cores: int | None = None
                       ) -> int:
    """CPU threads each worker's torch uses: ``threads`` if given, else $VAE_SWEEP_THREADS,
    else the cores this process may run on divided among the workers, or 1 where that share
    is 2 or fewer (``SMALL_SHARE``)."""
    check_threads(threads)
    if threads is None:
        threads = env_threads()
    if threads is not None:
        return threads
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    share = cores // workers
    return share if share > SMALL_SHARE else 1


# OpenMP threads that spin while they wait for work take a core from every other process on
# a busy machine: on 2 cores with two busy processes beside it, a 2-thread fit ran at 134-241
# images/s against 547 with the passive policy. libgomp reads the policy once, when torch
# loads it, so it goes into the environment of every entry point before torch is imported.
WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE"}


def wait_policy(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables to add to ``environ`` so that a torch loaded under it waits without
    spinning; none that ``environ`` sets already (the user's choice wins)."""
    return {k: v for k, v in WAIT_POLICY.items() if k not in environ}


def use_threads(threads: int) -> None:
    """Pin this process's torch to ``threads`` intra-op threads."""
    import torch

    torch.set_num_threads(threads)


@contextmanager
def threads_for_run(threads: int) -> Iterator[None]:
    """torch at ``threads`` intra-op threads for the run, and the caller's environment and
    thread count back after it."""
    import torch

    before = torch.get_num_threads()
    use_threads(threads)
    try:
        with environ_kept():
            yield
    finally:
        use_threads(before)


def worker_command(study: str, threads: int, timeout: float | None,
                   model: str | None = None) -> list[str]:
    """The command line of one worker process. Its slot and the storage URL come through
    the environment: a command line is readable by every local user (``ps``), and the URL
    may hold the database's password. ``model``: the network it may import (``--model``)."""
    cmd = [sys.executable, "-m", "sweep", "worker", "--study", study,
           "--workers", "1", "--threads", str(threads)]
    return (cmd + (["--timeout", str(timeout)] if timeout else [])
            + (["--model", model] if model else []))


def worker_env(index: int, gpu: str | None, threads: int) -> dict[str, str]:
    env = dict(os.environ, **wait_policy(os.environ),
               **{WORKER_ID_ENV: str(index), THREADS_ENV: str(threads),
                  "OMP_NUM_THREADS": str(threads)})
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def exit_words(code: int) -> str:
    """A worker's exit code in words: ``killed by SIGKILL``, ``exit 1``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code == FULL_EXIT:
        return FULL_WORDS
    if code in STOPPED:
        return f"stopped by {STOPPED[code]} (its trial re-queued)"
    return f"exit {code}"


# What a worker started by run_slots exits with when the database is full: it says nothing
# itself, so that its parent says it once for all of them.
FULL_EXIT = 3
FULL_WORDS = "stopped: the database is full"

# What a worker that was stopped by a signal exits with (128 + the signal), having recorded
# and re-queued its trial: not a crash.
STOPPED = {128 + signal.SIGINT: "SIGINT", 128 + signal.SIGTERM: "SIGTERM"}


# Workers started in one slot after the first was lost, at most: a machine that kills every
# worker (a memory limit, a watchdog) is not helped by starting them without end.
MAX_REPLACEMENTS = 3
LOST = ": killed by "  # in exit_words' line for a worker a signal killed
REPLACED = "; replaced by pid "


def lost_workers(lines: list[str]) -> str:
    """How many workers ``run_slots``'s ``lines`` say were lost and replaced, for the run's
    final line (``2 workers lost, 2 replaced``); empty when none was lost."""
    lost = [line for line in lines if LOST in line]
    if not lost:
        return ""
    replaced = sum(REPLACED in line for line in lost)
    return f"{len(lost)} worker{'s' if len(lost) > 1 else ''} lost, {replaced} replaced"


class _Workers:
    """``run_slots``'s worker processes, one a slot, and the replacements of lost ones."""

    def __init__(self, slots: list[str | None], threads: int, study: str, storage: str,
                 timeout: float | None, budget_left: Callable[[], bool],
                 model: str | None = None) -> None:
        self.slots, self.threads, self.study, self.storage = slots, threads, study, storage
        self.timeout, self.budget_left, self.model = timeout, budget_left, model
        self.started = time.monotonic()
        self.procs = [self._launch(i, timeout) for i in range(len(slots))]
        self.replaced = [0] * len(slots)
        self.lines: list[str] = []  # one per replaced worker
        self.told: set[int] = set()  # the pids a signal was passed on to

    def _launch(self, i: int, seconds: float | None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(worker_command(self.study, self.threads, seconds, self.model),
                                env={**worker_env(i, self.slots[i], self.threads),
                                     STORAGE_ENV: self.storage})

    def tell(self, signum: int, untold_only: bool = False) -> None:
        """Pass ``signum`` on to every running worker (``untold_only``: those not told yet)."""
        for p in self.procs:
            if p.poll() is None and not (untold_only and p.pid in self.told):
                p.send_signal(signum)
                self.told.add(p.pid)

    def running(self) -> bool:
        return any(p.poll() is None for p in self.procs)

    def replace_lost(self) -> None:
        """A new worker in each slot whose worker was lost, while there is work left: the
        budget (``budget_left``) and the time (what is left of the timeout goes to it)."""
        for i, p in enumerate(self.procs):
            code = p.poll()
            spent = time.monotonic() - self.started
            if (code is None or code >= 0 or self.replaced[i] >= MAX_REPLACEMENTS
                    or (self.timeout is not None and spent >= self.timeout)
                    or not self.budget_left()):
                continue
            self.procs[i] = self._launch(i, None if self.timeout is None else
                                         self.timeout - spent)
            self.replaced[i] += 1
            self.lines.append(f"worker {i} (pid {p.pid}): {exit_words(code)}{REPLACED}"
                              f"{self.procs[i].pid}")
            log.warning("%s", self.lines[-1])

    def ended_badly(self) -> list[str]:
        return self.lines + [f"worker {i} (pid {p.pid}): {exit_words(p.returncode)}"
                             for i, p in enumerate(self.procs) if p.returncode]


def run_slots(slots: list[str | None], threads: int, study: str, storage: str,
              timeout: float | None, run_here: Callable[[], None],
              poll: Callable[[], None],
              budget_left: Callable[[], bool] = lambda: False,
              model: str | None = None) -> list[str]:
    """Run one worker per slot: ``run_here`` in this process when there is a single slot
    that is not pinned to a GPU, else one subprocess each, calling ``poll`` (the progress
    line) while they run; each is given ``model`` as its ``--model``.

    A worker process killed by a signal (lost: it recorded nothing, and its trial is re-run
    once its heartbeat is stale) is replaced in its slot while ``budget_left()`` and the
    timeout has not passed (at most MAX_REPLACEMENTS times a slot); the replacement is
    logged. Returns a line for each worker process that did not end well (``worker 2 (pid
    77): killed by SIGKILL; replaced by pid 80``). SIGTERM or SIGINT to this process is
    passed on to every worker, which records and re-queues its trial and exits; once all
    have, KeyboardInterrupt is raised with the signal's name.
    """
    if slots == [None]:
        # A slot pinned to a GPU runs in a process of its own even when it is the only one:
        # CUDA_VISIBLE_DEVICES only works before CUDA starts, and set here it would stay set
        # in the caller (a notebook's kernel) after the run.
        with threads_for_run(threads):
            run_here()
        return []
    workers = _Workers(slots, threads, study, storage, timeout, budget_left, model)
    received: list[str] = []

    def forward(signum: int, frame: object) -> None:
        if not received:
            received.append(signal.Signals(signum).name)
        workers.tell(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            poll()
            if received:  # a replacement started as the signal came is told too
                workers.tell(signal.Signals[received[0]], untold_only=True)
            else:
                workers.replace_lost()
            if not workers.running():
                break
            time.sleep(1)
        poll()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if received:
        raise KeyboardInterrupt(received[0])
    return workers.ended_badly()
