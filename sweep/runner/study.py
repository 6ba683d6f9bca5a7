"""The Python API of a sweep: ``start``, ``resume`` and ``join`` a study, each returning a
``Sweep`` (``sweep.runner.handle``). The commands of the same names are thin wrappers around these,
so a study runs the same from Python::

    import sweep
    s = sweep.start("sweep.toml", study="cifar", n_trials=20, fixed={"max_epochs": 3},
                    options=sweep.RunOptions(gpus=[0, 1]))
    s = sweep.resume("cifar")

Every argument is checked before torch is imported or anything is written: bad input raises
one of ``sweep.errors.BAD_INPUT``, a ``ParamError`` naming the parameter. A run that ends
without meeting the study's goal because workers died raises ``WorkerFailed`` (each dead
worker named with its exit code), one whose budget is spent with no COMPLETE trial raises
``NoResult`` (how many failed, and why); SIGINT (Ctrl-C) or SIGTERM raises ``Interrupted`` once
every worker has recorded and re-queued its trial (``resume`` continues them from their last
checkpoints).

What happens is told through the ``sweep`` logger (``logging``; the command line prints
it). A run leaves the calling process as it found it: its signal handlers, environment,
torch thread count, warning filters and log levels are restored when it ends.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models import networks
from models.config import Config
from models.networks import Builder, in_process
from sweep.answer.references import NO_ROOM, enqueue_references
from sweep.errors import DatabaseFull, NoResult, ParamError, UsageError
from sweep.runner import network
from sweep.runner.processes import (
    FULL_WORDS,
    WORKER_ID_ENV,
    WorkerFailed,
    check_slot_flags,
    check_threads,
    lost_workers,
    run_slots,
    threads_per_worker,
    worker_slots,
)
from sweep.space import (
    EXTRA_SEEDS,
    Space,
    baseline_params,
    fix,
    for_continuous,
    load_space,
    parse_space,
)
from sweep.storage import settings as study_settings
from sweep.storage.database import (
    check_url,
    open_storage,
    resolve_storage_url,
    shown,
    storage_file,
)
from sweep.storage.names import check_study_name
from sweep.storage.settings import Settings
from sweep.storage.stores import normalize as normalize_store

if TYPE_CHECKING:
    import optuna
    import torch
    from optuna.trial import FrozenTrial

    from sweep.runner.handle import Sweep
    from sweep.storage.stores import CheckpointStore

log = logging.getLogger(__name__)


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM stopped study ``study``'s run on this machine; its running
    trials are recorded as failed and re-queued to continue from their checkpoints."""

    def __init__(self, study: str, signal: str = "SIGINT") -> None:
        super().__init__(study)
        self.study = study
        self.signal = signal


