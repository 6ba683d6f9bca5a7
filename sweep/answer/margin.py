"""The answer's margin over the best reference fix, with its uncertainty.

Paired over seeds: the pick and the best reference each ran the same seeds (the origin's,
then the confirmation re-runs', ``sweep.runner.confirm``), so the differences pick minus
reference seed by seed cancel each seed's luck (its initialisation, its batch order). The
margin is their mean, ± its standard error (the differences' sample SD over sqrt(n)): a
claim like "beats the best fix by 0.18 ± 0.02 bits/dim (paired over 3 seeds)". With one
shared seed there is no spread to estimate, and the text says "1 seed" instead of a ±.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from sweep.answer.recommend import Group


def margin(reference: Group, pick: Group, key: str) -> dict[str, Any] | None:
    """``{"pick_minus_reference", "se", "seeds"}`` over the seeds both ran (negative: the
    pick is better; se None with one seed), or None when they share no seed."""
    ref = _by_seed(reference, key)
    mine = _by_seed(pick, key)
    seeds = sorted(set(ref) & set(mine))
    if not seeds:
        return None
    diffs = [mine[s] - ref[s] for s in seeds]
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else None
    return {"pick_minus_reference": statistics.fmean(diffs), "se": se, "seeds": seeds}


def _by_seed(group: Group, key: str) -> dict[int, float]:
    return {s: float(t.user_attrs[key]) for s, t in zip(group.seeds, group.runs, strict=True)
            if isinstance(t.user_attrs.get(key), (int, float))}


def text(m: dict[str, Any], unit: str) -> str:
    """"beats the best fix by 0.183 ± 0.017 bits/dim (paired over 3 seeds; ± one standard
    error, sd/sqrt(n))", or "trails ..."; "(1 seed)" with no ±."""
    diff, se, n = m["pick_minus_reference"], m["se"], len(m["seeds"])
    verb = "beats" if diff < 0 else "trails"
    if se is None:
        return f"{verb} the best fix by {abs(diff):.4f} {unit} (1 seed)"
    # The SE to two significant digits, the margin to the same place.
    places = max(0, 1 - math.floor(math.log10(se))) if se > 0 else 4
    return (f"{verb} the best fix by {abs(diff):.{places}f} ± {se:.{places}f} {unit} "
            f"(paired over {n} seeds; ± one standard error, sd/sqrt(n))")
