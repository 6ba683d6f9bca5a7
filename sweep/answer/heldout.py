"""Held-out scores for the report and status: the recommended trial, the baseline, the
references, and every seed of the pick and of the best reference, scored on a split no
trial saw (``report --test-data``), with a line per trial on stderr (each may retrain).
The scores are kept in the study's user attrs (``sweep.answer.summary.TEST_KEY``), so ``status``
and ``status --format json`` show the test-split mean ± SD too.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import optuna

from sweep.answer import margin as margins
from sweep.answer import recommend as rec_rule
from sweep.answer import summary as answer_data
from sweep.optuna_private import ArtifactStore
from sweep.storage import trial_record

if TYPE_CHECKING:
    from sweep.answer.roles import Roles

log = logging.getLogger(__name__)


def seeds(data: dict[str, Any]) -> dict[str, Any] | None:
    """The pick and the best reference over their seeds, the gap and the margin
    (``sweep.answer.margin``), for the report's page
    (``data``: ``sweep.answer.summary.summary``); None before any configuration kept an
    active unit."""
    key, unit = data["yardstick"]["key"], data["yardstick"]["unit"]
    rows = []
    for role, g in (("the sweep's pick", data["recommended"]),
                    ("best reference", data["best_reference"])):
        if g is None:
            continue
        test = g.get(f"test_{key}")
        rows.append([role, ", ".join(map(str, g["runs"])), ", ".join(map(str, g["seeds"])),
                     ", ".join(f"{v:.4f}" for v in g[key]["values"]),
                     _pm(g[key]), _pm(test) if test else "-"])
    if not rows:
        return None
    gap = data["gap"]
    return {"unit": unit, "gap": _pm(gap) if gap else None,
            "gap_seeds": gap["seeds"] if gap else None,
            "margin": margins.text(data["margin"], unit) if data.get("margin") else None,
            "header": ["", "trials", "seeds", f"{unit} per seed", "mean ± SD",
                       "held-out mean ± SD"], "rows": rows}


def _pm(stats: dict[str, Any]) -> str:
    sd = stats.get("sd")
    return f"{stats['mean']:.4f}" + (f" ± {sd:.4f}" if sd is not None else "")


def score(who: Roles, storage: optuna.storages.BaseStorage, store: ArtifactStore,
                  images: Any, study: optuna.Study | None = None, spec: str = "") -> None:
    """Score the recommended trial, the baseline, the references and every seed of the
    pick and of the best reference on ``images`` (a split no trial saw) into
    ``who.heldout``, from their saved weights or retrained, one line on stderr per trial.
    With ``study``, the scores are kept in its user attrs (``sweep.answer.summary.TEST_KEY``), so
    ``status`` shows them too."""
    from sweep.answer.evaluate import evaluate, model_for

    todo = [t for t in (who.recommended, who.baseline, *who.references) if t is not None]
    if study is not None:
        trials = study.get_trials(deepcopy=False)
        by = rec_rule.of_study(study)
        for group in (rec_rule.recommend_group(trials, by), rec_rule.reference_group(trials, by)):
            todo += list(group.runs) if group is not None else []
    todo = [t for i, t in enumerate(todo) if trial_record.config(t) is not None
            and t.number not in who.heldout and t not in todo[:i]]
    for i, t in enumerate(todo, 1):
        log.info("test data: scoring trial %d (%d/%d)", t.number, i, len(todo))
        module, who.sources[t.number] = model_for(t, storage, store)
        who.heldout[t.number] = evaluate(module, images)
    if study is not None:
        study.set_user_attr(answer_data.TEST_KEY, {"data": spec, "scores": {
            str(n): {k: v for k, v in m.items() if isinstance(v, (int, float))}
            for n, m in who.heldout.items()}})
