"""Progress of a study: counts by state, a line per finished trial, the best so far.

Each is a record of the ``sweep.runner.progress`` logger; the counts carry ``redraw``, so the
command line's handler redraws them in place on a terminal (``sweep.logs.Console``); otherwise each
change is one plain log line. ``results`` is what the trial goal counts: finished trials,
where a failed trial that was re-run counts once (through its re-run).
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Sequence

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from sweep.answer import yardstick
from sweep.answer.recommend import of_study, recommend
from sweep.storage import settings as study_settings

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def results(trials: Sequence[FrozenTrial]) -> int:
    """Finished trials among ``trials``, a failed one that was re-run counting once."""
    retried = {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}
    return sum(t.state in FINISHED and not (t.state == TrialState.FAIL and t.number in retried)
               for t in trials)


def no_result(trials: Sequence[FrozenTrial]) -> str | None:
    """None when one of ``trials`` is COMPLETE; else what became of them, in one line: how
    many failed, the most common kind of reason (its text before ": ", "; " or " at step ")
    with the last full reason of that kind, and how many were pruned."""
    if any(t.state == TrialState.COMPLETE for t in trials):
        return None
    reasons = [str(t.user_attrs.get("fail_reason") or "no reason recorded")
               for t in trials if t.state == TrialState.FAIL]
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    text = f"no COMPLETE trial: {len(reasons)} failed"
    if reasons:
        kinds = Counter(_kind(r) for r in reasons)
        kind, count = kinds.most_common(1)[0]
        last = next(r for r in reversed(reasons) if _kind(r) == kind)
        text += f", most often {kind} ({count} of {len(reasons)}; the last: {last})"
    return text + (f", {pruned} pruned" if pruned else "")


def _kind(reason: str) -> str:
    return re.split(r": |; | at step ", reason, maxsplit=1)[0]


def best_summary(study: optuna.Study) -> str:
    try:
        if len(study.directions) == 1:
            best = study.best_trial
            return f"best: trial {best.number} = {best.value:.4g}"
        front = study.best_trials
    except ValueError:
        return "best: none yet"
    if not front:
        return "best: none yet"
    # The trial status and report recommend, by the same rule, so the line never names another.
    trials = study.get_trials(deepcopy=False)
    top = recommend(trials, of_study(study))
    if top is None:
        return f"Pareto front: {len(front)} trial(s); none to recommend yet"
    key = yardstick.key([top])
    return (f"Pareto front: {len(front)} trial(s); recommended: trial {top.number} "
            f"({top.user_attrs[key]:.4g} {yardstick.unit(key)}, "
            f"{top.user_attrs.get('active_units', 0)} active units)")


class Progress:
    def __init__(self, study: optuna.Study, goal: int | None = None, echo: bool = True) -> None:
        self.study, self.goal, self.echo = study, goal, echo
        self.last = ""
        self.started = time.monotonic()

    def counts(self) -> str:
        trials = self.study.get_trials(deepcopy=False)
        c = Counter(t.state for t in trials)
        done = results(trials)
        stored = study_settings.stored(self.study) if self.goal is not None else None
        if stored:  # confirmation runs (sweep.runner.confirm) or another start raised the goal
            self.goal = stored["goal"]
        goal = f"/{self.goal}" if self.goal is not None else ""
        # How far each running trial is (EpochProgress writes it after every epoch).
        where = ", ".join(f"#{t.number} {t.user_attrs['progress']}" for t in trials
                          if t.state == TrialState.RUNNING and "progress" in t.user_attrs)
        return (f"{done}{goal} done: {c[TrialState.COMPLETE]} complete, "
                f"{c[TrialState.PRUNED]} pruned, {c[TrialState.FAIL]} failed, "
                f"{c[TrialState.RUNNING]} running{f' ({where})' if where else ''}, "
                f"{c[TrialState.WAITING]} queued")

    def covered(self) -> bool:
        """Whether a worker should start no new trial: nothing is queued, and the trials done
        plus those running on other workers meet the goal (so N workers do not overshoot it
        by N - 1). Trials whose worker died are failed (and re-queued) first, so they are
        not counted as running."""
        if self.goal is None:
            return False
        optuna.storages.fail_stale_trials(self.study)
        trials = self.study.get_trials(deepcopy=False)
        if any(t.state == TrialState.WAITING for t in trials):
            return False
        running = sum(t.state == TrialState.RUNNING for t in trials)
        return results(trials) + running >= self.goal

    def _print(self, line: str, final: bool) -> None:
        log.info("%s", line, extra={"redraw": not final})

    def poll(self) -> None:
        """Log the counts when they changed (the parent of several workers calls this)."""
        line = f"[{time.monotonic() - self.started:6.0f}s] {self.counts()} | "
        line += best_summary(self.study)
        if line.split("] ", 1)[1] != self.last.split("] ", 1)[-1]:
            self._print(line, final=False)
            self.last = line

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna callback after each trial of this worker."""
        self.report(study, trial)
        if self.covered():
            study.stop()

    def report(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """A line for a trial this worker finished, then the counts."""
        if self.echo:
            if trial.values:
                names = study.metric_names or [f"v{i}" for i in range(len(trial.values))]
                what = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, trial.values, strict=False))
                if "collapse_reason" in trial.user_attrs:  # kept in the plots, never best
                    what += f"; infeasible: {trial.user_attrs['collapse_reason']}"
                if "repeat_of" in trial.user_attrs:  # sweep.runner.repeats
                    what += (f"; the config of trial {trial.user_attrs['repeat_of']}: its "
                             "values, not trained again")
            else:
                what = str(trial.user_attrs.get("pruned_reason")
                           or trial.user_attrs.get("fail_reason") or "")
            self._print(f"trial {trial.number} {trial.state.name}: {what}", final=True)
            self.poll()
