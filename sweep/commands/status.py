"""``python -m sweep status``: trials by state, the front, and the baseline beside the best fix."""

from __future__ import annotations

import argparse

HELP = "trials by state, the Pareto front with the searched params, and the answer"
PARENTS = ("storage",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", help="study name (needed when the storage holds several)")
    p.add_argument("-f", "--format", choices=("table", "json"), default="table",
                   help="json: the answer as data (recommended, best_reference, gap, margin, "
                        "baseline), as Optuna's CLI -f json")


def run(args: argparse.Namespace) -> int:
    from sweep.runner import slurm
    from sweep.storage.database import open_study

    if args.format == "json":
        import dataclasses
        import json

        from sweep.answer.status import status_json

        data = status_json(args.storage, args.study)
        arrays = slurm.job_states(open_study(args.storage, args.study)[0])
        if arrays:  # the tasks `submit` made, with their SLURM states
            data["slurm_jobs"] = [dataclasses.asdict(a) for a in arrays]
        print(json.dumps(data, indent=2))
        return 0
    from sweep.answer.status import status

    print(status(args.storage, args.study))
    arrays = slurm.job_states(open_study(args.storage, args.study)[0])
    if arrays:
        print(f"\n{slurm.render_states(arrays)}")
    return 0
