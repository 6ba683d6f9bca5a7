"""A configuration the sampler proposes again is not trained again.

TPE proposes a configuration it has tried before whenever the space leaves it little else
(in a 2-value space, the same one 5 times), and each trained to the same result: training is
deterministic on a fixed seed. As Optuna's FAQ advises for this, the trial takes the values
of the earlier COMPLETE trial with the same complete config (``Config.to_dict()``, every
field, seed included) instead: its record (``sweep.storage.trial_record``), its constraint
(infeasible stays infeasible), its metric attrs, and ``repeat_of`` (the first trial of that
config) to say so; ``wall_time_s`` is 0, and no images or weights are stored (the earlier
trial has them).

Never for the stages the answer needs trained (``must_train_fully``): the baseline, the
references and the confirmation runs over seeds (``sweep.runner.confirm``) always train.
PRUNED trials stopped before their budget, so their numbers are not their config's: a
configuration only pruned so far trains again.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from models.config import Config
from sweep import optuna_private
from sweep.runner.stages import must_train_fully
from sweep.storage import trial_record

REPEAT_KEY = "repeat_of"

# User attrs that tell how the earlier trial ran, or which stage proposed it, rather than
# what its config gives: the repeat keeps its own (or none).
RUN_ONLY = frozenset({
    "stage", "baseline", "reference", "focus_of", "confirm_of", "worker", "progress",
    "retry_of", "retry", "retry_reason", "resumed_from", "checkpoint_refused",
    "checkpoint_missing", "artifacts_missing", "wall_time_s", REPEAT_KEY,
})


def earlier_run(trial: optuna.Trial, cfg: Config, stage: str) -> FrozenTrial | None:
    """The first COMPLETE trial of the study whose complete config is ``cfg``, when
    ``trial`` (of ``stage``) may take its values instead of training; else None."""
    if must_train_fully(stage):
        return None
    config = cfg.to_dict()
    for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.number != trial.number and trial_record.config(t) == config:
            return t
    return None


def take(trial: optuna.Trial, earlier: FrozenTrial) -> float | tuple[float, ...]:
    """Give ``trial`` the values, record, constraint and metric attrs of ``earlier``, marked
    ``repeat_of``; returns the values, as the objective does."""
    trial_record.write(trial, trial_record.config(earlier) or {}, trial_record.history(earlier),
                       trial_record.kl_per_dim(earlier) or None)
    constraints = earlier.system_attrs.get(optuna_private.CONSTRAINTS_KEY)
    if constraints is not None:
        trial.storage.set_trial_system_attr(optuna_private.trial_id(trial),
                                            optuna_private.CONSTRAINTS_KEY, constraints)
    own = trial.user_attrs
    attrs: dict[str, Any] = {k: v for k, v in earlier.user_attrs.items()
                             if k not in RUN_ONLY and k not in own}
    attrs |= {"wall_time_s": 0.0, REPEAT_KEY: earlier.user_attrs.get(REPEAT_KEY, earlier.number)}
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    values = tuple(float(v) for v in earlier.values)
    return values[0] if len(values) == 1 else values
