"""The study's answer as data, as a paragraph, and as optuna-dashboard notes.

``summary`` is what ``status --format json`` prints (keys named after what a user asks):

- ``yardstick``: ``{"key", "unit"}``, the metric the answer is read in
  (``sweep.answer.yardstick``): ``bits_per_dim`` ("bits/dim") for 8-bit data,
  ``nats_per_dim`` ("nats/dim") for continuous data; KEY below stands for it;
- ``ranked_by``: ``{"key", "direction"}``, the metric the recommendation ranks by
  (``sweep.answer.recommend.ranked_by``): KEY when the objectives name the yardstick, else
  the first objective, whose {"mean", "sd", "values"} the pick and the reference then hold too;
- ``recommended``: the configuration ``sweep.answer.recommend.recommend_group`` picks: its first
  ``trial``, every run (``runs``: trial numbers), the ``seeds``, its complete ``config``, and
  KEY ({"mean", "sd", "values"} over the seeds; sd is null with one seed);
- ``best_reference``: the same for the best reference fix, with its ``label``;
- ``gap``: reference minus pick in the yardstick's unit ({"mean", "sd", "seeds"}: paired
  over the seeds both ran, so positive means the pick is better);
- ``margin``: the same comparison as the answer states it (``sweep.answer.margin``):
  {"pick_minus_reference", "se", "seeds"}, the mean of the paired differences ± their
  standard error (sd/sqrt(n)), null when the pick is the reference or they share no seed;
- ``baseline``: the seed configuration's ``trial``, ``fate``, KEY, ``active_units``;
- ``confirmation``: the study's confirmation ``runs`` (``sweep.runner.confirm``) and, while
  it has none, ``why_none``: why the answer rests on one seed;
- ``test``: the ``--test-data`` spec and, inside each of the above, ``test_``KEY
  when ``report --test-data`` has scored them (kept in the study's user attrs, TEST_KEY).

``paragraph`` says it in words; ``save_notes`` writes it as the study's note and a note on
the recommended trial, where optuna-dashboard shows them; ``note_collapse`` marks a trial
that collapsed in its own note.
"""

from __future__ import annotations

import statistics
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from sweep import optuna_private
from sweep.answer import margin as margins
from sweep.answer import recommend as rec_rule
from sweep.answer import yardstick
from sweep.storage import settings as study_settings

TEST_KEY = "vae_sweep_test"  # study user attr: {"data": spec, "scores": {trial: metrics}}


def _stats(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(values) if values else None,
            "sd": statistics.stdev(values) if len(values) > 1 else None, "values": values}


def _group(group: rec_rule.Group | None, scores: dict[str, Any], key: str
           ) -> dict[str, Any] | None:
    if group is None:
        return None
    out: dict[str, Any] = {
        "trial": group.origin.number, "runs": [t.number for t in group.runs],
        "seeds": group.seeds, "config": rec_rule.trial_config(group.origin).to_dict(),
        key: _stats(group.values(key)),
        "active_units": group.mean("active_units")}
    if group.by != rec_rule.YARDSTICK:
        out[group.by] = _stats(group.values(group.by))
    tested = [scores[str(t.number)][key] for t in group.runs if str(t.number) in scores]
    if tested:
        out[f"test_{key}"] = _stats(tested)
    return out


