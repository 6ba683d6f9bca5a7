"""time_to_answer's score of each side's answer, not of its luckiest trial.

A trial's neg_elbo on its own seed is one draw: the best of N trials is the luckiest of N,
and re-trained on other seeds it regresses toward its config's mean (a 24-trial script's
best scored -331 nats on its seed, +7 and +192 on the next two). So each side's pick (the
script's best trial; the sweep's recommendation, ``sweep.answer.recommend``) is re-trained
on ``R`` seeds no trial of any study of the comparison used, by one trainer for both
(``models.train.fit``, on the project's fixed train/validation split: only the configs
differ), and the means of those runs are compared. A side's time is when its pick's config
was first proposed (the start of its first trial with that config, whatever its seed,
since the study's start): the sweep's pick also ran its confirmation re-runs after that, but
the config was already on the table.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial

from models.config import Config

# A trial's config (None: a trial that never got one, e.g. failed before training).
ConfigOf = Callable[[FrozenTrial], Config | None]


def unused_seeds(used: Iterable[int], n: int) -> list[int]:
    """The ``n`` smallest seeds >= 0 not in ``used``."""
    taken, s = set(used), 0
    out: list[int] = []
    while len(out) < n:
        if s not in taken:
            out.append(s)
        s += 1
    return out


def _key(cfg: Config | None) -> tuple[tuple[str, Any], ...] | None:
    """The config without its seed: two trials with the same key are the same proposal."""
    if cfg is None:
        return None
    return tuple(sorted((k, repr(v)) for k, v in cfg.to_dict().items() if k != "seed"))


def first_proposed(pick: FrozenTrial, trials: Sequence[FrozenTrial], config_of: ConfigOf,
                   started: float) -> float:
    """Seconds from ``started`` (the study's start, a Unix time) to the start of the first
    trial whose config, seed aside, is ``pick``'s."""
    want = _key(config_of(pick))
    starts = [t.datetime_start.timestamp() for t in trials
              if t.datetime_start is not None and _key(config_of(t)) == want]
    return round(min(starts) - started, 2)


@dataclass(frozen=True)
class Side:
    """One side of the comparison: its pick, the trials around it, how to read a config."""

    pick: FrozenTrial | None  # None: no trial kept an active unit
    trials: Sequence[FrozenTrial]
    config_of: ConfigOf
    started: float


# Re-trains a config; returns its metrics (``models.train.fit``'s).
Train = Callable[[Config], dict[str, Any]]


def score(side: Side, seeds: Sequence[int], train: Train) -> dict[str, Any] | None:
    """The side's pick re-trained on ``seeds``: its trial, params and config, its trial's
    own value and its re-training on its own seed by ``train`` (the script's trials ran its
    own trainer: that pair tells the trainer's part from the seed's), the values per seed
    (neg_elbo, nats per image; a collapsed run's too: the answer as it behaves), their
    mean and the time until the pick was first proposed."""
    if side.pick is None:
        return None
    cfg = side.config_of(side.pick)
    assert cfg is not None, "a pick is a trial that trained"
    runs = [train(cfg.replace(seed=s)) for s in seeds]
    values = [float(m["neg_elbo"]) for m in runs]
    return {"trial": side.pick.number, "params": dict(side.pick.params),
            "config": cfg.to_dict(), "own_seed_value": side.pick.user_attrs.get(
                "neg_elbo", side.pick.values[0] if side.pick.values else None),
            "own_seed_refit": float(train(cfg)["neg_elbo"]), "values": values,
            "active_units": [m.get("active_units") for m in runs],
            "mean": statistics.fmean(values),
            "s": first_proposed(side.pick, side.trials, side.config_of, side.started)}


def compare(sides: dict[str, Side], used: Iterable[int], r: int, train: Train
            ) -> dict[str, Any]:
    """``time_to_answer.fresh_seeds``: each side's ``score`` on the same ``r`` unused seeds,
    and the sweep's (``project``) mean minus the script's (``baseline``; negative: the
    sweep's answer is better) and time over the script's."""
    seeds = unused_seeds(used, r)
    out: dict[str, Any] = {"seeds": seeds}
    out.update({name: score(side, seeds, train) for name, side in sides.items()})
    base, mine = out.get("baseline"), out.get("project")
    if base is not None and mine is not None:
        out["project_minus_baseline"] = mine["mean"] - base["mean"]
        out["ratio"] = round(mine["s"] / base["s"], 3) if base["s"] > 0 else None
    return out
