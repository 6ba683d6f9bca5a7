"""``python -m sweep start``: create a study, or add trials to the one of that name, and run
its workers on this machine (``sweep.start``: ``create_study`` with ``load_if_exists``, then
``optimize``). ``--if-new`` creates it only if it is new (``load_if_exists=False``), and
leaves one that exists as it is."""

from __future__ import annotations

import argparse
import shlex
import sys

from sweep.commands import config_keys, fixed_fields, run_options
from sweep.space import METRICS

HELP = "start a study, or add trials to the one of that name"
PARENTS = ("storage", "run")

EPILOG = (f"{config_keys()}. Metrics for objectives: {', '.join(METRICS)}.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", help="study name (default: vae-<dataset>)")
    p.add_argument("--space", metavar="FILE",
                   help="sweep TOML: objectives, pruner, [fixed] and [search.*] tables "
                        "(default: the built-in space)")
    # The old spelling, from before train's --config (one trial's config) had its own name.
    p.add_argument("--config", dest="old_config", metavar="FILE", help=argparse.SUPPRESS)
    p.add_argument("--n-trials", type=int, default=20, help="trials to add in this run")
    p.add_argument("--data", help="dataset spec: cifar10, mnist, fashion-mnist, synthetic, "
                                  "folder:PATH, npy:PATH (default: cifar10)")
    p.add_argument("--max-epochs", type=int, help="epochs per trial")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="fix a config field for every trial: it wins over the sweep file's "
                        "[fixed] and takes a searched field out of the search")
    p.add_argument("--heartbeat", type=int, default=10,
                   help="seconds between trial heartbeats; a trial silent for 3x is failed "
                        "and re-run from its checkpoint")
    p.add_argument("--no-baseline", action="store_true",
                   help="do not enqueue the seed configuration as the first trial")
    p.add_argument("--no-references", action="store_true",
                   help="do not enqueue the literature's fixes (KL warm-up, cyclical annealing, "
                        "free bits, calibrated decoder) after the baseline; they count toward "
                        "--n-trials")
    p.add_argument("--no-weights", action="store_true",
                   help="do not keep the final weights of complete trials as artifacts")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep each finished trial's last checkpoint")
    p.add_argument("--artifacts", metavar="URL",
                   help="where every worker, on any machine, puts the trials' images and "
                        "checkpoints: a shared folder (PATH or file:///PATH) or "
                        "s3://BUCKET/PREFIX; kept in the study's settings (default: beside "
                        "the SQLite file, or ./vae-sweep-artifacts for a server database)")
    p.add_argument("--no-run", action="store_true",
                   help="only create the study (or add the trials) and exit: "
                        "`python -m sweep worker` processes run it")
    p.add_argument("--if-new", action="store_true",
                   help="leave a study of that name as it is (no trials added): running the "
                        "same start twice, as a compose file's one-shot service does, adds "
                        "its trials once")


def next_commands(study: str, storage: str | None) -> str:
    """What to run once a study has run: the lines that end ``start``'s output (a password
    in ``storage`` is shown as ***, as in every message)."""
    from sweep.storage.database import shown

    at = f" --storage {shlex.quote(shown(storage))}" if storage else ""
    rows = [(f"python -m sweep status --study {study}{at}", "the trials, the front, this answer"),
            (f"python -m sweep dashboard{at}", "optuna-dashboard with every trial's images"),
            (f"python -m sweep report --study {study}{at}", "one HTML page: seed, fixes, pick")]
    width = max(len(command) for command, _ in rows)
    return "\n".join(["Next:", *(f"  {command.ljust(width)}  # {what}" for command, what in rows)])


def run(args: argparse.Namespace) -> int:
    from sweep.answer.status import answer
    from sweep.runner.entry import join, start
    from sweep.runner.exists import StudyExists

    space = args.space
    if args.old_config is not None:
        print("note: start --config is now --space (train --config is one trial's config)",
              file=sys.stderr)
        space = space or args.old_config
    try:
        handle = start(space, study_name=args.study, storage=args.storage,
                       n_trials=args.n_trials,
                       fixed=fixed_fields(args.set, args.data, args.max_epochs, args.model),
                       baseline=not args.no_baseline, references=not args.no_references,
                       weights=not args.no_weights, keep_checkpoints=args.keep_checkpoints,
                       heartbeat=args.heartbeat, options=run_options(args),
                       artifacts=args.artifacts, run=not args.no_run,
                       load_if_exists=not args.if_new)
    except StudyExists as err:  # only with --if-new: it runs what the study has left
        print(f"study {err.study_name!r} exists: left as it is (--if-new)", flush=True)
        if args.no_run:
            return 0
        handle = join(err.study_name, storage=args.storage, options=run_options(args))
    if not args.no_run:  # the seed's fate, each fix's, the pick; then where to look next
        print(f"\n{answer(handle.status())}\n{next_commands(handle.name, args.storage)}",
              flush=True)
    return 0
