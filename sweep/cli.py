"""The command line: ``python -m sweep COMMAND``; one table of commands, shared flags in parents.

Every bad input (config key or value, TOML, storage URL) ends with exit code 2 and one line
on stderr naming what is wrong, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from models.config import ConfigError
from sweep.space import SpaceError
from sweep.storage import STORAGE_ENV, StorageError


class UsageError(ValueError):
    """Bad command-line input that no lower layer checks (one line, exit 2)."""


def _train(args: argparse.Namespace) -> int:
    from sweep.commands import train

    progress = sys.stderr.isatty() if args.progress is None else args.progress
    metrics = train(args.set or [], args.data, progress=progress, log_dir=args.log_dir)
    text = json.dumps(metrics, indent=2)
    if args.json == "-":
        print(text)
    else:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


def _start(args: argparse.Namespace) -> int:
    from sweep.runner import start

    return start(args)


def _resume(args: argparse.Namespace) -> int:
    from sweep.runner import resume

    return resume(args)


def _worker(args: argparse.Namespace) -> int:
    from sweep.runner import worker

    return worker(args)


def _status(args: argparse.Namespace) -> int:
    from sweep.report import status

    print(status(args.storage, args.study))
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from sweep.commands import dashboard

    dashboard(args.storage, args.port)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from sweep.bench import bench
    from sweep.commands import quiet_logs

    quiet_logs()
    print(json.dumps(bench(args.data, args.batch_size, args.steps, args.repeats), indent=2))
    return 0


def _parsers() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    storage = argparse.ArgumentParser(add_help=False)
    storage.add_argument("--storage", default=os.environ.get(STORAGE_ENV),
                         help=f"database URL (default: ${STORAGE_ENV}, else sqlite:///sweeps.db)")
    study = argparse.ArgumentParser(add_help=False)
    study.add_argument("--study", help="study name (default: derived from the dataset)")
    run = argparse.ArgumentParser(add_help=False)
    run.add_argument("--timeout", type=float, help="stop starting trials after S seconds")
    run.add_argument("--gpus", help="comma-separated GPU ids (default: every visible GPU)")
    run.add_argument("--workers", type=int, help="worker processes on a machine without GPUs")
    run.add_argument("--trials-per-gpu", type=int, default=1, help="worker slots per GPU")
    # resume and its workers take the heartbeat the study was started with (its settings).
    heartbeat = argparse.ArgumentParser(add_help=False)
    heartbeat.add_argument("--heartbeat", type=int, default=10,
                           help="seconds between trial heartbeats; a trial silent for 3x fails")

    parser = argparse.ArgumentParser(
        prog="python -m sweep",
        description="Hyperparameter sweeps for VAEs: Optuna studies of Lightning trainers, "
                    "scored by ELBO components and active units.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    table: dict[str, Callable[[argparse.Namespace], int]] = {}

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str,
                parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
        table[name] = func
        return sub.add_parser(name, help=help, description=help, parents=list(parents))

    p = command("train", _train, "train one configuration (no study) and print its metrics")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="a config field")
    p.add_argument("--data", help="dataset: cifar10, mnist, fashion-mnist, synthetic, folder:PATH")
    p.add_argument("--json", default="-", metavar="PATH",
                   help="write the metrics here (- = stdout)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction,
                   help="Lightning's progress bar on stderr (default: on a terminal)")
    p.add_argument("--log-dir", metavar="DIR",
                   help="also log every metric through Lightning's CSVLogger into DIR")

    p = command("start", _start, "start a study, or add trials to the one of that name",
                [storage, study, run, heartbeat])
    p.add_argument("--n-trials", type=int, default=20, help="trials to add in this run")
    p.add_argument("--config", help="sweep TOML: objectives, [fixed] and [search.*] tables")
    p.add_argument("--data", help="dataset spec (default: cifar10)")
    p.add_argument("--max-epochs", type=int, help="epochs per trial")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="fix a config field")
    p.add_argument("--no-baseline", action="store_true",
                   help="do not enqueue the seed configuration as the first trial")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep each finished trial's last checkpoint")

    p = command("resume", _resume, "continue a stopped study with its stored settings",
                [storage, run])
    p.add_argument("--study", required=True, help="study name")

    command("worker", _worker, "run trials of an existing study (started by start/resume)",
            [storage, run, heartbeat]).add_argument("--study", required=True)

    command("status", _status, "trials by state and the Pareto front", [storage, study])

    p = command("dashboard", _dashboard, "optuna-dashboard on this storage and its artifacts",
                [storage])
    p.add_argument("--port", type=int, default=8080)

    p = command("bench", _bench, "training throughput: Lightning trainer vs a bare loop")
    p.add_argument("--data", default="synthetic")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=60, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    return parser, table


def main(argv: Sequence[str] | None = None) -> int:
    parser, table = _parsers()
    args = parser.parse_args(argv)
    # Heartbeats and their retry callback are the crash-safety we rely on, not an experiment
    # the user opted into: Optuna's "is experimental" / "is an experimental feature" warnings
    # would only clutter stderr.
    warnings.filterwarnings("ignore", message=".*is (an )?experimental")
    try:
        return table[args.command](args)
    except (ConfigError, SpaceError, StorageError, UsageError) as err:
        print(f"python -m sweep {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run_main(argv: Sequence[str] | None = None) -> Any:
    """Entry point for console scripts."""
    sys.exit(main(argv))
