"""Which trial a user should take, and the trials it is compared with.

The rule (``recommend``): among the COMPLETE trials that did not collapse (at least one
active unit) and have a finite yardstick, the one with the lowest ``neg_elbo`` (nats per
image; the same order as ``bits_per_dim``). neg_elbo = rate + distortion at beta = 1, so it
is the point of the rate-distortion front where one nat of rate buys one nat of
reconstruction: the front's knee in the units the literature reports. Ties go to more
active units, then to the earlier trial. PRUNED trials are out: they stopped before their
budget, so their numbers are not the ones their config gives.

The answer always comes with its complete config (every ``Config`` field, fixed and
conditional ones included), read from the trial's ``config`` attr, so running it gives the
same trial.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from models.config import Config

YARDSTICK = "neg_elbo"


def is_candidate(t: FrozenTrial) -> bool:
    """COMPLETE, kept at least one active unit, and has a finite yardstick."""
    value = t.user_attrs.get(YARDSTICK)
    return (t.state == TrialState.COMPLETE and not collapsed(t)
            and isinstance(value, (int, float)) and math.isfinite(value))


def collapsed(t: FrozenTrial) -> bool:
    """No active unit at the trial's last validation (or a ``collapsed`` attr saying so)."""
    if "collapsed" in t.user_attrs:
        return bool(t.user_attrs["collapsed"])
    return t.user_attrs.get("active_units") == 0


def recommend(trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The trial to take (see the module docstring), or None when no trial qualifies."""
    candidates = [t for t in trials if is_candidate(t)]
    if not candidates:
        return None
    return min(candidates, key=lambda t: (t.user_attrs[YARDSTICK],
                                          -t.user_attrs.get("active_units", 0), t.number))


def reached_an_epoch(t: FrozenTrial) -> bool:
    return bool(t.user_attrs.get("history"))


def baseline(trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The seed configuration's trial: the last one marked ``baseline`` that reached an
    epoch (a re-run after a crash replaces its failed first try), else any marked one."""
    marked = [t for t in trials if t.user_attrs.get("baseline")]
    ran = [t for t in marked if reached_an_epoch(t)]
    pool = ran or marked
    return pool[-1] if pool else None


def references(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """One trial per ``reference`` label (the last that reached an epoch), in study order."""
    by_label: dict[str, FrozenTrial] = {}
    for t in trials:
        label = t.user_attrs.get("reference")
        if label and (label not in by_label or reached_an_epoch(t)):
            by_label[label] = t
    return sorted(by_label.values(), key=lambda t: t.number)


def trial_config(t: FrozenTrial) -> Config:
    """The trial's complete config, from its ``config`` attr."""
    return Config.from_dict(dict(t.user_attrs["config"]))


def changed_fields(cfg: Config) -> dict[str, Any]:
    """The fields of ``cfg`` that differ from the seed configuration ``Config()``."""
    seed = Config().to_dict()
    return {k: v for k, v in cfg.to_dict().items() if seed[k] != v}


def fate(t: FrozenTrial) -> str:
    """How the trial ended, in a few words."""
    if t.state == TrialState.PRUNED:
        reason = t.user_attrs.get("pruned_reason") or "pruned"
        return reason.split(":", 1)[0] if "collapse" in reason else reason
    if t.state == TrialState.COMPLETE:
        au = t.user_attrs.get("active_units")
        return "collapsed (0 active units)" if collapsed(t) else f"kept {au} active units"
    return t.state.name.lower()
