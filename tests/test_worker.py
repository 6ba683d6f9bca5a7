"""The worker loop: faults of a trial are recorded with their reason and the worker goes on;
the budget is claimed exactly; a trial failed under its worker is dropped quietly; re-runs
are bounded and say what they re-run."""

import optuna
import pytest
import torch
from optuna.trial import TrialState

import sweep.runner.objective
from models.config import Config
from sweep import optuna_private
from sweep.errors import DatabaseFull, WorkerError
from sweep.runner.failures import describe
from sweep.runner.heartbeat import open_with_heartbeat
from sweep.runner.loop import MAX_ERRORS, MAX_OOMS, Worker
from sweep.runner.progress import Progress
from sweep.runner.requeue import MAX_RETRY, Requeue, rerun_queued
from sweep.space import parse_space
from sweep.storage import settings as study_settings
from sweep.storage.settings import Settings
from sweep.storage.stores import open_stores


def make(tmp_path, tiny, goal, search=None):
    url = f"sqlite:///{tmp_path}/w.db"
    space = parse_space({"objectives": ["mse"], "pruner": "none",
                         "search": search or {"lr": {"low": 1e-4, "high": 1e12, "log": True}},
                         "fixed": {**tiny, "max_epochs": 1, "kl_schedule": "linear",
                                   "kl_warmup_steps": 100_000}})
    settings = Settings(space, goal=goal, heartbeat=1)
    storage = open_with_heartbeat(url, 1)
    study = optuna.create_study(study_name="w", storage=storage, direction="minimize")
    study_settings.save(study, settings)
    stores = open_stores(None, url, "w")
    return study, storage, settings, stores


def worker_of(study, storage, settings, stores, images):
    objective = sweep.runner.objective.Objective(settings.space, images, stores.artifacts,
                                          stores.checkpoints)
    return Worker(study, storage, objective, settings, Progress(study, settings.goal, False))


@pytest.mark.slow
def test_nan_and_out_of_memory_fail_with_their_reason_and_the_worker_goes_on(
        tmp_path, tiny, images, monkeypatch):
    study, storage, settings, stores = make(tmp_path, tiny, goal=4)
    study.enqueue_trial({"lr": 1e-3})
    study.enqueue_trial({"lr": 1e12})  # the loss overflows: NaN
    study.enqueue_trial({"lr": 2e-3})  # out of memory, below
    study.enqueue_trial({"lr": 3e-3})
    fit = sweep.runner.objective.fit

    def fit_or_oom(cfg: Config, **kw):
        if cfg.lr == 2e-3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return fit(cfg, **kw)

    monkeypatch.setattr(sweep.runner.objective, "fit", fit_or_oom)
    worker_of(study, storage, settings, stores, images).run(timeout=None)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                         TrialState.FAIL, TrialState.COMPLETE]
    assert "nan" in trials[1].user_attrs["fail_reason"].lower()
    assert trials[2].user_attrs["fail_reason"].startswith("out of memory: CUDA out of memory")
    assert "mse" not in trials[2].user_attrs  # nothing recorded for the trial that never ran


def oom_first(n: int, fit):
    """``fit``, raising torch's CPU out-of-memory error in its first ``n`` calls."""
    calls = []

    def fit_or_oom(cfg: Config, **kw):
        calls.append(cfg.lr)
        if len(calls) <= n:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: "
                               "can't allocate memory: you tried to allocate 8 GB")
        return fit(cfg, **kw)

    return fit_or_oom


