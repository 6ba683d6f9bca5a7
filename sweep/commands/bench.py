"""``python -m sweep bench``: a trial's speed against its limit, what users write, and the
sweep around it (see sweep/bench.py)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from sweep.commands import check_output
from sweep.errors import UsageError

HELP = ("throughput against the bare loop and a plain Optuna + Lightning script; the "
        "sweep's overhead and time to answer; GPU rows")
PARENTS = ("threads",)
EPILOG = ("The CPU measurement on the CIFAR-10 copy: python -m sweep bench --data "
          "folder:data/train --steps 100 --repeats 5 --subset 5000 --trials 12 --epochs 2 "
          "--json bench.json")


def _ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(k) for k in text.split(","))
    except ValueError:
        raise UsageError(f"--trials-per-gpu needs a list like 1,2,4,8, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise UsageError(f"--trials-per-gpu values must be >= 1, got {text!r}")
    return ks


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="synthetic",
                   help="dataset spec to time on (default: synthetic)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (default: 128)")
    p.add_argument("--steps", type=int, default=60, help="timed steps per repeat (default: 60)")
    p.add_argument("--repeats", type=int, default=3,
                   help="alternating repeats; medians are reported (default: 3)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where to train (default: auto, a GPU when there is one)")
    p.add_argument("--baseline-workers", type=int, default=None,
                   help="the baseline's DataLoader num_workers (default: min(4, cores))")
    p.add_argument("--subset", type=int, default=1024,
                   help="images of the time-to-answer studies, 0 for all (default: 1024)")
    p.add_argument("--trials", type=int, default=4,
                   help="trial budget of each time-to-answer study (default: 4)")
    p.add_argument("--epochs", type=int, default=1,
                   help="max_epochs of the time-to-answer trials (default: 1)")
    p.add_argument("--margin", type=float, default=0.05,
                   help="the answer: a trial within this share of the best neg_elbo "
                        "(default: 0.05)")
    p.add_argument("--trials-per-gpu", default=None, metavar="K,K,...",
                   help="K trials sharing one GPU for the aggregate rows (default on a GPU: "
                        "1,2,4,8; on CPU only when given)")
    p.add_argument("--no-sweep", action="store_true",
                   help="throughput rows only: skip sweep_overhead and time_to_answer")
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="also write the result object to PATH")


def run(args: argparse.Namespace) -> int:
    for flag, value in (("--batch-size", args.batch_size), ("--steps", args.steps),
                        ("--repeats", args.repeats), ("--trials", args.trials),
                        ("--epochs", args.epochs)):
        if value < 1:
            raise UsageError(f"{flag} must be >= 1, got {value}")
    for flag, value in (("--subset", args.subset), ("--baseline-workers",
                                                    args.baseline_workers)):
        if value is not None and value < 0:
            raise UsageError(f"{flag} must be >= 0, got {value}")
    if not (math.isfinite(args.margin) and args.margin >= 0):
        raise UsageError(f"--margin must be a number >= 0, got {args.margin}")
    ks = _ks(args.trials_per_gpu) if args.trials_per_gpu is not None else None
    if args.json is not None:
        check_output("--json", args.json)
    from models.config import Config

    Config(dataset=args.data, batch_size=args.batch_size)  # a bad spec is named before loading
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no GPU is visible to torch")
    from sweep import baseline
    from sweep.bench import Options, bench
    from sweep.logs import quiet_logs
    from sweep.workers import threads_per_worker, use_threads

    use_threads(threads_per_worker(1, args.threads))
    quiet_logs()
    workers = baseline.DEFAULT_WORKERS if args.baseline_workers is None \
        else args.baseline_workers
    result = bench(Options(data=args.data, batch_size=args.batch_size, steps=args.steps,
                           repeats=args.repeats, device=args.device, baseline_workers=workers,
                           subset=args.subset, trials=args.trials, epochs=args.epochs,
                           margin=args.margin, trials_per_gpu=ks, skip_sweep=args.no_sweep))
    text = json.dumps(result, indent=2)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(text)
    sys.stdout.flush()
    return 0