def default_study_name(dataset: str) -> str:
    name = dataset.split(":", 1)[-1].rstrip("/")
    if dataset.startswith("npy:"):
        return "vae-" + Path(name).stem
    return "vae-" + (Path(name).name if dataset.startswith("folder:") else name)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How this machine runs a study's trials; checked when made (``ParamError``).

    ``gpus``: the GPU ids to use, ``trials_per_gpu`` workers each (default: every visible
    GPU); ``workers``: worker processes on a machine without GPUs (excludes ``gpus``);
    ``threads``: CPU threads per worker (default: $VAE_SWEEP_THREADS, else the cores divided
    among the workers); ``timeout``: seconds after which no trial starts; ``model``: where
    this machine imports the study's network from (``--model``: a study that trains a
    network of the user's runs only where it is named, see ``sweep.runner.network``).
    """

    gpus: list[int] | None = None
    workers: int | None = None
    trials_per_gpu: int = 1
    threads: int | None = None
    timeout: float | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        check_slot_flags(self.gpus, self.workers, self.trials_per_gpu)
        check_threads(self.threads)
        timeout = self.timeout
        if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
            raise ParamError("timeout", f"must be a positive number of seconds, got {timeout}")

    def slots(self) -> list[str | None]:
        import torch

        return worker_slots(self.gpus, self.workers, self.trials_per_gpu,
                            torch.cuda.device_count())


def _space(space: str | Path | Mapping[str, Any] | Space | None) -> Space:
    if isinstance(space, Space):
        return space
    if isinstance(space, Mapping):
        return parse_space(copy.deepcopy(dict(space)))
    return load_space(space)


def start(space: str | Path | Mapping[str, Any] | Space | None = None, *,
          study: str | None = None, storage: str | None = None, n_trials: int = 20,
          fixed: Mapping[str, Any] | None = None, model: str | Builder | None = None,
          baseline: bool = True,
          references: bool = True, weights: bool = True, keep_checkpoints: bool = False,
          heartbeat: int = 10, artifacts: str | None = None,
          options: RunOptions | None = None, run: bool = True, if_new: bool = False) -> Sweep:
    """Create study ``study`` (or add ``n_trials`` to the one of that name) and run it;
    returns its ``Sweep``.

    ``space``: a sweep TOML file, the same description as a dict, or a ``Space`` (None: the
    built-in space); ``fixed`` are Config fields that win over it (the command line's
    ``--set``, ``--data``, ``--max-epochs``). ``model``: the network (``models.networks``): a
    built-in name, ``module:function``, ``file.py:function`` or the builder function itself
    (one defined in a notebook runs in this process only); it wins over the space's.
    ``options``: how this machine runs the trials.
    ``artifacts``: the study's image and checkpoint store (``sweep.storage.stores``), kept in its
    settings; None keeps the one it has (or the default beside the SQLite file).
    ``run=False`` only creates the study (and adds the trials): ``worker`` processes run it.
    ``if_new=True`` leaves an existing study of that name as it is (adds no trials).
    ``references``: enqueue the literature's fixes after the baseline (``sweep.answer.references``);
    ``weights``: keep the final weights of COMPLETE trials as artifacts.

    Budgets add up: each ``start`` adds ``n_trials`` to the study's stored goal under the
    study lock, so two concurrent ``start --n-trials 3`` run 6 trials.
    """
    url = resolve_storage_url(storage)
    check_url(url)
    options = options or RunOptions()
    if n_trials < 1:  # 0 made an empty study and said nothing
        raise ParamError("n_trials", f"must be >= 1, got {n_trials}")
    if study is not None and not study.strip():  # "" silently became the default name
        raise ParamError("study", f"{study!r}: a study name cannot be empty")
    check_study_name(study)  # CON, NUL...: no folder on Windows can have the name
    fixed = dict(fixed or {})
    if model is not None:
        fixed["model"] = network.spec_of(model)
    Config.from_dict(fixed)  # a bad field is named as the user wrote it
    space = fix(_space(space), fixed)
    base = Config.from_dict(space.fixed)
    options = dataclasses.replace(options, model=options.model or base.model)
    store = normalize_store(artifacts) if artifacts else None
    settings = Settings(space, goal=n_trials, heartbeat=heartbeat,
                        keep_checkpoints=keep_checkpoints, keep_weights=weights, artifacts=store)
    name = study or default_study_name(base.dataset)

    from models.arrays import PREFIX as NPY_PREFIX
    from models.data import load_images
    from sweep.logs import quiet_logs

    slots = options.slots()  # a GPU that is not there fails before the data loads
    if in_process(base.model) and slots != [None]:
        raise ParamError("model", f"{base.model} is defined in this process only: workers in "
                                  "other processes cannot import it; name it as "
                                  "module:function or file.py:function")
    # Bad data fails before any write; an array file is read whole even without run (cheap
    # beside decoding a folder), so NaNs are found here, not by every worker.
    whole = run or base.dataset.startswith(NPY_PREFIX)
    images = load_images(base) if whole else None
    settings = _for_data(settings)
    # A bad network or knob fails before any write too.
    settings = dataclasses.replace(settings, model_sha256=network.check(settings.space, images))
    with quiet_logs():
        _create(url, name, settings, n_trials, baseline, references, if_new)
        if run:
            _run(url, name, slots, options, images)
        else:
            log.info("run it from any machine: python -m sweep worker --study %s "
                     "--storage %s", name, shown(url))
    return _handle(url, name)


def _for_data(settings: Settings) -> Settings:
    """``settings`` for its data: continuous (float) data gets its yardstick and an unbounded
    decoder (``sweep.space.for_continuous``), each change said in one line. Only the array's
    header is read, so ``run=False`` checks it too."""
    from models.arrays import is_continuous

    if not is_continuous(settings.base.dataset):
        return settings
    space, notes = for_continuous(settings.space)
    for line in notes:
        log.info("%s", line)
    return dataclasses.replace(settings, space=space)


def _create(url: str, name: str, settings: Settings, n_trials: int, baseline: bool,
            references: bool, if_new: bool) -> None:
    """Create the study, or add ``n_trials`` to it, under the study lock."""
    import optuna

    from sweep.runner.heartbeat import open_with_heartbeat
    from sweep.runner.progress import results

    space, store = settings.space, settings.artifacts
    beating = open_with_heartbeat(url, settings.heartbeat)
    with beating.study_lock(name):
        created = optuna.create_study(study_name=name, storage=beating,
                                      directions=space.directions(),  # type: ignore[arg-type]
                                      load_if_exists=True)
        old = study_settings.stored(created)
        if old and if_new:
            log.info("study %r in %s exists: left as it is (if_new)", name, shown(url))
            n_trials = 0
        elif old and old["space"]["objectives"] != list(space.objectives):
            raise UsageError(f"study {name!r} has objectives {old['space']['objectives']}; "
                             f"this config asks for {list(space.objectives)}")
        elif old:
            same_network(name, study_settings.Settings.from_dict(old), settings)
        created.set_metric_names(list(space.objectives))
        done = results(created.get_trials(deepcopy=False))
        before = old["goal"] if old else 0
        goal = max(before, done) + n_trials
        if old and if_new:
            store = old.get("artifacts")
        else:
            store = store or (old or {}).get("artifacts")
            study_settings.save(created, dataclasses.replace(settings, goal=goal,
                                                             artifacts=store))
        knobs = networks.defaults(settings.base.model)  # the seed runs the network's own
        if baseline and n_trials > 0:
            created.enqueue_trial(baseline_params(space, knobs), user_attrs={"baseline": True},
                                  skip_if_exists=True)
        unplaced = 0  # references a larger n_trials would have run
        if references and n_trials > 0:  # they count toward n_trials, after the baseline
            for line in enqueue_references(created, space, n_trials - int(baseline), knobs):
                log.info("%s", line)
                unplaced += line.startswith(NO_ROOM)
    if old and if_new:
        pass
    elif before > done:
        log.info("study %r in %s had %d trial(s) still to run (running elsewhere, or left by a "
                 "stopped run): joined it with %d more, %d to run", name, shown(url),
                 before - done, n_trials, goal - done)
    else:
        log.info("study %r in %s: %d trial(s) to run, objectives %s%s", name, shown(url),
                 n_trials, ", ".join(space.objectives),
                 _plan(space, created.get_trials(deepcopy=False), goal, n_trials, unplaced))
    log.info("images and checkpoints: %s", _where(store, url, name))
    if store is None and storage_file(url) is None:
        log.info("note: they stay on this machine; give the study a shared artifact store "
                 "(artifacts: a shared folder or s3://BUCKET) when workers run on several "
                 "machines")


def same_network(name: str, old: Settings, new: Settings) -> None:
    """UsageError unless a second ``start`` of study ``name`` trains the network it trains."""
    if old.base.model != new.base.model:
        raise UsageError(f"study {name!r} trains the network {old.base.model}; this start "
                         f"asks for {new.base.model}")
    if old.model_sha256 and new.model_sha256 and old.model_sha256 != new.model_sha256:
        raise UsageError(f"study {name!r} was started with {old.base.model} of sha256 "
                         f"{old.model_sha256[:16]}; its source now has "
                         f"{new.model_sha256[:16]}: start a new study for the changed code")


def _plan(space: Space, trials: Sequence[FrozenTrial], goal: int, n_trials: int,
          unplaced: int) -> str:
    """How the budget is spent, for the start line (sweep.runner.stages, sweep.runner.confirm).

    Confirmation re-runs the search's best, so it runs only when the ``goal`` leaves room
    for a trial the sampler proposes after the labelled ones (the baseline, the references,
    and the ``unplaced`` references this budget had no room for, which a larger one runs
    first); otherwise the line says so, and which ``n_trials`` would leave that room."""
    from sweep.answer import recommend as rec_rule

    text = "; search: the references, then a window around the best of them" if (
        space.strategy == "focus") else ""
    if not space.confirm:
        return text
    missing = sum(rec_rule.labelled(t) for t in trials) + unplaced + 1 - goal
    if missing > 0:
        return text + (f"; no re-runs over seeds, so the answer rests on 1 seed: they confirm "
                       f"the search's best, and these {goal} trials are the seed and the fixes "
                       f"(--n-trials {n_trials + missing} or more leaves room for them)")
    return text + (f"; then the {space.confirm} best and the best reference re-run with "
                   f"{EXTRA_SEEDS} more seeds each")


def _where(store: str | None, url: str, name: str) -> str:
    from sweep.storage.stores import open_stores

    return open_stores(store, url, name).where if store is None else store


def resume(study: str, *, storage: str | None = None,
           options: RunOptions | None = None) -> Sweep:
    """Continue a stopped study with its stored settings; trials that a crash, kill -9 or
    Ctrl-C left unfinished re-run from their last checkpoint. Returns its ``Sweep``."""
    url = resolve_storage_url(storage)
    options = options or RunOptions()
    _, settings = _load(url, study)
    network.require(settings, study, options.model)

    import optuna

    from sweep.logs import quiet_logs
    from sweep.runner.heartbeat import open_with_heartbeat
    from sweep.runner.progress import results
    from sweep.storage.stores import open_stores

    slots = options.slots()
    with quiet_logs():
        beating = optuna.load_study(study_name=study,
                                    storage=open_with_heartbeat(url, settings.heartbeat))
        stores = open_stores(settings.artifacts, url, study)
        retry_unfinished(beating, stores.checkpoints, grace=3 * settings.heartbeat)
        done = results(beating.get_trials(deepcopy=False))
        log.info("resuming study %r: %d/%d trials done", study, done, settings.goal)
        _run(url, study, slots, options)
    return _handle(url, study)


def join(study: str, *, storage: str | None = None,
         options: RunOptions | None = None) -> Sweep:
    """Run trials of an existing study from this machine until its stored goal is met;
    returns its ``Sweep``."""
    url = resolve_storage_url(storage)
    options = options or RunOptions()
    network.require(_load(url, study)[1], study, options.model)

    from sweep.logs import quiet_logs

    slots = options.slots()
    with quiet_logs():
        _run(url, study, slots, options)
    return _handle(url, study)


def _handle(url: str, name: str) -> Sweep:
    from sweep.runner.handle import load

    return load(name, storage=url)


def _load(url: str, name: str) -> tuple[optuna.Study, Settings]:
    import optuna

    storage = open_storage(url, heartbeat_interval=None, must_exist=True)
    try:
        loaded = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise UsageError(f"no study {name!r} in {shown(url)}") from None
    return loaded, study_settings.load(loaded)


def _run(url: str, name: str, slots: list[str | None], options: RunOptions,
         images: torch.Tensor | None = None) -> None:
    """This machine's workers: one in this process, or one process per slot with progress.

    Raises Interrupted on SIGINT/SIGTERM (once the workers have recorded their trials) and
    WorkerFailed when the study's goal was not met because workers died.
    """
    import optuna

    from sweep.runner.loop import run_worker
    from sweep.runner.progress import Progress, no_result, results

    # A worker process started by another's run_slots reports nothing itself: its parent
    # draws the progress line for all of them.
    child = WORKER_ID_ENV in os.environ
    worker_id = int(os.environ.get(WORKER_ID_ENV, "0"))
    reader = optuna.load_study(study_name=name,
                               storage=open_storage(url, heartbeat_interval=None))
    progress = Progress(reader, study_settings.load(reader).goal)
    timeout = options.timeout
    started = time.monotonic()
    try:
        dead = run_slots(slots, threads_per_worker(len(slots), options.threads), name, url,
                         timeout,
                         run_here=lambda: run_worker(url, name, worker_id, timeout,
                                                     images=images, show_progress=not child),
                         poll=progress.poll,
                         budget_left=lambda: results(reader.get_trials(deepcopy=False))
                         < study_settings.load(reader).goal, model=options.model)
    except KeyboardInterrupt as err:  # the worker, or run_slots, names the signal it got
        how = str(err.args[0]) if err.args else "SIGINT"
        raise Interrupted(name, how if how.startswith("SIG") else "SIGINT") from None
    if child:
        return
    if any(line.endswith(FULL_WORDS) for line in dead):
        # The command line adds how to resume (RunError.study).
        raise DatabaseFull(f"the database {shown(url)} is full: its workers stopped; free "
                           "space or move it (with its -wal file) to a bigger disk",
                           study=name)
    goal = study_settings.load(reader).goal
    done = results(reader.get_trials(deepcopy=False))
    timed_out = timeout is not None and time.monotonic() - started >= timeout
    for line in dead:
        log.warning("%s", line)
    if done >= goal:
        if dead:
            log.warning("study %r met its goal (%d/%d) despite the above%s", name, done, goal,
                        f": {lost_workers(dead)}" if lost_workers(dead) else "")
        from sweep.answer.summary import save_notes

        save_notes(reader)  # the answer where the dashboard shows it
        fruitless = no_result(reader.get_trials(deepcopy=False))
        if fruitless:  # "met its goal" with nothing to show: not a success (exit 1)
            raise NoResult(f"study {name!r} spent its budget ({done}/{goal}) with {fruitless}")
        return
    if timed_out and not dead:
        log.info("timeout reached: %d/%d trials done; resuming study %r continues it",
                 done, goal, name)
        return
    raise WorkerFailed(f"study {name!r} stopped at {done}/{goal} trials"
                       f"{' (' + '; '.join(dead) + ')' if dead else ''}", study=name)


def retry_unfinished(study: optuna.Study, ckpt: CheckpointStore, grace: float) -> None:
    """Fail trials whose worker is gone and enqueue their re-runs.

    RUNNING trials are failed by Optuna once their heartbeat is older than the grace period
    (waited for here, at most ``grace`` seconds, since ``resume`` means the run stopped);
    trials that ended FAIL while training and still have a checkpoint, and were not
    re-queued already (a worker stopped by a signal re-queues its own), are retried too.
    """
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    from sweep.runner.requeue import Requeue

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
                and ckpt.fetch(root) is not None):
            Requeue("it stopped while training")(study, t)