@pytest.mark.slow
def test_a_few_out_of_memory_failures_in_a_row_do_not_stop_the_worker(tmp_path, tiny, images,
                                                                       monkeypatch):
    """MAX_OOMS - 1 CPU OOMs in a row (more than MAX_ERRORS): each fails its trial, and the
    worker goes on: a large config is the trial's fault, not a bug."""
    study, storage, settings, stores = make(tmp_path, tiny, goal=MAX_OOMS,
                                            search={"lr": {"low": 1e-3, "high": 2e-3}})
    monkeypatch.setattr(sweep.runner.objective, "fit",
                        oom_first(MAX_OOMS - 1, sweep.runner.objective.fit))
    worker_of(study, storage, settings, stores, images).run(timeout=None)
    trials = study.get_trials()
    assert MAX_OOMS - 1 > MAX_ERRORS
    assert [t.state for t in trials] == [TrialState.FAIL] * (MAX_OOMS - 1) + [TrialState.COMPLETE]
    assert all(t.user_attrs["fail_reason"].startswith("out of memory: ") for t in trials[:-1])


@pytest.mark.slow
def test_many_out_of_memory_failures_in_a_row_stop_the_worker_saying_what_to_shrink(
        tmp_path, tiny, images, monkeypatch):
    # As under `ulimit -v`: every trial runs out of memory, and the worker ran them all.
    study, storage, settings, stores = make(tmp_path, tiny, goal=MAX_OOMS + 3)
    monkeypatch.setattr(sweep.runner.objective, "fit", oom_first(100, None))
    with pytest.raises(WorkerError) as err:
        worker_of(study, storage, settings, stores, images).run(timeout=None)
    assert str(err.value).startswith(f"{MAX_OOMS} trials in a row ran out of memory (the last: "
                                     "out of memory: ")
    assert "smaller batch_size or width" in str(err.value)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL] * MAX_OOMS


@pytest.mark.slow
def test_a_full_database_stops_the_worker_and_re_queues_its_trial(tmp_path, tiny, images,
                                                                  monkeypatch):
    study, storage, settings, stores = make(tmp_path, tiny, goal=3)

    def full(cfg: Config, **kw):
        raise DatabaseFull("the database sqlite:///w.db is full (database or disk is full)")

    monkeypatch.setattr(sweep.runner.objective, "fit", full)
    with pytest.raises(DatabaseFull):
        worker_of(study, storage, settings, stores, images).run(timeout=None)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]  # one, not 3
    assert trials[0].user_attrs["fail_reason"] == "the database is full"
    assert trials[1].user_attrs["retry_of"] == 0


@pytest.mark.slow
def test_a_bug_stops_the_worker_after_a_few_errors_in_a_row(tmp_path, tiny, images,
                                                             monkeypatch):
    study, storage, settings, stores = make(tmp_path, tiny, goal=10)

    def broken(cfg, **kw):
        raise KeyError("no_such_metric")

    monkeypatch.setattr(sweep.runner.objective, "fit", broken)
    with pytest.raises(WorkerError, match="3 trials in a row.*KeyError"):
        worker_of(study, storage, settings, stores, images).run(timeout=None)
    assert len(study.trials) == 3


def test_the_budget_is_claimed_exactly_and_queued_trials_first(tmp_path, tiny, images):
    study, storage, settings, stores = make(tmp_path, tiny, goal=2)
    worker = worker_of(study, storage, settings, stores, images)
    study.enqueue_trial({"lr": 1e-3})
    first = worker.claim()
    assert isinstance(first, optuna.Trial) and first.number == 0  # the queued one
    assert study.trials[0].state == TrialState.RUNNING
    second = worker.claim()
    assert isinstance(second, optuna.Trial)
    assert worker.claim() is True  # the goal is covered by running trials: wait for them
    study.tell(first, 1.0)
    study.tell(second, 1.0)
    assert worker.claim() is False  # done
    study_settings.save(study, Settings(settings.space, 3, 1))  # a second start raised it
    assert isinstance(worker.claim(), optuna.Trial)


@pytest.mark.slow
def test_a_trial_failed_under_its_worker_is_dropped_quietly(tmp_path, tiny, images, caplog):
    study, storage, settings, stores = make(tmp_path, tiny, goal=1)
    worker = worker_of(study, storage, settings, stores, images)
    objective = worker.objective

    def failed_meanwhile(trial):
        storage.set_trial_state_values(optuna_private.trial_id(trial), TrialState.FAIL)
        worker.beat.gone.set()  # what the heartbeat thread sees
        return objective.__class__.__call__(objective, trial)

    worker.objective = failed_meanwhile
    trial = worker.claim()
    assert worker.run_trial(trial) is None
    said = [(r.name, r.levelname) for r in caplog.records if "was failed under this" in r.message]
    assert said == [("sweep.runner.loop", "WARNING")]
    assert study.trials[0].state == TrialState.FAIL


