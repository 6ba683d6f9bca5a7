"""``python -m sweep export``: one trial's config.toml, weights.pt and metrics.json."""

from __future__ import annotations

import argparse

from sweep.commands import add_iw_samples

HELP = "write a trial's config.toml, weights.pt and metrics.json (default: the recommended one)"
PARENTS = ("storage", "threads")


def trial_spec(text: str) -> str:
    if text == "best" or (text.isdigit() and int(text) >= 0):
        return text
    raise argparse.ArgumentTypeError(f"expected a trial number or 'best', got {text!r}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", help="study name (needed when the storage holds several)")
    p.add_argument("--trial", type=trial_spec, default="best",
                   help="trial number, or best: the recommended trial (default)")
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write into")
    p.add_argument("--test-data", metavar="SPEC",
                   help="also score the trial on this dataset, which no trial saw "
                        "(a folder such as folder:data/test, an array file such as "
                        "npy:data/test.npy, a torchvision name's test split, or "
                        "synthetic images of another seed); written under \"test\" in "
                        "metrics.json")
    add_iw_samples(p)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from models.config import Config
    from sweep.answer.export import export, pick
    from sweep.commands import check_output
    from sweep.errors import UsageError
    from sweep.storage.database import open_study

    if args.test_data:
        Config(dataset=args.test_data)  # a bad spec is refused before anything loads
    if args.iw_samples and not args.test_data:
        raise UsageError("--iw-samples needs --test-data (the split whose NLL it bounds)")
    check_output("--out", args.out, folder=True)
    study, storage, url = open_study(args.storage, args.study)
    trial = pick(study, args.trial)

    from sweep.answer.evaluate import artifact_store, heldout_images
    from sweep.logs import quiet_logs
    from sweep.runner.processes import threads_per_worker, use_threads

    use_threads(threads_per_worker(1, args.threads))
    with quiet_logs():
        images = heldout_images(args.test_data) if args.test_data else None
        out = Path(args.out)
        data = export(study, storage, artifact_store(url, study), trial, out, images,
                      iw_samples=args.iw_samples)
    print(f"trial {trial.number} ({data['weights']}) -> {out}/config.toml, weights.pt, "
          "metrics.json")
    return 0