def summary(study: optuna.Study) -> dict[str, Any]:
    """The answer as data (see the module docstring)."""
    trials = study.get_trials(deepcopy=False)
    test = study.user_attrs.get(TEST_KEY) or {}
    scores = test.get("scores", {})
    by = rec_rule.of_study(study)
    pick, ref = rec_rule.recommend_group(trials, by), rec_rule.reference_group(trials, by)
    key = yardstick.key(trials, study.metric_names or ())
    tested = f"test_{key}"
    out: dict[str, Any] = {"study": study.study_name,
                           "yardstick": {"key": key, "unit": yardstick.unit(key)},
                           "ranked_by": {"key": key if by == rec_rule.YARDSTICK else by,
                                         "direction": "maximize" if rec_rule.maximized(by)
                                         else "minimize"},
                           "recommended": _group(pick, scores, key),
                           "best_reference": _group(ref, scores, key), "gap": None,
                           "margin": None,
                           "baseline": None, "test": test.get("data")}
    if ref is not None and out["best_reference"] is not None:
        out["best_reference"]["label"] = ref.origin.user_attrs["reference"]
    if pick is not None and ref is not None:
        mean, sd, n = rec_rule.gap(ref, pick, key)
        out["gap"] = {"mean": mean, "sd": sd, "seeds": n}
        if ref.origin.number != pick.origin.number:
            out["margin"] = margins.margin(ref, pick, key)
        both = [g for g in (out["recommended"], out["best_reference"]) if tested in g]
        if len(both) == 2:
            out["gap"]["test_mean"] = both[1][tested]["mean"] - both[0][tested]["mean"]
    out["confirmation"] = _confirmation(study, trials)
    base = rec_rule.baseline(trials)
    if base is not None:
        out["baseline"] = {"trial": base.number, "fate": rec_rule.fate(base),
                           key: base.user_attrs.get(key),
                           "active_units": base.user_attrs.get("active_units")}
        if str(base.number) in scores:
            out["baseline"][tested] = scores[str(base.number)][key]
    return out


def _confirmation(study: optuna.Study, trials: list[FrozenTrial]) -> dict[str, Any]:
    """The study's confirmation runs (``runs``) and, while it has none, why (``why_none``)."""
    runs = sum("confirm_of" in t.user_attrs for t in trials)
    why = None
    if not runs:
        settings = study_settings.stored(study) or {}
        labelled = sum(rec_rule.labelled(t) for t in trials)
        if not settings.get("space", {}).get("confirm"):
            why = "its configurations are not re-run over seeds (confirm = 0)"
        elif not rec_rule.searched(trials):
            why = (f"re-runs over seeds confirm the search's best, and the {len(trials)} "
                   f"trials of this study are the seed and the fixes (a study of "
                   f"{labelled + 1} trials or more runs them)")
        else:
            why = "the re-runs over seeds come once the budget is spent"
    return {"runs": runs, "why_none": why}


def _pm(stats: dict[str, Any] | None, unit: str) -> str:
    if not stats or stats.get("mean") is None:
        return "-"
    sd = stats.get("sd")
    return f"{stats['mean']:.4f}" + (f" ± {sd:.4f}" if sd is not None else "") + f" {unit}"


def lines(data: dict[str, Any]) -> list[str]:
    """The answer in a few sentences, one a line (plain text: status, notes, the report)."""
    out = []
    key, unit = data["yardstick"]["key"], data["yardstick"]["unit"]
    tested = f"test_{key}"
    base = data["baseline"]
    if base is not None:
        out.append(f"The seed configuration (trial {base['trial']}): {base['fate']}, "
                   f"{_fmt(base[key])} {unit}, {base['active_units']} active units.")
    pick, ref, gap = data["recommended"], data["best_reference"], data["gap"]
    if pick is None:
        out.append("Recommended: none yet (no complete trial kept an active unit).")
        return out
    n = len(pick["seeds"])
    by, ranked = data["ranked_by"]["key"], ""
    if by != key:
        ranked = f", by the {rec_rule.rule_words(by, unit)}: {by} {_pm(pick[by], '').strip()},"
    out.append(f"Recommended: trial {pick['trial']} (runs {_list(pick['runs'])}, seeds "
               f"{_list(pick['seeds'])}){ranked or ':'} {_pm(pick[key], unit)} on validation "
               f"over {n} seed(s)" + (f", {_pm(pick[tested], unit)} on {data['test']}"
                                      if tested in pick else "") + ".")
    reason = rec_rule.why_ranked(rec_rule.YARDSTICK if by == key else by, unit)
    if reason:
        out.append(reason)
    why = (data.get("confirmation") or {}).get("why_none")
    out.append(f"The answer rests on {n} seed{'s' if n != 1 else ''}"
               + (f": {why}." if n == 1 and why else "."))
    if ref is not None:
        out.append(f"Best reference: {ref['label']}, trial {ref['trial']} (seeds "
                   f"{_list(ref['seeds'])}): {_pm(ref[key], unit)}"
                   + (f", {_pm(ref[tested], unit)} on {data['test']}"
                      if tested in ref else "") + ".")
    if ref is not None and ref["trial"] == pick["trial"]:
        out.append("The pick is the best reference itself: the search found nothing better.")
    elif gap is not None:
        sd = f" ± {gap['sd']:.4f} (SD)" if gap["sd"] is not None else ""
        what = "below" if gap["mean"] > 0 else "above"
        out.append(f"Gap (reference minus pick): {gap['mean']:.4f}{sd} {unit} over "
                   f"{gap['seeds']} paired seed(s): the pick is {abs(gap['mean']):.4f} "
                   f"{unit} {what} the best reference"
                   + (f"; on {data['test']}: {gap['test_mean']:.4f}" if "test_mean" in gap
                      else "") + ".")
    if data.get("margin"):
        out.append(f"Margin: the pick {margins.text(data['margin'], unit)}.")
    return out


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _list(values: list[Any]) -> str:
    return ", ".join(str(v) for v in values)


