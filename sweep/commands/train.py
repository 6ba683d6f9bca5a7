"""``python -m sweep train``: one configuration, no study, through the same ``fit`` every trial
uses; prints (or writes) its metrics as JSON."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.config import Config
from sweep import configfile
from sweep.commands import check_output, config_keys, fixed_fields
from sweep.runner.processes import check_threads

if TYPE_CHECKING:
    import torch

HELP = "train one configuration (no study) and print its metrics as JSON"
PARENTS = ("threads",)
STDOUT_IS_DATA = True  # the metrics' JSON: the sweep's events go to stderr

log = logging.getLogger(__name__)

EPILOG = config_keys()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="a TOML file of config fields, one flat table (as export writes, "
                        "with the threads the trial ran with); --set, --data and --threads "
                        "win over it")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a config field (keys below)")
    p.add_argument("--data", help="dataset: cifar10, mnist, fashion-mnist, synthetic, "
                                  "folder:PATH, npy:PATH")
    p.add_argument("--model", metavar="BUILDER",
                   help="the network: conv (the default), resnet, mlp, package.module:build or "
                        "path/to/my_vae.py:build (see start --help)")
    p.add_argument("--json", default="-", metavar="PATH",
                   help="write the metrics here (- = stdout)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction,
                   help="Lightning's progress bar on stderr (default: on a terminal)")
    p.add_argument("--log-dir", metavar="DIR",
                   help="also log every metric through Lightning's CSVLogger into DIR")
    p.add_argument("--save", metavar="PATH",
                   help="write the final weights here (load with sweep.answer.weights.load_model)")


def run(args: argparse.Namespace) -> int:
    check_threads(args.threads)  # before torch is imported: a bad flag answers at once
    from_file, file_threads = configfile.read_values(args.config) if args.config else ({}, None)
    threads = args.threads if args.threads is not None else file_threads
    values = {**from_file, **fixed_fields(args.set, args.data, model=args.model)}
    cfg = Config.from_dict(values)
    for flag, path in (("--json", args.json), ("--save", args.save)):
        if path not in (None, "-"):
            check_output(flag, path)
    if args.log_dir:
        check_output("--log-dir", args.log_dir, folder=True)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    from models.data import load_images

    images = load_images(cfg)  # bad data fails here, before anything is said or written
    cfg = for_data(cfg, values, images)
    metrics = train(cfg, threads, progress=progress, log_dir=args.log_dir,
                    save=args.save, images=images)
    from sweep.storage.trial_record import json_safe

    text = json.dumps(json_safe(metrics), indent=2, allow_nan=False)
    if args.json == "-":
        print(text)
    else:
        Path(args.json).write_text(text + "\n")
    return 0


def for_data(cfg: Config, set_by_user: dict[str, Any], images: torch.Tensor) -> Config:
    """``cfg`` for its data (``images``): for continuous (float) data,
    ``decoder_activation=none`` unless the user set it (said in one line), as ``start`` does
    (``sweep.space.for_continuous``)."""
    import torch

    from sweep.space import CONTINUOUS_ACTIVATION

    if "decoder_activation" in set_by_user or images.dtype == torch.uint8:
        return cfg
    log.info("%s", CONTINUOUS_ACTIVATION)
    return cfg.replace(decoder_activation="none")


def train(cfg: Config, threads: int | None = None, progress: bool = False,
          log_dir: str | None = None, save: str | None = None,
          images: torch.Tensor | None = None) -> dict[str, Any]:
    """Train ``cfg`` in this process and return its metrics, config, thread count and
    provenance (``images``: its data, when loaded already).

    With ``log_dir``, Lightning's CSVLogger writes the per-step training and per-epoch
    validation metrics to ``log_dir/version_N/metrics.csv``; with ``save``, the final
    weights go to that file (``sweep.answer.weights``).
    """
    from pytorch_lightning.loggers import CSVLogger

    from models.train import fit
    from sweep.logs import quiet_logs
    from sweep.provenance import provenance, torch_threads
    from sweep.runner.processes import threads_per_worker, use_threads

    use_threads(threads_per_worker(1, threads))
    logger = CSVLogger(log_dir, name="") if log_dir else False
    with quiet_logs():
        result = fit(cfg, images=images, progress=progress, logger=logger)
    if save:
        from sweep.answer.weights import save_weights

        save_weights(result.module, save)
    return {**result.metrics, "config": cfg.to_dict(), "threads": torch_threads(),
            **provenance()}
