"""SIGTERM and SIGINT at named moments of a trial's life leave the study recoverable: the
trial is FAIL with the signal as its reason and exactly one re-run queued, or, when its
result was already told, finished as it was; never RUNNING, never FAIL without a re-run.

The signal is raised in this process (``signal.raise_signal``) from inside the moment it
names: a Lightning hook (a training step, validation, checkpoint writing), or a patched
call of the worker (taking the trial, recording its metrics, telling its result, between
two trials, while the interruption itself is recorded). The whole run is
``sweep.runner.loop``'s: ``signals_interrupt`` around ``Worker.run``, as ``run_worker`` does.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import optuna
import pytest
import pytorch_lightning as pl
import sqlalchemy.engine
from optuna.trial import TrialState

import sweep.runner.interrupts
import sweep.runner.loop
import sweep.runner.objective
from sweep.runner.heartbeat import open_with_heartbeat
from sweep.runner.interrupts import signals_interrupt
from sweep.runner.loop import Worker
from sweep.runner.progress import Progress
from sweep.runner.requeue import Requeue
from sweep.space import parse_space
from sweep.storage import settings as study_settings
from sweep.storage.settings import Settings
from sweep.storage.stores import open_stores

FAIL, WAITING, COMPLETE = TrialState.FAIL, TrialState.WAITING, TrialState.COMPLETE


def send(sig: signal.Signals) -> None:
    """``sig`` to this process, now; only while the worker's handler is in place (pytest
    would die of a SIGTERM otherwise)."""
    assert signal.getsignal(sig) not in (signal.SIG_DFL, None), "no handler for the signal"
    signal.raise_signal(sig)


class SignalAt(pl.Callback):
    """Raises the signal once, at ``hook`` in the second epoch of the first trial (its first
    epoch's checkpoint is written by then)."""

    def __init__(self, hook: str, sig: signal.Signals) -> None:
        self.hook, self.sig, self.sent = hook, sig, False

    def _maybe(self, hook: str, trainer: pl.Trainer) -> None:
        if hook == self.hook and trainer.current_epoch == 1 and not self.sent:
            self.sent = True
            send(self.sig)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._maybe("training step", trainer)

    def on_validation_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._maybe("validation", trainer)

    def on_save_checkpoint(self, trainer: pl.Trainer, *args: Any) -> None:
        self._maybe("checkpoint writing", trainer)


@pytest.fixture(autouse=True)
def fresh_signal_state():
    sweep.runner.interrupts.RECEIVED.clear()
    yield
    sweep.runner.interrupts.RECEIVED.clear()


def plant(at: str, sig: signal.Signals, study: optuna.Study, worker: Worker,
          monkeypatch: pytest.MonkeyPatch, before: Any, first_time: Any) -> None:
    """Have ``sig`` sent at the named point ``at`` of the trial's life."""
    if at in ("training step", "validation", "checkpoint writing"):
        fit = sweep.runner.objective.fit
        monkeypatch.setattr(sweep.runner.objective, "fit", lambda cfg, callbacks, **kw: fit(
            cfg, callbacks=[*callbacks, SignalAt(at, sig)], **kw))
    elif at == "a query at an epoch's end":
        # Right after a query of the epoch-end callbacks returns, its result unread: on
        # SQLite the connection then kept reading the snapshot from before, so the
        # interruption's tell() saw the trial still RUNNING and queued no re-run.
        fit = sweep.runner.objective.fit
        in_fit = [False]

        def fit_flagged(*args: Any, **kwargs: Any) -> Any:
            in_fit[0] = True
            try:
                return fit(*args, **kwargs)
            finally:
                in_fit[0] = False

        monkeypatch.setattr(sweep.runner.objective, "fit", fit_flagged)
        before(sqlalchemy.engine.Connection, "execute", after=True, when=lambda: (
            in_fit[0] and threading.current_thread() is threading.main_thread()
            and first_time()))
    elif at == "taking the trial":  # ask() has set it RUNNING; its run has not begun
        before(study, "ask", after=True)
    elif at == "recording its metrics":  # training is over; its attrs are being written
        before(sweep.runner.objective, "record")
    elif at in ("telling its result", "after telling its result"):
        before(study, "tell", after=at.startswith("after"))
    elif at == "between trials":  # the first trial is told; the next is not taken yet
        before(worker, "claim", when=lambda: len(study.trials) == 1 and first_time())
    elif at == "recording the interruption":  # a second signal, as Ctrl-C in a terminal
        # sends one to the worker and its parent forwards another
        before(Requeue, "__call__")
        monkeypatch.setattr(sweep.runner.objective, "record", lambda *a, **kw: send(sig))
    else:
        raise AssertionError(at)


def run_until_signalled(tmp_path, tiny, images, monkeypatch, goal: int, sig: signal.Signals,
                        at: str) -> list[optuna.trial.FrozenTrial]:
    url = f"sqlite:///{tmp_path}/s.db"
    space = parse_space({"objectives": ["mse"], "pruner": "none",
                         "search": {"lr": {"low": 1e-3, "high": 2e-3}},
                         "fixed": {**tiny, "synthetic_size": 128,
                                   # the final epoch writes no checkpoint: one more for it
                                   "max_epochs": 3 if at == "checkpoint writing" else 2,
                                   "kl_schedule": "linear", "kl_warmup_steps": 100_000}})
    settings = Settings(space, goal=goal, heartbeat=1)
    storage = open_with_heartbeat(url, 1)
    study = optuna.create_study(study_name="s", storage=storage, direction="minimize")
    study_settings.save(study, settings)
    stores = open_stores(None, url, "s")
    objective = sweep.runner.objective.Objective(space, images[:128], stores.artifacts,
                                          stores.checkpoints, keep_weights=False)
    worker = Worker(study, storage, objective, settings, Progress(study, goal, False))
    once = [False]

    def first_time() -> bool:
        sent, once[0] = once[0], True
        return not sent

    def before(owner: Any, name: str, after: bool = False, when=first_time) -> None:
        real = getattr(owner, name)

        def patched(*args: Any, **kwargs: Any) -> Any:
            if not after and when():
                send(sig)
            result = real(*args, **kwargs)
            if after and when():
                send(sig)
            return result

        monkeypatch.setattr(owner, name, patched)

    plant(at, sig, study, worker, monkeypatch, before, first_time)
    with pytest.raises(KeyboardInterrupt), signals_interrupt():
        worker.run(timeout=None)
    assert sweep.runner.interrupts.RECEIVED == [sig.name]
    return optuna.load_study(study_name="s", storage=url).get_trials()


INTERRUPTED = ["taking the trial", "training step", "validation", "checkpoint writing",
               "a query at an epoch's end", "recording its metrics", "telling its result",
               "recording the interruption"]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
@pytest.mark.parametrize("at", INTERRUPTED)
def test_a_signal_while_a_trial_runs_fails_it_and_queues_one_re_run(
        tmp_path, tiny, images, monkeypatch, sig, at):
    trials = run_until_signalled(tmp_path, tiny, images, monkeypatch, 1, sig, at)
    if at == "telling its result":  # the signal waits for the result to be written
        assert [t.state for t in trials] == [COMPLETE]
        return
    assert [t.state for t in trials] == [FAIL, WAITING]
    assert trials[0].user_attrs["fail_reason"].startswith(f"interrupted by {sig.name}")
    assert trials[1].user_attrs["retry_of"] == 0
    assert trials[1].params == trials[0].params


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
@pytest.mark.parametrize("at", ["after telling its result", "between trials"])
def test_a_signal_once_the_result_is_told_leaves_the_trial_finished(
        tmp_path, tiny, images, monkeypatch, sig, at):
    trials = run_until_signalled(tmp_path, tiny, images, monkeypatch, 2, sig, at)
    assert [t.state for t in trials] == [COMPLETE]  # and the worker took no other trial
