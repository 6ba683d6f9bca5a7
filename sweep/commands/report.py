"""``python -m sweep report``: the study's answer as one self-contained HTML page."""

from __future__ import annotations

import argparse

from sweep.commands import add_iw_samples

HELP = "write the study's report: one self-contained HTML page plus its PNGs"
PARENTS = ("storage", "threads")
STDOUT_IS_DATA = True  # the report's path: progress goes to stderr


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", help="study name (needed when the storage holds several)")
    p.add_argument("--out", metavar="DIR", help="directory for report.html and the PNGs "
                                                "(default: report-<study>)")
    p.add_argument("--test-data", metavar="SPEC",
                   help="also score the recommended trial, the baseline and the references "
                        "on this dataset, which no trial saw: a folder (e.g. folder:data/test), "
                        "an array file (npy:data/test.npy), "
                        "a torchvision name's test split, or synthetic images of another seed")
    add_iw_samples(p)
    p.add_argument("--no-upload", action="store_true",
                   help="do not upload the page as a study artifact for optuna-dashboard, "
                        "nor write the answer as the study's and the pick's notes")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from models.config import Config
    from sweep.commands import check_output
    from sweep.errors import UsageError
    from sweep.storage.database import open_study
    from sweep.storage.names import portable_name

    if args.test_data:
        Config(dataset=args.test_data)  # a bad spec is refused before anything loads
    if args.iw_samples and not args.test_data:
        raise UsageError("--iw-samples needs --test-data (the split whose NLL it bounds)")
    if args.out:  # before the study is read: the default needs its name
        check_output("--out", args.out, folder=True)
    study, storage, url = open_study(args.storage, args.study)

    from sweep.answer import heldout, report, test_nll
    from sweep.answer.evaluate import artifact_store, heldout_images
    from sweep.answer.roles import roles
    from sweep.answer.summary import save_notes
    from sweep.logs import quiet_logs
    from sweep.runner.processes import threads_per_worker, use_threads

    out = Path(args.out or portable_name(f"report-{study.study_name}"))
    if not args.out:
        check_output("--out", out, folder=True)
    use_threads(threads_per_worker(1, args.threads))
    with quiet_logs():
        # Loaded before the store is opened: a test set that cannot be read leaves nothing.
        images = heldout_images(args.test_data) if args.test_data else None
        store = artifact_store(url, study)
        who = roles(study)
        if images is not None:
            heldout.score(who, storage, store, images, study, args.test_data)
        rows = (test_nll.score(study, storage, store, who, images, args.iw_samples)
                if images is not None and args.iw_samples else [])
        path = report.build(study, storage, store, out, who)
        if rows:
            path.write_text(test_nll.add_section(path.read_text(),
                                                 test_nll.section(rows, args.test_data)))
        if not args.no_upload:
            report.upload(study, store, path)
            save_notes(study)
    print(path)
    return 0
