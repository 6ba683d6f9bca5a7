"""The Pareto pruner's rule, as pure functions: prune a multi-objective trial whose metrics
at an epoch are dominated by enough earlier trials' metrics at that same epoch.

Optuna's pruners need one reported value per step and refuse multi-objective studies
(optuna issue 3450). This rule needs no report: at the end of epoch ``e`` (0-based, the
``epoch`` of the per-epoch history) a trial's vector of the study's objectives is compared
with the epoch-``e`` vectors of the earlier finished trials, and the trial is pruned when

- ``e`` is not its final epoch (a trial that has trained to the end is always kept),
- it has trained at least ``min_epochs`` epochs (``e + 1 >= min_epochs``),
- at least ``min_trials`` earlier trials have an epoch-``e`` vector, and
- at least ``fraction`` of those vectors Pareto-dominate its own.

With one objective "dominated" is "strictly worse", so the rule is a percentile pruner.
Nothing here knows Lightning or Optuna: sweep.runner.callbacks feeds it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Vector = tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class ParetoRule:
    """The rule's parameters (the sweep TOML's ``[pruner]`` table; checked by sweep.space)."""

    min_trials: int = 5  # earlier trials with a vector at the epoch; as MedianPruner's startup
    min_epochs: int = 2  # warm-up: the first epoch's metrics mostly reflect the KL schedule
    fraction: float = 0.5  # dominated by at least half of them: worse than a typical trial


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """Whether ``a`` Pareto-dominates ``b``: no worse in every objective and strictly better
    in at least one, each objective read in its direction ("minimize" or "maximize").
    Equal vectors do not dominate each other; a NaN makes both comparisons false."""
    better = False
    for x, y, direction in zip(a, b, directions, strict=True):
        if direction == "maximize":
            x, y = -x, -y
        if not x <= y:
            return False
        better = better or x < y
    return better


def count_dominating(current: Sequence[float], references: Iterable[Sequence[float]],
                     directions: Sequence[str]) -> int:
    """How many of ``references`` dominate ``current``."""
    return sum(dominates(ref, current, directions) for ref in references)


def epoch_vector(history: Any, objectives: Sequence[str], epoch: int) -> Vector | None:
    """The objectives at ``epoch`` in one trial's ``history`` (its per-epoch metric dicts),
    or None when that trial has no finite value for every objective at that epoch.
    The first entry of the epoch counts (a run cut by max_steps may add a later one)."""
    if not isinstance(history, list):
        return None
    for entry in history:
        if isinstance(entry, Mapping) and entry.get("epoch") == epoch:
            try:
                vector = tuple(float(entry[name]) for name in objectives)
            except (KeyError, TypeError, ValueError):
                return None
            return vector if all(math.isfinite(v) for v in vector) else None
    return None


def reference_vectors(histories: Iterable[Any], objectives: Sequence[str],
                      epoch: int) -> list[Vector]:
    """The epoch-``epoch`` vectors of the trials whose histories are given."""
    vectors = (epoch_vector(h, objectives, epoch) for h in histories)
    return [v for v in vectors if v is not None]


def may_prune(epoch: int, final: bool, rule: ParetoRule) -> bool:
    """Whether the rule can prune at all at the end of 0-based ``epoch``: past the warm-up
    and not the trial's final epoch (callers skip reading earlier trials otherwise)."""
    return not final and epoch + 1 >= rule.min_epochs


def decide(current: Sequence[float], references: Sequence[Sequence[float]],
           directions: Sequence[str], objectives: Sequence[str], epoch: int, final: bool,
           rule: ParetoRule) -> str | None:
    """The reason to prune the trial at the end of ``epoch``, or None to let it train on.

    ``current``: its objectives at ``epoch``; ``references``: the earlier trials' vectors at
    the same epoch; ``final``: whether ``epoch`` is its last one (then never pruned).
    """
    if not may_prune(epoch, final, rule) or len(references) < rule.min_trials:
        return None
    n = count_dominating(current, references, directions)
    # n / len, not n >= fraction * len: 3 / 10 >= 0.3 holds where 3 >= 0.3 * 10 does not.
    if n == 0 or n / len(references) < rule.fraction:
        return None
    return (f"dominated by {n} of {len(references)} earlier trials at epoch {epoch} "
            f"({', '.join(objectives)})")
