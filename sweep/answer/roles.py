"""The trials a report is about and their roles: the recommended trial, the baseline, the
references and the front, with the held-out scores ``sweep.answer.heldout`` adds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from sweep.answer import recommend as rec_rule
from sweep.answer.status import front as status_front
from sweep.storage import trial_record


@dataclass
class Roles:
    """The trials the report is about."""

    recommended: FrozenTrial | None
    baseline: FrozenTrial | None
    references: list[FrozenTrial]
    front: list[FrozenTrial]
    heldout: dict[int, dict[str, Any]] = field(default_factory=dict)  # by trial number
    sources: dict[int, str] = field(default_factory=dict)  # where each held-out model came from

    def label(self, t: FrozenTrial) -> str:
        if self.recommended is not None and t.number == self.recommended.number:
            return "recommended"
        if self.baseline is not None and t.number == self.baseline.number:
            return "baseline"
        ref = t.user_attrs.get("reference")
        return trial_record.short_label(ref) if ref else ""


def roles(study: optuna.Study) -> Roles:
    trials = study.get_trials(deepcopy=False)
    if len(study.directions) > 1:
        front = sorted(study.best_trials, key=lambda t: t.user_attrs.get("neg_elbo", math.inf))
    else:
        front = status_front(study)
    return Roles(rec_rule.recommend(trials, rec_rule.of_study(study)), rec_rule.baseline(trials),
                 rec_rule.references(trials), front)
