"""Parameter importance per objective (Optuna's fANOVA evaluator), or why there is none."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState


def importances(study: optuna.Study) -> dict[str, dict[str, float]] | str:
    """fANOVA importance of each searched param per objective, or why there is none."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.params]
    if len(done) < 2:
        return (f"Parameter importance needs at least 2 complete trials with searched params; "
                f"this study has {len(done)}.")
    names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    out = {}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, name in enumerate(names):
                out[name] = optuna.importance.get_param_importances(study, target=_value(i))
    except (RuntimeError, ValueError) as err:
        return f"Optuna could not compute parameter importance: {err}"
    finally:
        optuna.logging.set_verbosity(verbosity)
    if not any(out.values()):
        return "No param varied across the complete trials: nothing to attribute."
    return out


def _value(i: int) -> Callable[[FrozenTrial], float]:
    return lambda t: float(t.values[i])
