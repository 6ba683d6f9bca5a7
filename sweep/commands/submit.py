"""``python -m sweep submit``: a study's workers as a SLURM job array (``sweep.runner.slurm``,
built on submitit), or ``--cancel`` to end the arrays submitted for it."""

from __future__ import annotations

import argparse
import shlex

HELP = "run a study's workers as a SLURM job array (submitit); --cancel ends them"
PARENTS = ("storage",)
EPILOG = ("Each task runs `python -m sweep worker --study NAME` on its node: a worker per GPU "
          "SLURM gives it, or one on the CPU, until the study's budget is spent. The storage "
          "must be one every node reaches: journal:///shared/path/study.log or a database "
          "server. SIGTERM (preemption, scontrol requeue, scancel) and the warning signal "
          "before the time limit (SIGUSR2, signal_delay_s before it) make each worker record "
          "its trial FAIL with a re-run from its last checkpoint; after the warning the task "
          "requeues itself. `status` lists the tasks' states.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", required=True, help="name of a study made by start (--no-run)")
    p.add_argument("--slurm", metavar="KEY=VALUE,...", default="",
                   help="submitit's SlurmExecutor parameters, sbatch's options with _ for -: "
                        "partition=gpu,gpus_per_node=4,time=04:00:00 (time as SLURM writes "
                        "it); cpus_per_task, mem, account, qos, constraint, exclude..., "
                        "signal_delay_s (seconds of warning before the time limit, default 90)")
    p.add_argument("--jobs", type=int, default=1,
                   help="tasks in the array, each a `worker` on its node (default: 1)")
    p.add_argument("--folder", metavar="PATH",
                   help="submitit's folder, for the tasks' logs (default: beside the journal "
                        "or database file, <stem>-slurm/STUDY; else ./vae-sweep-slurm/STUDY); "
                        "on a file system the nodes share")
    p.add_argument("--cancel", action="store_true",
                   help="scancel every array submitted for the study: its workers record "
                        "their trials, with re-runs queued, and exit")


def run(args: argparse.Namespace) -> int:
    from sweep.runner import slurm
    from sweep.storage.database import shown

    at = f" --storage {shlex.quote(shown(args.storage))}" if args.storage else ""
    if args.cancel:
        jobs = slurm.cancel(args.study, storage=args.storage)
        if not jobs:
            print(f"nothing to cancel: every SLURM task of study {args.study!r} has ended")
            return 0
        print(f"cancelled SLURM job{'s' * (len(jobs) > 1)} {', '.join(jobs)} of study "
              f"{args.study!r}: its workers re-queue their trials; `python -m sweep submit "
              f"--study {args.study}{at}` runs them again")
        return 0
    done = slurm.submit(args.study, storage=args.storage, slurm=slurm.parse_slurm(args.slurm),
                        jobs=args.jobs, folder=args.folder)
    rows = [(f"python -m sweep status --study {args.study}{at}", "the trials, and each task's "
             "SLURM state"),
            (f"python -m sweep submit --study {args.study}{at} --cancel", "ends the tasks")]
    width = max(len(command) for command, _ in rows)
    print(f"submitted SLURM job {done.job}: {done.tasks} task{'s' * (done.tasks > 1)}, each a "
          f"worker of study {args.study!r} until its budget is spent; logs in {done.folder}\n"
          + "\n".join(f"  {command.ljust(width)}  # {what}" for command, what in rows))
    return 0
