"""A study's status as data (``read_status``), and ``python -m sweep status``'s text as a
rendering of it (``render``): trials by state, the Pareto front as a table with the params
the study searched (read from its stored space), and the answer to the seed question: did
the baseline collapse, how did each reference fix do, and which trial to take (the rule of
``sweep.answer.recommend``: the best mean over seeds of the metric it ranks by, which the
text names), with its complete config.

``Status.to_dict()`` is the same data as plain JSON-ready values; ``status_json`` is the
answer over seeds (``sweep.answer.summary.summary``) that ``status --format json`` prints.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from models.config import Config
from sweep.answer import recommend as rec_rule
from sweep.answer import summary as answer_text
from sweep.answer import yardstick
from sweep.storage import settings as study_settings
from sweep.storage.database import open_study, shown

# What the answer says of each trial it names, in this order, after the yardstick
# (``sweep.answer.yardstick``: bits_per_dim or nats_per_dim).
SHOWN = ("neg_elbo", "mse", "rate", "active_units")
# Besides those, what ``Recommendation.metrics`` holds when the trial has it.
METRICS = (*SHOWN, "bits_per_dim_own", "neg_elbo_own", "mutual_info")


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """The trial to take (``sweep.answer.recommend``): its number, complete config and metrics
    (validation: the yardstick, ``neg_elbo`` and ``rate`` in nats per image, ``mse`` per
    pixel, ``active_units``...)."""

    trial: int
    config: Config
    metrics: dict[str, Any]
    ranked_by: str = rec_rule.YARDSTICK  # the metric it is the best of (rec_rule.ranked_by)

    @classmethod
    def of(cls, t: FrozenTrial, key: str, by: str = rec_rule.YARDSTICK) -> Recommendation:
        return cls(t.number, rec_rule.trial_config(t),
                   {k: t.user_attrs[k] for k in (key, by, *METRICS) if k in t.user_attrs}, by)


@dataclasses.dataclass(frozen=True)
class Named:
    """A trial the answer names (the baseline, a reference): how it ended, and its metrics."""

    trial: int
    fate: str
    metrics: dict[str, Any]
    label: str | None = None  # a reference's label

    @classmethod
    def of(cls, t: FrozenTrial, key: str) -> Named:
        return cls(t.number, rec_rule.fate(t), {k: t.user_attrs.get(k) for k in (key, *SHOWN)},
                   t.user_attrs.get("reference"))


@dataclasses.dataclass(frozen=True)
class Row:
    """A trial of the front: its objective values, other metrics, and searched params."""

    trial: int
    values: list[float]
    metrics: dict[str, Any]
    params: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Status:
    study: str
    storage: str  # the URL as shown (password hidden)
    yardstick: str  # the metric the answer is read in (sweep.answer.yardstick)
    ranked_by: str  # the metric the recommendation ranks by (sweep.answer.recommend.ranked_by)
    counts: dict[str, int]  # trials by state name
    objectives: list[str]
    metrics: list[str]  # the front's columns besides the objectives
    params: list[str]  # the searched params
    multi_objective: bool
    front: list[Row]  # the Pareto front (multi-objective), else the best trial
    baseline: Named | None  # the seed configuration, once it reached an epoch
    references: list[Named]  # each reference that reached an epoch
    recommended: Recommendation | None
    over_seeds: dict[str, Any]  # the answer over seeds (sweep.answer.summary.summary)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (each config as its flat fields, knobs as model.NAME)."""
        data = dataclasses.asdict(self)
        if self.recommended is not None:  # asdict would give Config's own fields
            data["recommended"]["config"] = self.recommended.config.to_dict()
        return data


def front(study: optuna.Study) -> list[FrozenTrial]:
    if len(study.directions) == 1:
        try:  # best_trial skips infeasible (collapsed) trials, and raises when all are
            return [study.best_trial]
        except ValueError:
            return []
    return sorted(study.best_trials, key=lambda t: t.values[0])


