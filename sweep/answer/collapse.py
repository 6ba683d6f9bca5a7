"""The collapse table: per searched param and value (a numeric range in BINS bins), how many
of the trials that reached an epoch collapsed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial

from sweep.answer import recommend as rec_rule

BINS = 3  # bins of a searched numeric range in the collapse table


def collapse_table(trials: Sequence[FrozenTrial]) -> list[tuple[str, str, int, int]]:
    """(param, value or range, collapsed trials, trials) for every searched param and value,
    over the trials that reached an epoch (a conditional param: those that had it)."""
    ran = [t for t in trials if rec_rule.reached_an_epoch(t)]
    dists: dict[str, Any] = {}
    for t in ran:
        for name, dist in t.distributions.items():
            dists.setdefault(name, dist)
    rows = []
    for name, dist in dists.items():
        for label, holds in _bins(dist):
            having = [t for t in ran if name in t.params and holds(t.params[name])]
            rows.append((name, label, sum(rec_rule.collapsed(t) for t in having), len(having)))
    return rows


def _bins(dist: Any) -> list[tuple[str, Callable[[Any], bool]]]:
    if isinstance(dist, CategoricalDistribution):
        return [(str(c), _equals(c)) for c in dist.choices]
    assert isinstance(dist, (FloatDistribution, IntDistribution))
    lo, hi = float(dist.low), float(dist.high)
    if dist.log:
        edges = [lo * (hi / lo) ** (i / BINS) for i in range(BINS + 1)]
    else:
        edges = [lo + (hi - lo) * i / BINS for i in range(BINS + 1)]
    out: list[tuple[str, Callable[[Any], bool]]] = []
    for i in range(BINS):
        a, b, last = edges[i], edges[i + 1], i == BINS - 1
        out.append((f"[{a:.3g}, {b:.3g}{']' if last else ')'}", _within(a, b, last)))
    return out


def _equals(choice: Any) -> Callable[[Any], bool]:
    return lambda v: bool(v == choice)


def _within(a: float, b: float, closed: bool) -> Callable[[Any], bool]:
    return lambda v: bool(a <= v < b or (closed and v == b))