def test_re_runs_are_bounded_and_say_what_they_re_run():
    study = optuna.create_study()
    study.enqueue_trial({"x": 1.0}, user_attrs={"baseline": True})
    t = study.ask()
    t.suggest_float("x", 0, 2)
    t.set_user_attr("mse", 0.5)
    t.set_user_attr("fail_reason", "interrupted by SIGTERM")
    frozen = study.tell(t, state=TrialState.FAIL)
    for _ in range(MAX_RETRY + 2):
        Requeue()(study, frozen)
        if not study.get_trials(states=(TrialState.WAITING,)):
            break
        frozen = study.tell(study.ask(), state=TrialState.FAIL)
    reruns = study.trials[1:]
    assert len(reruns) == MAX_RETRY
    first = reruns[0]
    assert first.params == {"x": 1.0} and "mse" not in first.user_attrs
    assert first.user_attrs == {"baseline": True, "retry_of": 0, "retry": 1,
                                "retry_reason": "trial 0: interrupted by SIGTERM"}
    assert first.system_attrs["retry_history"] == [0]


def test_a_re_run_of_a_re_run_still_names_the_trial_first_run():
    """failed_trial stays the original trial, as in Optuna's RetryFailedTrialCallback;
    retry_of and retry_history say which run each re-runs."""
    study = optuna.create_study()
    frozen = study.tell(study.ask(), state=TrialState.FAIL)
    for _ in range(2):
        Requeue()(study, frozen)
        frozen = study.tell(study.ask(), state=TrialState.FAIL)
    assert [t.system_attrs.get("failed_trial") for t in study.trials] == [None, 0, 0]
    assert [t.user_attrs.get("retry_of") for t in study.trials] == [None, 0, 1]
    assert Requeue.retried_trial_number(study.trials[2]) == 0
    assert study.trials[2].system_attrs["retry_history"] == [0, 1]
    assert rerun_queued(study, 1) and not rerun_queued(study, 2)
    Requeue()(study, frozen)
    assert rerun_queued(study, 2) and study.trials[3].system_attrs["failed_trial"] == 0


@pytest.mark.parametrize("err,reason", [
    (MemoryError(), "out of memory: MemoryError"),
    (RuntimeError("CUDA error: out of memory"), "out of memory: CUDA error: out of memory"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't "
                  "allocate memory: you tried to allocate 8000000000 bytes. Error code 12"),
     "out of memory: [enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't "
     "allocate memory: you tried to allocate 8000000000 bytes. Error code 12"),
    (OSError(12, "Cannot allocate memory"), "out of memory: [Errno 12] Cannot allocate memory"),
    (OSError(28, "No space left on device"), "disk full: [Errno 28] No space left on device"),
    (ValueError("bad\nsecond line"), "ValueError: bad"),
])
def test_describe_names_the_fault_in_one_line(err, reason):
    assert describe(err) == reason


@pytest.mark.slow
def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_re_queued(tmp_path, tiny,
                                                                           images):
    study, storage, settings, stores = make(tmp_path, tiny, goal=1)
    study.enqueue_trial({"lr": 1e-3})
    orphan = study.ask()  # taken, then the worker died before it ever beat
    worker = worker_of(study, storage, settings, stores, images)
    rerun = worker.claim()  # Optuna's stale check would skip the orphan for good
    assert isinstance(rerun, optuna.Trial) and rerun.number == 1
    first = study.trials[orphan.number]
    assert first.state == TrialState.FAIL and "before its first heartbeat" in \
        first.user_attrs["fail_reason"]
    assert study.trials[1].user_attrs["retry_of"] == 0