def paragraph(data: dict[str, Any]) -> str:
    """The study note: the answer and how to take it, in Markdown."""
    text = "## The answer\n\n" + "\n\n".join(lines(data))
    if data["recommended"] is not None:
        text += (f"\n\nTake it: `python -m sweep export --study {data['study']} --trial "
                 f"{data['recommended']['trial']} --out DIR`")
    return text


def collapse_note(reason: str, metrics: dict[str, Any], warmup_end: int) -> str:
    """The note of a trial that ended with no active unit: ``reason`` (its
    ``collapse_reason``, "posterior collapse: 0 active units ...") as its first line;
    ``warmup_end``: the step its KL warm-up ends (0: a constant KL weight, no warm-up)."""
    if warmup_end <= 0:
        schedule = "With a constant KL weight (no warm-up)"
    elif warmup_end <= metrics.get("steps", warmup_end):
        schedule = f"After the KL warm-up (it ended at step {warmup_end})"
    else:  # the collapse stop waits for the warm-up: this run ended before it
        schedule = f"At the end of training, during the KL warm-up (it ends at step {warmup_end})"
    return (f"## {reason}\n\n{schedule}: rate {metrics['rate']:.3g} nats per image, mse "
            f"{metrics['mse']:.4g}. The decoder ignores the code, so every reconstruction is "
            "about the same image (at_a_glance.png shows them beside the inputs). Infeasible: "
            "it stays in the plots with its values, and is never the best trial nor the "
            "recommendation.")


def note_collapse(trial: optuna.Trial, reason: str, metrics: dict[str, Any],
                  warmup_end: int) -> None:
    """Write ``collapse_note`` as the trial's note (what optuna-dashboard shows first on the
    trial's page)."""
    from optuna_dashboard import save_note

    save_note(trial, collapse_note(reason, metrics, warmup_end))


def save_notes(study: optuna.Study, data: dict[str, Any] | None = None) -> None:
    """The answer as the study's note, and a note on the recommended trial (both replace
    the previous ones: optuna-dashboard keeps one note per study and per trial)."""
    from optuna_dashboard import save_note

    data = summary(study) if data is None else data
    save_note(study, paragraph(data))
    pick = data["recommended"]
    if pick is not None:
        trial = next(t for t in study.get_trials(deepcopy=False) if t.number == pick["trial"])
        said = [line for line in lines(data)
                if line.startswith(("Recommended", "It ranks by", "The answer rests", "Gap",
                                     "Margin"))]
        save_note(optuna.Trial(study, optuna_private.trial_id(trial)),
                  "## Recommended\n\n" + "\n\n".join(said))
