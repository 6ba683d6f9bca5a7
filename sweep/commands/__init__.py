"""One module per command of ``python -m sweep``: each holds its ``HELP``, the shared flag
groups it takes (``PARENTS``, built in ``sweep.cli``), ``add_arguments(parser)`` and
``run(args) -> int``; ``STDOUT_IS_DATA = True`` sends the sweep's events to stderr. Modules
import nothing heavy at the top, so that bad input is refused before torch loads; the work
itself lives in the modules of ``sweep`` they call.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.config import Config, parse_overrides
from sweep.errors import UsageError

if TYPE_CHECKING:
    from sweep.runner.study import RunOptions

# The order ``python -m sweep --help`` lists them in.
NAMES = ("train", "start", "resume", "worker", "submit", "status", "report", "export",
         "dashboard", "copy", "bench")


def fixed_fields(items: list[str] | None, data: str | None = None,
                 max_epochs: int | None = None, model: str | None = None) -> dict[str, Any]:
    """Config fields from ``--set key=value`` items, ``--data``, ``--max-epochs`` and
    ``--model`` (the shorthands win over ``--set dataset=`` and the like)."""
    values = parse_overrides(items or [])
    if model:
        values["model"] = model
    if data:
        values["dataset"] = data
    if max_epochs is not None:
        values["max_epochs"] = max_epochs
    return values


def run_options(args: argparse.Namespace) -> RunOptions:
    """The flags of the ``run`` group as the library's ``RunOptions``."""
    from sweep.runner.study import RunOptions

    return RunOptions(gpus=args.gpus, workers=args.workers, trials_per_gpu=args.trials_per_gpu,
                      threads=args.threads, timeout=args.timeout, model=args.model)


def config_keys() -> str:
    """The help's list of Config fields with their defaults (the seed configuration)."""
    fields = ", ".join(f"{k}={v}" for k, v in Config().to_dict().items())
    return (f"config keys and defaults: {fields}; model.NAME: a knob of the network (conv: "
            "model.depth=4, model.width=32)")


def add_iw_samples(p: argparse.ArgumentParser) -> None:
    """``--iw-samples K`` of export and report (``sweep.answer.test_nll``)."""
    p.add_argument("--iw-samples", type=_positive_int, metavar="K",
                   help="also bound the test NLL with K importance samples (Burda et al. "
                        "2015, eq. 8) beside the ELBO, bits/dim under the trial's own "
                        f"likelihood; needs --test-data. {IW_TIMING}")


# Measured once: export of a CIFAR-10 trial (conv, latent 42, discretized_logistic, 400
# steps) with --test-data folder:.../test --iw-samples 100 --threads 2; the whole export took
# 11 min 11 s of wall time, 343 CPU-seconds (about 3 min on 2 idle cores).
IW_TIMING = ("Measured 2026-12-03: K = 100 over the 10,000 CIFAR-10 test images took 652 s "
             "(both figures; a conv network under discretized_logistic) on 2 CPU cores shared "
             "at load average 4.6-6.4; the time grows as images x K.")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def check_output(flag: str, path: str | Path, *, folder: bool = False) -> None:
    """Refuse an output path that cannot be written, before any work (a long run that fails
    to write its result at the end is lost), leaving nothing behind: whether the directory
    takes a file is tried with a probe file, removed at once.

    A file (``folder=False``) needs an existing, writable directory and must not be a
    directory; a folder may be missing (it is created then, so its nearest existing parent
    must be a writable directory) and must not be a file.
    """
    p = Path(path).absolute()
    if folder:
        if p.exists() and not p.is_dir():
            raise UsageError(f"{flag} {path}: a file is in the way (expected a directory)")
        where = next(a for a in (p, *p.parents) if a.exists())
    else:
        if p.is_dir():
            raise UsageError(f"{flag} {path}: is a directory (expected a file)")
        if not p.parent.is_dir():
            raise UsageError(f"{flag} {path}: directory {Path(path).parent} does not exist")
        if p.exists() and not os.access(p, os.W_OK):
            raise UsageError(f"{flag} {path}: the file is not writable")
        where = p.parent
    if not where.is_dir():
        raise UsageError(f"{flag} {path}: {where} is not a directory")
    # Tried, not read from the mode bits: root passes os.access anywhere, and /proc, /sys or
    # a read-only mount refuse a file that the bits allow. The probe is removed at once.
    try:
        fd, probe = tempfile.mkstemp(dir=where, prefix=".vae-sweep-probe-")
    except OSError as err:
        raise UsageError(f"{flag} {path}: cannot write in {where} "
                         f"({err.strerror or err})") from None
    os.close(fd)
    os.unlink(probe)
