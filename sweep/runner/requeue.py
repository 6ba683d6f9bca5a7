"""Re-runs of a failed trial: Optuna's retry callback, bounded by MAX_RETRY, whose copy
starts clean and says what it re-runs (``retry_of``, ``retry``, ``retry_reason`` user attrs;
Optuna's ``failed_trial`` and ``retry_history`` system attrs)."""

from __future__ import annotations

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from sweep.storage import trial_record

MAX_RETRY = 3  # re-runs of a trial whose worker died or was stopped, before it stays FAIL


class Requeue(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a failed trial (same params, ``retry_history``), bounded by
    MAX_RETRY, whose copy starts clean: it carries only what says it is a re-run (the
    failed trial's metrics and progress would otherwise stick to it)."""

    def __init__(self, reason: str = "its worker stopped sending heartbeats") -> None:
        super().__init__(max_retry=MAX_RETRY)
        self.reason = reason

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        history = [*self.retry_history(trial), trial.number]
        if len(history) > MAX_RETRY:
            return
        keep = {k: v for k, v in trial.user_attrs.items() if k == "baseline"}
        reason = trial.user_attrs.get("fail_reason") or self.reason
        first = self.retried_trial_number(trial)
        study.add_trial(optuna.create_trial(
            state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
            user_attrs={**keep, "retry_of": trial.number, "retry": len(history),
                        "retry_reason": f"trial {trial.number}: {reason}"},
            system_attrs={**trial_record.without_record(trial.system_attrs),
                          # The trial first run, across re-runs of re-runs (as Optuna's
                          # RetryFailedTrialCallback keeps it).
                          "failed_trial": trial.number if first is None else first,
                          "retry_history": history}))


def rerun_queued(study: optuna.Study, number: int) -> bool:
    """Whether trial ``number``'s re-run is queued already (the last of its retry_history)."""
    return any(Requeue.retry_history(t)[-1:] == [number]
               for t in study.get_trials(deepcopy=False))
