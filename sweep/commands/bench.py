"""``python -m sweep bench``: a trial's speed against its limit, what users write, and the
sweep around it (see sweep/bench/rows.py)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from sweep.commands import check_output
from sweep.errors import UsageError

HELP = ("throughput against the bare loop and a plain Optuna + Lightning script; thread "
        "counts idle and under load; a trial's and the sweep's overhead and time to answer; "
        "GPU rows")
PARENTS = ("threads",)
STDOUT_IS_DATA = True  # the JSON: the sweep's events go to stderr
EPILOG = """\
rows: limit = the model's bare PyTorch loop on batches already on the device;
baseline = optuna-examples' Lightning script shape (ImageFolder + ToTensor +
DataLoader workers, Lightning's defaults; sweep/bench/user_script.py); project = a trial's
own path (models.train.fit). threads = each fixed thread count and the default,
idle and beside --busy N busy processes (default_over_best: the default's share of
the best fixed count). trial_overhead = the share of a running worker's second
1-epoch trial that is not training steps (first_trial_overhead: the first's);
sweep_overhead = the share of both trials' wall time outside the trainer's fit.
time_to_answer = the plain script (TPE, no pruner) against `sweep start` (pruner on
and, unless --no-pruner-off, off), same budget and images. Its single-trial
figures (each trial scored on its own seed: the best of N is the luckiest of N):
wall time until a non-collapsed trial is within --margin of the best neg_elbo
(baseline_s, project_s, ratio) and until the script's best (ratio_to_script_best).
Its answer figures, time_to_answer.fresh_seeds: each side's pick (the script's best
trial; the sweep's recommendation) re-trained by models.train.fit, one trainer and
split for both, on --fresh-seeds R seeds no trial of any side used ("seeds"); per
side its trial, params, config, values (neg_elbo per seed), mean, own_seed_value
(its trial's), own_seed_refit (re-trained on its own seed), s (from the study's
start until its config was first proposed); project_minus_baseline (the means;
negative: the sweep's answer is better) and ratio (project s over baseline s).
gpu = float32, bf16 autocast, channels_last (checked within 2 % of
float32's metrics), then K trials sharing one GPU. --json keys: limit, baseline,
project (images/s), project_over_limit, project_over_baseline, own_model (limit,
project and their ratio for --model, a network not built in), threads,
trial_overhead, sweep_overhead, time_to_answer {baseline_s, project_s, ratio,
ratio_at_most (when the script never got within --margin: over its whole wall),
ratio_to_script_best, fresh_seeds}, gpu, setup (with the load average).
--only time_to_answer writes time_to_answer and setup alone.

CPU, 2 cores, idle (load 1.4 before), measured 2026-12-01 on CIFAR-10 as an
ImageFolder, the default model, ratios medians of per-repeat ratios:
  python -m sweep bench --data folder:data/train --batch-size 40 --steps 150
  --repeats 5 --subset 5000 --trials 60 --json bench.json  (18 min)
  limit 1,551 / baseline 1,406 / project 1,480 images/s: project 0.95x the limit,
  1.05x the baseline. threads (2 busy processes beside the loaded rows): the
  default (1) over the best fixed count 1.02 idle, 0.99 loaded. trial_overhead
  4.7 % of a 40.9 s 1-epoch trial (the first: 3.9 %); sweep_overhead 1.5 %.
  time_to_answer on 5,000 images, 60 trials of 1 epoch (single trials): start's
  best trial (-1,342 nats) is 7.6 % below the script's best (-1,246), so the script never
  got within 5 % in its 238.1 s; start did at 39.8 s (36.6 s without the
  pruner): ratio at most 0.17. To the script's own best: 39.8 s
  against 192.8 s, 0.21. The focus window's latent size spans x/÷16 because on
  112 steps a trial 16 to 32 dims win, and on 1,125 (all 45,000 images) 64.

time_to_answer's answers (fresh_seeds, R = 2: seeds 3 and 4), CPU, 2 cores shared
with other work, 2026-12-03, CIFAR-10 as an ImageFolder, --no-pruner-off; medians
(min to max) over repeats; "script"/"sweep": each side's pick, its mean neg_elbo
(nats per image, lower is better) on the fresh seeds, and when it was first proposed:
  python -m sweep bench --data folder:data/train --subset 2000 --batch-size 128
  --trials 24 --only time_to_answer --no-pruner-off  (14 steps a trial; 3 repeats,
  3.5 to 5 min each; load 1.7 to 7.2 before, 2.3 to 4.6 after)
  script +82 (+15 to +371), first proposed at 72 s (6 to 97); sweep -58 (-92 to
  +110) at 64 s (43 to 73). sweep minus script -174 (-430 to +95): the sweep's answer
  better in 2 of 3; time ratio 0.75 (0.60 to 10.3). The script's best trials scored
  -319, -235, -261 on their own runs: at 14 steps a config's value moves by hundreds
  of nats with the seed (one pick: +125 and -242) and with the trainer (the script's
  pick re-trained by fit on its own seed: +698 and -121, against its trial's -235 and
  -261), so the single-trial ratio_to_script_best (0.77 in 1 repeat, undefined in 2:
  the sweep never matched the script's luckiest trial) says little, and 2 fresh seeds
  only the sign at best.
  python -m sweep bench --data folder:data/train --subset 5000 --batch-size 40
  --trials 60 --only time_to_answer --no-pruner-off  (112 steps a trial; 3 repeats,
  17 to 30 min each; load 2.2 to 4.1 before, 2.7 to 7.4 after)
  script -1,254 (-1,305 to -1,161), first proposed at 420 s (414 to 835); sweep
  -1,285 (-1,293 to -1,266) at 238 s (162 to 340). sweep minus script -12 (-133 to
  +20; 1 nat per image is 0.00047 bits/dim): the sweep's answer better in 2 of 3;
  time ratio 0.39 (0.28 to 0.81). On their own runs the picks scored -1,245, -1,295,
  -1,272 (script) and -1,330, -1,348, -1,343 (sweep): the sweep's best trial, picked
  from 60 and confirmed over 3 seeds, still regresses 50 to 65 nats on fresh seeds,
  and the single-trial ratio_to_script_best, 0.18 (0.08 to 0.18), overstates its lead:
  in 2 repeats the answers are within a seed's spread (up to 89 nats between seeds 3
  and 4 of one pick), in the third the sweep's is 133 nats ahead. Walls: script 544 s
  (502 to 1,096), sweep 470 s (452 to 584, with its 8 confirmation runs).

own_model (a network not built in: the README's my_vae.py, shipped as
sweep.bench.own_model:build), CPU, 2 cores shared with other work, 2026-12-03,
CIFAR-10 as an ImageFolder, batch 40, 150 steps, 1 thread:
  the row alone, 7 alternating repeats, idle (load 0.1): limit 748 / project 701
  images/s, project 0.976x the limit (per-repeat ratios 0.92 to 1.12).
  The same, loaded (load 2.4 to 2.8): limit 709 / project
  775 images/s, project 1.07x the limit (per-repeat ratios 0.65 to 1.40: the
  machine's speed moved more than the two loops differ). In a whole run,
  python -m sweep bench --data folder:data/train --batch-size 40 --steps 150
  --repeats 5 --no-sweep --busy 0 (load 5.8 to 6.2): 468 / 307, 0.70 (per repeat
  0.58 to 1.23); the default model's project/limit in the same run 0.985.
  Through fit, the user's network costs only what the default's does: one shape
  check of two examples before training, the same loss, logging and metrics.

GPU, one H100 80GB, 16 cores, measured 2026-11-25 (the code and search of then):
  --device cuda --batch-size 128 --steps 300 --trials-per-gpu 1,2,4,8
  limit 19,027 / baseline 9,882 / project 14,071 images/s (0.73x the limit,
  1.44x the baseline); float32 / bf16 / channels_last / both: 14,525 / 9,936 /
  13,572 / 12,069 (float32 chosen); K = 1 / 2 / 4 / 8 trials sharing it:
  15,137 / 30,936 / 56,413 / 98,018 in all (6.5x at K = 8). sweep_overhead 45 %
  of a 7.7 s trial: on a GPU a 1-epoch trial is so short that a process's fixed
  costs weigh as much as training, so run K trials at once (--trials-per-gpu).
  time_to_answer: script 22.8 s, start 18.2 s (16.7 s without the pruner): 0.80.
  The step is bound by kernel launches (Lightning's bookkeeping is ~2.4 ms of a
  9 ms step): a bigger lead needs a faster step (CUDA graphs, torch.compile).
"""


def _ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(k) for k in text.split(","))
    except ValueError:
        raise UsageError(f"--trials-per-gpu needs a list like 1,2,4,8, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise UsageError(f"--trials-per-gpu values must be >= 1, got {text!r}")
    return ks


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the epilog's lines
    p.add_argument("--data", default="synthetic",
                   help="dataset spec to time on (default: synthetic)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (default: 128)")
    p.add_argument("--steps", type=int, default=60, help="timed steps per repeat (default: 60)")
    p.add_argument("--repeats", type=int, default=3,
                   help="alternating repeats; medians are reported (default: 3)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where to train (default: auto, a GPU when there is one)")
    p.add_argument("--baseline-workers", type=int, default=None,
                   help="the baseline's DataLoader num_workers (default: min(4, cores))")
    p.add_argument("--subset", type=int, default=1024,
                   help="images of the time-to-answer studies, 0 for all (default: 1024)")
    p.add_argument("--trials", type=int, default=4,
                   help="trial budget of each time-to-answer study (default: 4)")
    p.add_argument("--epochs", type=int, default=1,
                   help="max_epochs of the time-to-answer trials (default: 1)")
    p.add_argument("--margin", type=float, default=0.05,
                   help="the answer: a trial within this share of the best neg_elbo "
                        "(default: 0.05)")
    p.add_argument("--fresh-seeds", type=int, default=2, metavar="R",
                   help="re-train each side's pick (the script's best trial, the sweep's "
                        "recommendation) on R seeds no trial used, and compare the means "
                        "(time_to_answer.fresh_seeds; 0: skip; default: 2)")
    p.add_argument("--only", choices=("time_to_answer",), default=None,
                   help="run this row alone (no throughput, thread, overhead or GPU rows)")
    p.add_argument("--no-pruner-off", action="store_true",
                   help="time_to_answer without its third study (the default search with "
                        "pruner none, project_no_pruning): a third less time")
    p.add_argument("--trials-per-gpu", default=None, metavar="K,K,...",
                   help="K trials sharing one GPU for the aggregate rows (default on a GPU: "
                        "1,2,4,8; on CPU only when given)")
    p.add_argument("--busy", type=int, default=2, metavar="N",
                   help="busy processes beside the loaded thread rows, 0 for idle rows only "
                        "(default: 2)")
    p.add_argument("--no-sweep", action="store_true",
                   help="throughput rows only: skip trial_overhead, sweep_overhead and "
                        "time_to_answer")
    p.add_argument("--model", default=None, metavar="BUILDER",
                   help="the own_model row's network (default: the README's my_vae.py, "
                        "shipped as sweep.bench.own_model:build)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="also write the result object to PATH")


def run(args: argparse.Namespace) -> int:
    for flag, value in (("--batch-size", args.batch_size), ("--steps", args.steps),
                        ("--repeats", args.repeats), ("--trials", args.trials),
                        ("--epochs", args.epochs)):
        if value < 1:
            raise UsageError(f"{flag} must be >= 1, got {value}")
    for flag, value in (("--subset", args.subset), ("--busy", args.busy),
                        ("--fresh-seeds", args.fresh_seeds),
                        ("--baseline-workers", args.baseline_workers)):
        if value is not None and value < 0:
            raise UsageError(f"{flag} must be >= 0, got {value}")
    if args.only is not None and args.no_sweep:
        raise UsageError("--only time_to_answer and --no-sweep exclude each other")
    if not (math.isfinite(args.margin) and args.margin >= 0):
        raise UsageError(f"--margin must be a number >= 0, got {args.margin}")
    ks = _ks(args.trials_per_gpu) if args.trials_per_gpu is not None else None
    if args.json is not None:
        check_output("--json", args.json)
    from models.config import Config

    Config(dataset=args.data, batch_size=args.batch_size)  # a bad spec is named before loading
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no GPU is visible to torch")
    from models import networks
    from sweep.bench import own_model
    from sweep.bench import user_script as baseline
    from sweep.bench.rows import Options, bench

    model = args.model or own_model.SPEC
    networks.check_names(model, [])  # a builder that does not import: named before any work
    from sweep.logs import quiet_logs
    from sweep.runner.processes import threads_per_worker, use_threads

    use_threads(threads_per_worker(1, args.threads))
    workers = baseline.DEFAULT_WORKERS if args.baseline_workers is None \
        else args.baseline_workers
    with quiet_logs():
        result = bench(Options(data=args.data, batch_size=args.batch_size, steps=args.steps,
                               repeats=args.repeats, device=args.device,
                               baseline_workers=workers, subset=args.subset,
                               trials=args.trials, epochs=args.epochs, margin=args.margin,
                               trials_per_gpu=ks, skip_sweep=args.no_sweep,
                               busy=args.busy, model=model, fresh_seeds=args.fresh_seeds,
                               pruner_off=not args.no_pruner_off,
                               only_answer=args.only == "time_to_answer"))
    text = json.dumps(result, indent=2)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(text)
    sys.stdout.flush()
    return 0
