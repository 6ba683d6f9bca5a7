"""``python -m sweep status``: trials by state, the Pareto front as a table with the params
the study searched (read from its stored space), and the answer to the seed question: did
the baseline collapse, how did each reference fix do, and which trial to take (the rule of
``sweep.recommend``), with its complete config."""

from __future__ import annotations

from collections import Counter
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from sweep import answer as answer_text
from sweep import recommend as rec_rule
from sweep import settings as study_settings
from sweep.storage import open_study, shown


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


def front(study: optuna.Study) -> list[FrozenTrial]:
    if len(study.directions) == 1:
        try:  # best_trial skips infeasible (collapsed) trials, and raises when all are
            return [study.best_trial]
        except ValueError:
            return []
    return sorted(study.best_trials, key=lambda t: t.values[0])


def _line(t: FrozenTrial) -> str:
    a = t.user_attrs
    return (f"bits/dim {_fmt(a.get('bits_per_dim'))}, neg_elbo {_fmt(a.get('neg_elbo'))} nats, "
            f"mse {_fmt(a.get('mse'))}, rate {_fmt(a.get('rate'))} nats, "
            f"{_fmt(a.get('active_units'))} active units")


def answer(study: optuna.Study) -> str:
    """The baseline's fate, each reference, and the recommended configuration
    (``sweep.recommend``) with its mean and SD over seeds, the gap to the best reference,
    and its complete config."""
    trials = study.get_trials(deepcopy=False)
    base = rec_rule.baseline(trials)
    lines = []
    if base is not None and rec_rule.reached_an_epoch(base):
        lines.append(f"Baseline (the seed configuration, trial {base.number}): "
                     f"{rec_rule.fate(base)}; {_line(base)}.")
    for t in rec_rule.references(trials):
        if rec_rule.reached_an_epoch(t):
            lines.append(f"Reference {t.user_attrs['reference']} (trial {t.number}): "
                         f"{rec_rule.fate(t)}; {_line(t)}.")
    best = rec_rule.recommend(trials)
    if best is None:
        lines.append("Recommended: none yet (no complete trial kept an active unit).")
        return "\n".join(lines)
    cfg = rec_rule.trial_config(best)
    lines.append(f"Recommended (lowest neg_elbo among complete trials that kept active units, "
                 f"mean over seeds): trial {best.number}; {_line(best)}.")
    lines += [line.replace("Recommended: ", "Over seeds, recommended ", 1)
              for line in answer_text.lines(answer_text.summary(study))
              if not line.startswith("The seed configuration")]
    lines.append("Its config, every field: "
                 + " ".join(f"{k}={v}" for k, v in cfg.to_dict().items()))
    lines.append(f"Take it: python -m sweep export --study {study.study_name} "
                 f"--trial {best.number} --out DIR")
    return "\n".join(lines)


def status_json(storage_url: str | None, study_name: str | None) -> dict[str, Any]:
    """The answer as data (``sweep.answer.summary``) with the trials' counts by state."""
    study, _, url = open_study(storage_url, study_name)
    counts = Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False))
    return {**answer_text.summary(study), "storage": shown(url), "trials": dict(counts)}


def status(storage_url: str | None, study_name: str | None) -> str:
    study, _, url = open_study(storage_url, study_name)
    study_name = study.study_name
    knobs = list(study_settings.load(study).space.params)
    counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    out = [f"study {study_name!r} ({shown(url)}): "
           + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))]
    best = front(study)
    names_ = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    extra = [m for m in ("active_units", "rate", "neg_elbo") if m not in names_]
    header = ["trial", *names_, *extra, *knobs]
    rows = [[str(t.number), *(_fmt(v) for v in t.values),
             *(_fmt(t.user_attrs.get(m)) for m in extra),
             *(_fmt(t.params.get(k)) for k in knobs)] for t in best]
    title = "Pareto front" if len(study.directions) > 1 else "Best trial"
    out.append(f"\n{title} ({len(best)} trial(s)):")
    out.append(table(rows, header) if rows else "(no completed trial yet)")
    text = answer(study)
    if text:
        out.append("\n" + text)
    return "\n".join(out)
