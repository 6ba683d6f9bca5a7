"""``python -m sweep bench``: training throughput of a trial's path against its limits."""

from __future__ import annotations

import argparse
import json

from sweep.errors import UsageError

HELP = "training throughput: a trial's path against the same model's bare loop"
PARENTS = ("threads",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="synthetic",
                   help="dataset spec to time on (default: synthetic)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (default: 128)")
    p.add_argument("--steps", type=int, default=60, help="timed steps per repeat (default: 60)")
    p.add_argument("--repeats", type=int, default=3,
                   help="alternating repeats; medians are reported (default: 3)")


def run(args: argparse.Namespace) -> int:
    for flag, value in (("--batch-size", args.batch_size), ("--steps", args.steps),
                        ("--repeats", args.repeats)):
        if value < 1:
            raise UsageError(f"{flag} must be >= 1, got {value}")
    from models.config import Config
    from sweep.bench import bench
    from sweep.logs import quiet_logs
    from sweep.workers import threads_per_worker, use_threads

    Config(dataset=args.data, batch_size=args.batch_size)  # a bad spec is named before loading
    use_threads(threads_per_worker(1, args.threads))
    quiet_logs()
    print(json.dumps(bench(args.data, args.batch_size, args.steps, args.repeats), indent=2))
    return 0