def read_status(study: optuna.Study, url: str) -> Status:
    """The status of ``study``, stored at ``url``."""
    trials = study.get_trials(deepcopy=False)
    knobs = list(study_settings.load(study).space.params)
    names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    extra = [m for m in ("active_units", "rate", "neg_elbo") if m not in names]
    counts = Counter(t.state.name for t in trials)
    base = rec_rule.baseline(trials)
    by = rec_rule.of_study(study)
    best = rec_rule.recommend(trials, by)
    key = yardstick.key(trials, names)
    return Status(
        study=study.study_name, storage=shown(url), yardstick=key, ranked_by=by,
        counts=dict(sorted(counts.items())),
        objectives=list(names), metrics=extra, params=knobs,
        multi_objective=len(study.directions) > 1,
        front=[Row(t.number, list(t.values), {m: t.user_attrs.get(m) for m in extra},
                   {k: t.params.get(k) for k in knobs}) for t in front(study)],
        baseline=Named.of(base, key) if base is not None and rec_rule.reached_an_epoch(base)
        else None,
        references=[Named.of(t, key) for t in rec_rule.references(trials)
                    if rec_rule.reached_an_epoch(t)],
        recommended=None if best is None else Recommendation.of(best, key, by),
        over_seeds=answer_text.summary(study))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
             for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _line(a: dict[str, Any], key: str, by: str = rec_rule.YARDSTICK) -> str:
    # A ranking metric the line does not show anyway comes first (mutual_info...).
    first = "" if by in (rec_rule.YARDSTICK, *SHOWN) else f"{by} {_fmt(a.get(by))}, "
    return (f"{first}{yardstick.unit(key)} {_fmt(a.get(key))}, neg_elbo "
            f"{_fmt(a.get('neg_elbo'))} nats, mse {_fmt(a.get('mse'))}, rate "
            f"{_fmt(a.get('rate'))} nats, {_fmt(a.get('active_units'))} active units")


def answer(s: Status) -> str:
    """The baseline's fate, each reference, and the recommended trial with its complete
    config."""
    lines, key = [], s.yardstick
    if s.baseline is not None:
        lines.append(f"Baseline (the seed configuration, trial {s.baseline.trial}): "
                     f"{s.baseline.fate}; {_line(s.baseline.metrics, key)}.")
    for r in s.references:
        lines.append(f"Reference {r.label} (trial {r.trial}): {r.fate}; "
                     f"{_line(r.metrics, key)}.")
    best = s.recommended
    if best is None:
        lines.append("Recommended: none yet (no complete trial kept an active unit).")
        return "\n".join(lines)
    lines.append(f"Recommended ({rec_rule.rule_words(s.ranked_by, yardstick.unit(key))}, the "
                 f"mean over seeds, among complete trials that kept active units): trial "
                 f"{best.trial}; {_line(best.metrics, key, s.ranked_by)}.")
    lines += [line.replace("Recommended: ", "Over seeds, recommended ", 1)
              for line in answer_text.lines(s.over_seeds)
              if not line.startswith("The seed configuration")]
    lines.append("Its config, every field: "
                 + " ".join(f"{k}={v}" for k, v in best.config.to_dict().items()))
    lines.append(f"Take it: python -m sweep export --study {s.study} "
                 f"--trial {best.trial} --out DIR")
    return "\n".join(lines)


def render(s: Status) -> str:
    """``python -m sweep status``'s text."""
    out = [f"study {s.study!r} ({s.storage}): "
           + ", ".join(f"{n} {state.lower()}" for state, n in s.counts.items())]
    header = ["trial", *s.objectives, *s.metrics, *s.params]
    rows = [[str(r.trial), *(_fmt(v) for v in r.values),
             *(_fmt(r.metrics[m]) for m in s.metrics),
             *(_fmt(r.params[k]) for k in s.params)] for r in s.front]
    title = "Pareto front" if s.multi_objective else "Best trial"
    out.append(f"\n{title} ({len(s.front)} trial(s)):")
    out.append(table(rows, header) if rows else "(no completed trial yet)")
    out.append("\n" + answer(s))
    return "\n".join(out)


def to_json(s: Status) -> dict[str, Any]:
    """``status --format json``: the answer over seeds with the trials' counts by state."""
    return {**s.over_seeds, "storage": s.storage,
            "trials": {state.lower(): n for state, n in s.counts.items()}}


def status_json(storage_url: str | None, study_name: str | None) -> dict[str, Any]:
    """The JSON status of study ``study_name`` (or the storage's only study)."""
    study, _, url = open_study(storage_url, study_name)
    return to_json(read_status(study, url))


def status(storage_url: str | None, study_name: str | None) -> str:
    """The status text of study ``study_name`` (or the storage's only study)."""
    study, _, url = open_study(storage_url, study_name)
    return render(read_status(study, url))
