"""The command line: ``python -m sweep COMMAND``; a table of commands (``sweep.commands``),
shared flags in parent parsers.

Every bad input ends with exit code 2 and one line on stderr naming what is wrong, before
anything is written (``sweep.errors.BAD_INPUT``): the library names its parameters
(``n_trials must be >= 0``), ``FLAGS`` turns them into the flags that set them. The sweep's
events (the ``sweep`` logger) are printed while a command runs (``sweep.logs.printed``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from importlib import metadata
from typing import Any, NoReturn

from sweep.commands import NAMES
from sweep.errors import BAD_INPUT, DatabaseFull, ParamError, RunError
from sweep.logs import printed
from sweep.runner.processes import (
    FULL_EXIT,
    THREADS_ENV,
    WORKER_ID_ENV,
    env_threads,
    wait_policy,
)
from sweep.storage.database import STORAGE_ENV
from sweep.storage.outages import outage_wait_s

# The library's parameters (ParamError.param, and others named in its message) as the
# command line sets them: the one place where the two sets of names meet.
FLAGS = {
    "space": "--space",
    "config": "--config",
    "study_name": "--study",
    "storage": "--storage",
    "n_trials": "--n-trials",
    "heartbeat": "--heartbeat",
    "artifacts": "--artifacts",
    "gpus": "--gpus",
    "workers": "--workers",
    "trials_per_gpu": "--trials-per-gpu",
    "threads": "--threads",
    "timeout": "--timeout",
    "trial": "--trial",
    "test_data": "--test-data",
    "model": "--model",
    "slurm": "--slurm",
    "jobs": "--jobs",
}


def flag(param: str) -> str:
    return FLAGS.get(param, param)


def gpu_ids(text: str) -> list[int]:
    """``--gpus 0,1`` as the library's ``gpus=[0, 1]``."""
    try:
        ids = [int(g) for g in text.split(",") if g.strip()]
    except ValueError:
        ids = []
    if not ids or min(ids) < 0:
        raise argparse.ArgumentTypeError(f"expected GPU ids like 0,1, got {text!r}")
    return ids


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (no usage block), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parents() -> dict[str, Parser]:
    storage = Parser(add_help=False)
    storage.add_argument("--storage", default=os.environ.get(STORAGE_ENV),
                         help="sqlite:///FILE, journal:///FILE (a file every machine "
                              "shares, no server), postgresql://... or mysql://... (default: "
                              f"${STORAGE_ENV}, else sqlite:///sweeps.db)")
    threads = Parser(add_help=False)
    threads.add_argument("--threads", type=int,
                         help=f"CPU threads per training process (default: ${THREADS_ENV}, "
                              "else the cores divided among this machine's workers; 1 where "
                              "that share is 2 or fewer)")
    run = Parser(add_help=False, parents=[threads])
    run.add_argument("--model", metavar="BUILDER",
                     help="the network: conv (the default), resnet, mlp, package.module:build "
                          "or path/to/my_vae.py:build, a function (shape, latent_dim, **knobs) "
                          "-> (encoder, decoder); a study's workers must name the same one")
    run.add_argument("--gpus", type=gpu_ids,
                     help="comma-separated GPU ids (default: every visible GPU)")
    run.add_argument("--workers", type=int, help="worker processes on a machine without GPUs")
    run.add_argument("--trials-per-gpu", type=int, default=1,
                     help="worker slots per GPU (default: 1)")
    run.add_argument("--timeout", type=float, help="stop starting trials after S seconds")
    return {"storage": storage, "threads": threads, "run": run}


def _version() -> str:
    try:
        return metadata.version("vae-sweep")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m sweep",
        description="Hyperparameter sweeps for VAEs: Optuna studies of Lightning trainers, "
                    "scored by ELBO components and active units.")
    parser.add_argument("--version", action="version", version=f"vae-sweep {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parents = _parents()
    for name in NAMES:
        module: Any = importlib.import_module(f"sweep.commands.{name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP,
                           epilog=getattr(module, "EPILOG", None),
                           parents=[parents[k] for k in module.PARENTS])
        module.add_arguments(p)
        p.set_defaults(run=module.run, events_on_stderr=getattr(module, "STDOUT_IS_DATA", False))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # Read by every command sooner or later: refused now, before anything is written.
        env_threads()
        outage_wait_s()
        with warnings.catch_warnings(), printed(args.events_on_stderr):
            # Heartbeats and their retry callback are the crash-safety we rely on, not an
            # experiment the user opted into: Optuna's "is experimental" warnings would only
            # clutter stderr.
            warnings.filterwarnings("ignore", message=".*is (an )?experimental")
            return int(args.run(args))
    except ParamError as err:
        print(f"python -m sweep {args.command}: error: {err.render(flag)}", file=sys.stderr)
        return 2
    except BAD_INPUT as err:
        print(f"python -m sweep {args.command}: error: {err}", file=sys.stderr)
        return 2
    except RunError as err:
        if isinstance(err, DatabaseFull) and WORKER_ID_ENV in os.environ:
            return FULL_EXIT  # one of start's workers: start says it, once
        then = (f"; `python -m sweep resume --study {err.study}` continues it"
                if err.study else "")
        print(f"python -m sweep {args.command}: {err}{then}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `status | head -3`: the reader has all it wanted
        # What is still buffered would fail again at exit: send it nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt as err:
        study = getattr(err, "study", None)  # sweep.runner.study.Interrupted
        how = getattr(err, "signal", "SIGINT")
        if study is None:
            print("interrupted", file=sys.stderr)
        elif WORKER_ID_ENV not in os.environ:  # a worker's parent tells the user, once
            print(f"\ninterrupted by {how}: `python -m sweep resume --study {study}` "
                  "continues from the trials' last checkpoints", file=sys.stderr)
        return 128 + int(getattr(signal, how, signal.SIGINT))


class Terminated(KeyboardInterrupt):
    """SIGTERM outside a run (before it starts, or while the summary prints): the command
    stops as Ctrl-C would stop it, with exit 143 and a line, instead of dying silently."""

    signal = "SIGTERM"


def _terminate(signum: int, frame: Any) -> NoReturn:
    raise Terminated


def run_main(argv: Sequence[str] | None = None) -> Any:
    """Entry point for console scripts and ``python -m sweep``: the process's own, so it
    sets the wait policy in its environment (torch is not loaded yet; see
    ``sweep.runner.processes.wait_policy``) and answers SIGTERM (a run installs its own
    handlers for its duration and puts this one back)."""
    os.environ.update(wait_policy(os.environ))
    signal.signal(signal.SIGTERM, _terminate)
    code = main(argv)
    # The work is done and only the interpreter's teardown is left, where Python puts the
    # default handlers back: a SIGTERM or Ctrl-C landing there turned a finished command's
    # exit into -15 or -2.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    sys.exit(code)
