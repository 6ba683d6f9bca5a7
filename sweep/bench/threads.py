"""The bench's thread rows: the project's fit at each fixed thread count and at the default
(``sweep.runner.processes.threads_per_worker``), idle and with N busy processes beside it.

A repeat runs every count idle, then every count loaded (``busy`` single-core spinning
processes started for that block and ended after it), in an order rotated per repeat, so
the per-repeat ratios ``default / best fixed count`` cancel slow drifts of a shared
machine's speed. The OpenMP wait policy is the one this process's torch loaded with
(``python -m sweep`` sets the passive one): it is reported beside the rows.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import torch

from models.config import Config
from models.train import fit
from sweep.runner.processes import threads_per_worker

BUSY_CODE = "while True: pass"


@contextlib.contextmanager
def busy(n: int) -> Iterator[None]:
    """``n`` processes that each keep one core busy while the block runs."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_CODE]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def fixed_counts(cores: int) -> list[int]:
    """The thread counts measured: powers of two up to the cores, and the cores."""
    counts = {cores}
    k = 1
    while k < cores:
        counts.add(k)
        k *= 2
    return sorted(counts)


def thread_rows(cfg: Config, images: torch.Tensor, steps: int, repeats: int, busy_n: int,
                say: Any = print) -> dict[str, Any]:
    """Images/s of ``steps`` training steps at each count, idle and beside ``busy_n`` busy
    processes (no loaded row when 0), and each load's ``default_over_best``: the median
    over repeats of the default's images/s over the best fixed count's (best by median)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    default = threads_per_worker(1, cores=cores)
    names = [*(str(k) for k in fixed_counts(cores)), "default"]
    counts = {name: default if name == "default" else int(name) for name in names}
    loads = {"idle": 0, **({"loaded": busy_n} if busy_n else {})}
    rows: dict[str, dict[str, list[float]]] = {load: {name: [] for name in names}
                                               for load in loads}
    before = torch.get_num_threads()
    run = cfg.replace(max_steps=steps)
    try:
        for k in range(repeats):
            for load, n in loads.items():
                with busy(n):
                    for name in names[k % len(names):] + names[:k % len(names)]:
                        torch.set_num_threads(counts[name])
                        rate = fit(run, images=images, accelerator="cpu").metrics[
                            "images_per_sec"]
                        rows[load][name].append(rate)
                say(f"threads {k + 1}/{repeats}, {load}: " + ", ".join(
                    f"{name} {rows[load][name][-1]:.0f}" for name in names) + " images/s")
    finally:
        torch.set_num_threads(before)
    out: dict[str, Any] = {"default": default, "busy_processes": busy_n,
                           "wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset")}
    for load, by in rows.items():
        fixed = [name for name in names if name != "default"]
        best = max(fixed, key=lambda name: statistics.median(by[name]))
        out[load] = {
            **{name: round(statistics.median(values), 1) for name, values in by.items()},
            "best_fixed": int(best),
            "default_over_best": round(statistics.median(
                d / b for d, b in zip(by["default"], by[best], strict=True)), 3),
            "repeats": {name: [round(v, 1) for v in values] for name, values in by.items()}}
    return out
