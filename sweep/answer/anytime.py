"""The anytime curve of a study: the best yardstick (bits/dim, or nats/dim for continuous data,
``sweep.answer.yardstick``) found so far against wall-clock time,
beside each reference fix's level, and when the search first beat the best reference.

Time is seconds from the study's first trial start to each trial's end (``datetime_start``
and ``datetime_complete``, as the storage recorded them). The curve steps down at every
trial that kept an active unit and beat everything before it; confirmation runs are left
out (they re-measure configurations already found, with other seeds). The search "beat the
best reference" at the end of the first trial that was neither the baseline, a reference
nor a confirmation run, kept an active unit, and scored below the best reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from optuna.trial import FrozenTrial

from sweep.answer import recommend as rec_rule
from sweep.answer import yardstick
from sweep.answer.figures import DPI, agg_figure
from sweep.storage import trial_record


@dataclass
class Curve:
    steps: list[tuple[float, float, int]] = field(default_factory=list)  # (s, best, trial)
    references: dict[str, float] = field(default_factory=dict)  # label -> yardstick
    best_reference: float | None = None
    beaten_at: tuple[float, float, int] | None = None  # (s, yardstick, trial)
    end_s: float = 0.0  # the last trial's end
    unit: str = yardstick.unit(yardstick.BITS)  # the yardstick's


def curve(trials: Sequence[FrozenTrial]) -> Curve:
    """The study's anytime curve (see the module docstring)."""
    started = [t.datetime_start for t in trials if t.datetime_start is not None]
    key = yardstick.key(trials)
    out = Curve(unit=yardstick.unit(key))
    if not started:
        return out
    t0 = min(started)
    ends = {t.number: t.datetime_complete for t in trials
            if t.datetime_complete is not None and "confirm_of" not in t.user_attrs}
    done = sorted((t for t in trials if t.number in ends), key=lambda t: ends[t.number])
    for t in rec_rule.references(trials):
        value = t.user_attrs.get(key)
        if isinstance(value, (int, float)):
            out.references[trial_record.short_label(t.user_attrs["reference"])] = float(value)
            if rec_rule.is_candidate(t) and (out.best_reference is None
                                             or value < out.best_reference):
                out.best_reference = float(value)
    best = None
    for t in done:
        at = (ends[t.number] - t0).total_seconds()
        out.end_s = max(out.end_s, at)
        if not rec_rule.is_candidate(t) or not isinstance(t.user_attrs.get(key), (int, float)):
            continue
        value = float(t.user_attrs[key])
        searched = not (t.user_attrs.get("baseline") or t.user_attrs.get("reference"))
        if (searched and out.beaten_at is None and out.best_reference is not None
                and value < out.best_reference):
            out.beaten_at = (at, value, t.number)
        if best is None or value < best:
            best = value
            out.steps.append((at, value, t.number))
    return out


def sentence(c: Curve) -> str:
    """What the curve says, in one sentence."""
    if not c.steps:
        return "No trial has kept an active unit yet: there is no curve."
    at, value, number = c.steps[-1]
    text = (f"Best so far: {value:.4f} {c.unit} (trial {number}), reached after {at / 60:.1f} "
            f"min of {c.end_s / 60:.1f}.")
    if c.best_reference is None:
        return text + " No reference kept an active unit to compare with."
    if c.beaten_at is None:
        return text + (f" The search has not beaten the best reference "
                       f"({c.best_reference:.4f} {c.unit}) yet.")
    s, v, n = c.beaten_at
    return text + (f" The search first beat the best reference ({c.best_reference:.4f} "
                   f"{c.unit}) after {s / 60:.1f} min: trial {n}, {v:.4f} {c.unit}.")


def chart(c: Curve, path: Path) -> None:
    """The curve as a step line, each reference as a dashed level, the first win marked."""
    fig = agg_figure(figsize=(8, 4.2), dpi=DPI)
    ax = fig.subplots()
    fig.subplots_adjust(left=0.1, right=0.72, bottom=0.13, top=0.92)
    if c.steps:
        xs = [s / 60 for s, _, _ in c.steps] + [c.end_s / 60]
        ys = [v for _, v, _ in c.steps] + [c.steps[-1][1]]
        ax.step(xs, ys, where="post", color="black", lw=2, label="best so far")
    for i, (label, value) in enumerate(sorted(c.references.items(), key=lambda kv: kv[1])):
        ax.axhline(value, ls="--", lw=1, color=f"C{i}", label=f"{label} {value:.3f}")
    if c.beaten_at is not None:
        s, v, n = c.beaten_at
        ax.axvline(s / 60, color="red", lw=1, ls=":")
        ax.plot([s / 60], [v], "o", color="red", label=f"beat the best reference (#{n})")
    ax.set_xlabel("wall-clock time since the study started (min)")
    ax.set_ylabel(f"{c.unit} (validation, lower is better)")
    ax.set_title("best so far against time")
    if ax.get_legend_handles_labels()[0]:  # an empty study has nothing to name
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.savefig(path)
