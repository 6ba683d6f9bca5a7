"""``start``, ``resume`` and ``worker``: create or join a study and run its trials.

The study's settings (search space, base config, trial goal, heartbeat) are stored in its
user attrs, so ``resume`` and every worker rebuild exactly what ``start`` was given. One
worker runs in this process; more (one per GPU slot, or ``--workers N`` on CPU) run as
``python -m sweep worker`` processes pinned with CUDA_VISIBLE_DEVICES, all on one storage.
A worker killed mid-trial stops beating its heartbeat: Optuna fails the trial after the
grace period and RetryHeartbeatStaleTrialCallback enqueues it again; the re-run resumes from the
trial's last checkpoint (see ``sweep.objective``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from models.config import Config
from sweep.cli import UsageError
from sweep.commands import build_config, quiet_logs
from sweep.progress import Progress, results
from sweep.space import Space, baseline_params, load_space
from sweep.storage import (
    artifact_dir,
    checkpoint_dir,
    open_storage,
    resolve_storage_url,
)

SETTINGS = "vae_sweep_settings"
MAX_RETRY = 3


def default_study_name(dataset: str) -> str:
    name = dataset.split(":", 1)[-1].rstrip("/")
    return "vae-" + (Path(name).name if dataset.startswith("folder:") else name)


def _storage(url: str, heartbeat: int) -> optuna.storages.BaseStorage:
    retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    return open_storage(url, heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
                        stale_trial_callback=retry)


def start(args: argparse.Namespace) -> int:
    from models.data import load_images

    url = resolve_storage_url(args.storage)
    space = load_space(args.config)
    base = build_config(args.set or [], args.data)
    if args.max_epochs is not None:
        base = base.replace(max_epochs=args.max_epochs)
    n_trials = args.n_trials
    if n_trials < 0:
        raise UsageError(f"--n-trials must be >= 0, got {n_trials}")
    if args.heartbeat < 1:
        raise UsageError(f"--heartbeat must be >= 1 second, got {args.heartbeat}")
    slots = _slots(args)
    Config.from_dict({**base.to_dict(), **space.fixed})  # fixed values valid on this base
    load_images(base)  # a bad dataset fails here, before the study is written
    quiet_logs()
    name = args.study or default_study_name(base.dataset)
    study = optuna.create_study(study_name=name, storage=_storage(url, args.heartbeat),
                                directions=space.directions(),  # type: ignore[arg-type]
                                load_if_exists=True)
    old = study.user_attrs.get(SETTINGS)
    if old and old["space"]["objectives"] != list(space.objectives):
        raise UsageError(f"study {name!r} has objectives {old['space']['objectives']}; "
                         f"this config asks for {list(space.objectives)}")
    study.set_metric_names(list(space.objectives))
    goal = results(study.get_trials(deepcopy=False)) + n_trials
    study.set_user_attr(SETTINGS, {"space": space.to_dict(), "base": base.to_dict(),
                                   "goal": goal, "heartbeat": args.heartbeat,
                                   "keep_checkpoints": args.keep_checkpoints})
    if not args.no_baseline and n_trials > 0:
        study.enqueue_trial(baseline_params(space), user_attrs={"baseline": True},
                            skip_if_exists=True)
    print(f"study {name!r} in {url}: {n_trials} trial(s) to run, objectives "
          f"{', '.join(space.objectives)}", flush=True)
    return _run(url, name, args, slots, args.heartbeat)


def resume(args: argparse.Namespace) -> int:
    url = resolve_storage_url(args.storage)
    slots = _slots(args)
    storage = open_storage(url, heartbeat_interval=None, must_exist=True)
    try:
        settings = optuna.load_study(study_name=args.study, storage=storage).user_attrs[SETTINGS]
    except KeyError:
        raise UsageError(f"no vae-sweep study {args.study!r} in {url}") from None
    quiet_logs()
    heartbeat = settings["heartbeat"]
    study = optuna.load_study(study_name=args.study, storage=_storage(url, heartbeat))
    retry_unfinished(study, checkpoint_dir(url, args.study), grace=3 * heartbeat)
    done = results(study.get_trials(deepcopy=False))
    print(f"resuming study {args.study!r}: {done}/{settings['goal']} trials done", flush=True)
    return _run(url, args.study, args, slots, heartbeat)


def retry_unfinished(study: optuna.Study, ckpt_root: Path, grace: float) -> None:
    """Fail trials whose worker is gone and enqueue their re-runs.

    RUNNING trials are failed by Optuna once their heartbeat is older than the grace period
    (waited for here, at most ``grace`` seconds, since ``resume`` means the run stopped);
    trials that ended FAIL while training (Ctrl-C) and still have a checkpoint are retried
    the same way, so they too continue from it.
    """
    deadline = time.monotonic() + grace + 2
    while True:
        optuna.storages.fail_stale_trials(study)
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}
    for t in trials:
        root = (RetryHeartbeatStaleTrialCallback.retry_history(t) or [t.number])[0]
        if (t.state == TrialState.FAIL and t.number not in retried
                and (ckpt_root / f"trial-{root}" / "last.ckpt").exists()):
            RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, t)


def worker_slots(gpus: str | None, workers: int | None, per_gpu: int,
                 device_count: int) -> list[str | None]:
    """One entry per worker: the CUDA_VISIBLE_DEVICES value it gets (None: leave as is).

    ``--gpus 0,1`` gives ``per_gpu`` workers to each listed GPU; ``--workers N`` runs N
    workers on what the machine has (CPU here); with neither, every visible GPU gets
    ``per_gpu`` workers, and a machine without one runs a single worker in this process.
    """
    if per_gpu < 1:
        raise UsageError(f"--trials-per-gpu must be >= 1, got {per_gpu}")
    if gpus is not None:
        if workers is not None:
            raise UsageError("--gpus and --workers exclude each other; "
                             "use --trials-per-gpu for several workers per GPU")
        ids = [g.strip() for g in gpus.split(",") if g.strip()]
        if not ids:
            raise UsageError(f"--gpus needs GPU ids like 0,1, got {gpus!r}")
        return [g for g in ids for _ in range(per_gpu)]
    if workers is not None:
        if workers < 1:
            raise UsageError(f"--workers must be >= 1, got {workers}")
        return [None] * workers
    return [str(g) for g in range(device_count) for _ in range(per_gpu)] or [None]


def _slots(args: argparse.Namespace) -> list[str | None]:
    import torch

    return worker_slots(args.gpus, args.workers, args.trials_per_gpu, torch.cuda.device_count())


def _run(url: str, name: str, args: argparse.Namespace, slots: list[str | None],
         heartbeat: int) -> int:
    """Run the study's workers: this process alone, or one subprocess per slot."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if len(slots) == 1 and slots[0] is None:
            run_worker(url, name, 0, args.timeout, heartbeat)
            return 0
        for i, gpu in enumerate(slots):
            env = dict(os.environ, VAE_SWEEP_WORKER_ID=str(i))
            if gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = gpu
            cmd = [sys.executable, "-m", "sweep", "worker", "--study", name, "--storage", url,
                   "--heartbeat", str(heartbeat)]
            if args.timeout:
                cmd += ["--timeout", str(args.timeout)]
            procs.append(subprocess.Popen(cmd, env=env))
        study = optuna.load_study(study_name=name,
                                  storage=open_storage(url, heartbeat_interval=None))
        progress = Progress(study, study.user_attrs[SETTINGS]["goal"])
        while any(p.poll() is None for p in procs):
            progress.poll()
            time.sleep(2)
        progress.poll()
        return 1 if any(p.returncode for p in procs) else 0
    except KeyboardInterrupt:
        for p in procs:  # they had the same Ctrl-C and are recording their trials as failed
            p.wait()
        print(f"\ninterrupted: `python -m sweep resume --study {name}` continues from the "
              "trials' last checkpoints", file=sys.stderr)
        return 130


