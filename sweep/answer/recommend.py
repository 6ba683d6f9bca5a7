"""Which trial a user should take, and the trials it is compared with.

The rule (``recommend_group``): a configuration is a trial that is not a confirmation run
together with its confirmation runs (``confirm_of``: the same config with other seeds, see
``sweep.runner.confirm``). Among the configurations whose every finished run is COMPLETE, kept at
least one active unit and has a finite yardstick, take the one measured over the most
seeds, then with the lowest mean ``neg_elbo`` (nats per image; the same order as
``bits_per_dim`` and ``nats_per_dim``, ``sweep.answer.yardstick``). neg_elbo = rate +
distortion at beta = 1, so it is the point of the rate-distortion front where one nat of
rate buys one nat of reconstruction: the front's knee in the units the literature reports.
Ties go to more active units, then to the earlier trial. PRUNED trials are out: they
stopped before their budget, so their numbers are not the ones their config gives. A
configuration with a collapsed seed is out: the fix is not reliable. ``recommend`` is the
first trial of that configuration.

The answer always comes with its complete config (every ``Config`` field, fixed and
conditional ones included), read from the trial's record (``sweep.storage.trial_record``),
so running it gives the same trial.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from models.config import Config
from sweep.answer.yardstick import BITS
from sweep.storage import trial_record

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


@dataclass(frozen=True)
class Group:
    """One configuration: its first trial and the COMPLETE runs of it with other seeds."""

    origin: FrozenTrial
    runs: tuple[FrozenTrial, ...]  # the origin first, then its confirmation runs

    @property
    def sound(self) -> bool:
        return all(is_candidate(t) for t in self.runs)

    @property
    def seeds(self) -> list[int]:
        return [int(t.user_attrs.get("seed", (trial_record.config(t) or {}).get("seed", 0)))
                for t in self.runs]

    def values(self, key: str = BITS) -> list[float]:
        return [float(t.user_attrs[key]) for t in self.runs
                if isinstance(t.user_attrs.get(key), (int, float))]

    def mean(self, key: str = BITS) -> float | None:
        values = self.values(key)
        return statistics.fmean(values) if values else None

    def sd(self, key: str = BITS) -> float | None:
        """The sample standard deviation over seeds (None with fewer than 2 runs)."""
        values = self.values(key)
        return statistics.stdev(values) if len(values) > 1 else None

    def rank(self) -> tuple[float, ...]:
        return (-len(self.runs), self.mean(YARDSTICK) or math.inf,
                -(self.mean("active_units") or 0), self.origin.number)


def groups(trials: Sequence[FrozenTrial]) -> list[Group]:
    """Every configuration whose first trial is a candidate, with its COMPLETE
    confirmation runs, in study order."""
    runs: dict[int, list[FrozenTrial]] = {}
    for t in trials:
        of = t.user_attrs.get("confirm_of")
        if of is not None and t.state == TrialState.COMPLETE:
            runs.setdefault(int(of), []).append(t)
    return [Group(t, (t, *runs.get(t.number, []))) for t in trials
            if is_candidate(t) and "confirm_of" not in t.user_attrs]


def recommend_group(trials: Sequence[FrozenTrial]) -> Group | None:
    """The configuration to take (see the module docstring), or None when none qualifies."""
    sound = [g for g in groups(trials) if g.sound]
    return min(sound, key=Group.rank) if sound else None


def reference_group(trials: Sequence[FrozenTrial]) -> Group | None:
    """The best reference fix, over its seeds: the same order, but a seed that collapsed
    stays in (with its worse yardstick): the comparison is with the fix as it behaves."""
    refs = [g for g in groups(trials) if g.origin.user_attrs.get("reference")]
    return min(refs, key=Group.rank) if refs else None


def gap(reference: Group, pick: Group, key: str = BITS) -> tuple[float, float | None, int]:
    """(mean, SD, seeds) of reference minus pick: over the seeds both ran, paired seed by
    seed (both ran the same seeds, so a seed's luck cancels); the difference of the means
    when they share no seed (SD None)."""
    ref = dict(zip(reference.seeds, [float(t.user_attrs[key]) for t in reference.runs],
                   strict=True))
    mine = dict(zip(pick.seeds, [float(t.user_attrs[key]) for t in pick.runs], strict=True))
    common = sorted(set(ref) & set(mine))
    if not common:
        return (reference.mean(key) or math.nan) - (pick.mean(key) or math.nan), None, 0
    diffs = [ref[s] - mine[s] for s in common]
    return (statistics.fmean(diffs), statistics.stdev(diffs) if len(diffs) > 1 else None,
            len(diffs))


def recommend(trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The trial to take: the first trial of ``recommend_group``'s configuration."""
    group = recommend_group(trials)
    return None if group is None else group.origin


def reached_an_epoch(t: FrozenTrial) -> bool:
    return bool(trial_record.history(t))


def baseline(trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The seed configuration's trial: the last one marked ``baseline`` that reached an
    epoch (a re-run after a crash replaces its failed first try), else any marked one."""
    marked = [t for t in trials if t.user_attrs.get("baseline")]
    ran = [t for t in marked if reached_an_epoch(t)]
    pool = ran or marked
    return pool[-1] if pool else None


# The user attrs that mark the trials the sampler did not propose.
LABELS = ("baseline", "reference", "confirm_of")


def labelled(t: FrozenTrial) -> bool:
    """The baseline, a reference or a confirmation run: a trial the sampler did not propose."""
    return any(k in t.user_attrs for k in LABELS)


def searched(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The finished (COMPLETE or PRUNED) trials the sampler proposed."""
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            and not labelled(t)]


def references(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """One trial per ``reference`` label (the last that reached an epoch), in study order."""
    by_label: dict[str, FrozenTrial] = {}
    for t in trials:
        label = t.user_attrs.get("reference")
        if label and (label not in by_label or reached_an_epoch(t)):
            by_label[label] = t
    return sorted(by_label.values(), key=lambda t: t.number)


def trial_config(t: FrozenTrial) -> Config:
    """The trial's complete config (``sweep.storage.trial_record``); KeyError if it never
    trained."""
    cfg = trial_record.config(t)
    if cfg is None:
        raise KeyError(f"trial {t.number} has no config: it never trained")
    return Config.from_dict(cfg)


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
        if collapsed(t):
            reason = t.user_attrs.get("collapse_reason") or "collapsed"
            return f"{reason.split(':', 1)[0]} (0 active units)"
        return f"kept {au} active units"
    return t.state.name.lower()
