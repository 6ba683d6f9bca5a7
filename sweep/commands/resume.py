"""``python -m sweep resume``: continue a stopped study with its stored settings."""

from __future__ import annotations

import argparse

from sweep.commands import run_options

HELP = ("continue a stopped study with its stored settings; unfinished trials re-run from "
        "their last checkpoint")
PARENTS = ("storage", "run")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", required=True, help="study name")


def run(args: argparse.Namespace) -> int:
    from sweep.runner.entry import resume

    resume(args.study, storage=args.storage, options=run_options(args))
    return 0