def worker(args: argparse.Namespace) -> int:
    url = resolve_storage_url(args.storage)
    try:
        run_worker(url, args.study, int(os.environ.get("VAE_SWEEP_WORKER_ID", "0")),
                   args.timeout, args.heartbeat, show_progress=False)
    except KeyboardInterrupt:  # Optuna has failed the trial; the parent tells the user
        return 130
    return 0


def sampler_seed(seed: int, worker_id: int, storage: optuna.storages.BaseStorage,
                 name: str) -> int:
    """A sampler seed that differs per worker and per run of the same study.

    TPE's first trials are random draws from this seed: with the same seed, two workers,
    or a second ``start`` joining the study, would propose the very trials already run.
    The study's trial count when the worker starts tells runs apart, reproducibly.
    """
    study_id = storage.get_study_id_from_name(name)
    n_trials = len(storage.get_all_trials(study_id, deepcopy=False))
    return int(np.random.SeedSequence([seed, worker_id, n_trials]).generate_state(1)[0])


def run_worker(url: str, name: str, worker_id: int, timeout: float | None, heartbeat: int,
               show_progress: bool = True) -> None:
    """Run trials of study ``name`` until its goal is met (or ``timeout``)."""
    from optuna.artifacts import FileSystemArtifactStore

    from models.data import load_images
    from sweep.objective import Objective

    quiet_logs()
    storage = _storage(url, heartbeat)
    settings: dict[str, Any] = optuna.load_study(
        study_name=name, storage=storage).user_attrs[SETTINGS]
    base = Config.from_dict(settings["base"])
    space = Space.from_dict(settings["space"])
    sampler = optuna.samplers.TPESampler(seed=sampler_seed(base.seed, worker_id, storage, name),
                                         constant_liar=True)
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler,
                              pruner=space.make_pruner())
    artifacts = artifact_dir(url)
    artifacts.mkdir(parents=True, exist_ok=True)  # the store writes into it without creating it
    progress = Progress(study, settings["goal"], echo=show_progress)
    objective = Objective(space, base, load_images(base),
                          FileSystemArtifactStore(str(artifacts)),
                          checkpoint_dir(url, name), settings["keep_checkpoints"],
                          on_epoch=progress.poll if show_progress else None)
    if progress.covered():
        return
    study.optimize(objective, timeout=timeout, callbacks=[progress], catch=(RuntimeError,))
