"""``python -m sweep status``: trials by state, the front, and the baseline beside the best fix."""

from __future__ import annotations

import argparse

HELP = "trials by state, the Pareto front with the searched params, and the answer"
PARENTS = ("storage",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", help="study name (needed when the storage holds several)")


def run(args: argparse.Namespace) -> int:
    from sweep.status import status

    print(status(args.storage, args.study))
    return 0
