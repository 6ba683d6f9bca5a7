"""``python -m sweep copy``: a study into another storage, with its trials' images."""

from __future__ import annotations

import argparse

HELP = "copy a study into another storage, with every image and file its trials list"
PARENTS = ()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source", required=True, metavar="URL",
                   help="the storage the study is in")
    p.add_argument("--to", dest="destination", required=True, metavar="URL",
                   help="the storage to copy it into (an SQLite file is created)")
    p.add_argument("--study", help="study name (needed when the source holds several)")
    p.add_argument("--artifacts", metavar="URL",
                   help="the store to copy the images into: an absolute folder or "
                        "s3://BUCKET/PREFIX (default: beside the destination database)")


def run(args: argparse.Namespace) -> int:
    from sweep.storage.copying import copy_study
    from sweep.storage.database import shown

    done = copy_study(args.source, args.destination, args.study, args.artifacts)
    lost = f"; {done.missing} listed but not in the source store" if done.missing else ""
    print(f"copied study {done.study!r} ({done.trials} trials, {done.artifacts} files{lost}) "
          f"to {shown(args.destination)}, images in {done.store}")
    return 0
