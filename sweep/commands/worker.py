"""``python -m sweep worker``: join a study from any machine that reaches its storage and run
its trials until the study's stored goal is met."""

from __future__ import annotations

import argparse

from sweep.commands import run_options

HELP = ("join a study from this machine (any machine that reaches its storage) and run its "
        "trials until its stored budget is spent")
PARENTS = ("storage", "run")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", required=True, help="name of a study made by start")


def run(args: argparse.Namespace) -> int:
    from sweep.runner.entry import join

    join(args.study, storage=args.storage, options=run_options(args))
    return 0
