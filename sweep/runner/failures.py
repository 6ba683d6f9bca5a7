"""A failed trial's reason in one line (out of memory, disk full, or the error), and the
memory a worker frees after running out of it, before its next trial."""

from __future__ import annotations

import errno
import gc

from sweep.storage import trial_record


def describe(err: BaseException) -> str:
    """One line saying why a trial failed."""
    first = trial_record.first_line(err)[:300]
    text = str(err).lower()
    # torch's CPU allocator says "DefaultCPUAllocator: can't allocate memory" (RuntimeError).
    if isinstance(err, MemoryError) or "out of memory" in text or (
            "can't allocate memory" in text) or type(err).__name__ == "OutOfMemoryError" or (
            isinstance(err, OSError) and err.errno == errno.ENOMEM):
        return f"out of memory: {first or type(err).__name__}"
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return f"disk full: {first}"
    return f"{type(err).__name__}: {first}"


def is_oom(reason: str) -> bool:
    return reason.startswith("out of memory")


def free_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
