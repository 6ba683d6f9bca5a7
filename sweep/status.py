"""``python -m sweep status``: trials by state, the Pareto front as a table with the params
the study searched (read from its stored space), and the answer to the seed question (did
the baseline collapse, and which trial fixes it best)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep import settings as study_settings
from sweep.errors import UsageError
from sweep.storage import open_storage, resolve_storage_url


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
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return [study.best_trial] if done else []
    return sorted(study.best_trials, key=lambda t: t.values[0])


def answer(study: optuna.Study, best: list[FrozenTrial], knobs: list[str]) -> str:
    """One paragraph: the baseline's fate beside the best trial by active units."""
    trials = study.get_trials(deepcopy=False)
    base = next((t for t in trials if t.user_attrs.get("baseline")
                 and t.state in (TrialState.COMPLETE, TrialState.PRUNED)), None)
    lines = []
    if base is not None:
        au = base.user_attrs.get("active_units")
        verdict = "collapsed" if au == 0 else f"kept {au} active units"
        lines.append(f"Baseline (the seed configuration, trial {base.number}): {verdict}, "
                     f"rate {_fmt(base.user_attrs.get('rate'))} nats, "
                     f"mse {_fmt(base.user_attrs.get('mse'))}.")
    good = [t for t in best if t.user_attrs.get("active_units", 0) > 0]
    if good:
        top = max(good, key=lambda t: (t.user_attrs["active_units"], -t.user_attrs["mse"]))
        chosen = ", ".join(f"{k}={_fmt(top.params[k])}" for k in knobs if k in top.params)
        lines.append(f"Most active units on the front: trial {top.number} "
                     f"({top.user_attrs['active_units']} units, mse "
                     f"{_fmt(top.user_attrs.get('mse'))}, rate {_fmt(top.user_attrs.get('rate'))}"
                     f" nats) with {chosen}.")
    return "\n".join(lines)


def status(storage_url: str | None, study_name: str | None) -> str:
    url = resolve_storage_url(storage_url)
    storage = open_storage(url, heartbeat_interval=None, must_exist=True)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage,
                                                                  include_best_trial=False)]
    if study_name is None:
        if len(names) != 1:
            raise UsageError(f"{len(names)} studies in {url} ({', '.join(names) or 'none'}); "
                             "name one with --study")
        study_name = names[0]
    if study_name not in names:
        raise UsageError(f"no study {study_name!r} in {url}")
    study = optuna.load_study(study_name=study_name, storage=storage)
    knobs = list(study_settings.load(study).space.params)
    counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    out = [f"study {study_name!r} ({url}): "
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
    text = answer(study, best, knobs)
    if text:
        out.append("\n" + text)
    return "\n".join(out)
