"""Which trial a user should take, and the trials it is compared with.

The rule (``recommend_group``): a configuration is a trial that is not a confirmation run
together with its confirmation runs (``confirm_of``: the same config with other seeds, see
``sweep.runner.confirm``). Among the configurations whose every finished run is COMPLETE, kept at
least one active unit and has a finite yardstick, take the one measured over the most
seeds, then with the best mean of the metric the answer ranks by (``ranked_by``): the
yardstick when the study's objectives name it, else their first objective, in its own
direction (a study on ``["mse", "active_units"]`` is answered by the lowest ``mse``, as it
asked). The yardstick is the lowest mean ``neg_elbo`` (nats per image; the same order as
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
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from models.config import Config
from sweep.answer.yardstick import BITS, NATS
from sweep.space import METRICS
from sweep.storage import trial_record

if TYPE_CHECKING:
    import optuna

YARDSTICK = "neg_elbo"
# The yardstick in each of its units: one order, so an objective among them ranks by it.
YARDSTICKS = (YARDSTICK, BITS, NATS)


def ranked_by(objectives: Sequence[str]) -> str:
    """The metric the answer ranks by: ``YARDSTICK`` when ``objectives`` name the yardstick
    (in any unit) or are none, else the first objective."""
    if not objectives or any(o in YARDSTICKS for o in objectives):
        return YARDSTICK
    return objectives[0]


def of_study(study: optuna.Study) -> str:
    """``ranked_by`` of the study's objectives (its metric names)."""
    return ranked_by(study.metric_names or ())


def maximized(by: str) -> bool:
    """Whether a higher ``by`` is better (``active_units``, ``mutual_info``)."""
    return METRICS.get(by) == "maximize"


def _finite(t: FrozenTrial, key: str) -> bool:
    value = t.user_attrs.get(key)
    return isinstance(value, (int, float)) and math.isfinite(value)


def is_candidate(t: FrozenTrial, by: str = YARDSTICK) -> bool:
    """COMPLETE, kept at least one active unit, and has a finite yardstick and ``by``."""
    return (t.state == TrialState.COMPLETE and not collapsed(t)
            and _finite(t, YARDSTICK) and _finite(t, by))


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
    by: str = YARDSTICK  # the metric it is ranked by (``ranked_by``)

    @property
    def sound(self) -> bool:
        return all(is_candidate(t, self.by) for t in self.runs)

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
        mean = self.mean(self.by)
        score = math.inf if mean is None else -mean if maximized(self.by) else mean
        return (-len(self.runs), score, -(self.mean("active_units") or 0), self.origin.number)


def groups(trials: Sequence[FrozenTrial], by: str = YARDSTICK) -> list[Group]:
    """Every configuration whose first trial is a candidate, with its COMPLETE
    confirmation runs, in study order, ranked by ``by``."""
    runs: dict[int, list[FrozenTrial]] = {}
    for t in trials:
        of = t.user_attrs.get("confirm_of")
        if of is not None and t.state == TrialState.COMPLETE:
            runs.setdefault(int(of), []).append(t)
    return [Group(t, (t, *runs.get(t.number, [])), by) for t in trials
            if is_candidate(t, by) and "confirm_of" not in t.user_attrs]


def recommend_group(trials: Sequence[FrozenTrial], by: str = YARDSTICK) -> Group | None:
    """The configuration to take (see the module docstring), ranked by ``by``
    (``ranked_by``), or None when none qualifies."""
    sound = [g for g in groups(trials, by) if g.sound]
    return min(sound, key=Group.rank) if sound else None


def reference_group(trials: Sequence[FrozenTrial], by: str = YARDSTICK) -> Group | None:
    """The best reference fix, over its seeds: the same order, but a seed that collapsed
    stays in (with its worse yardstick): the comparison is with the fix as it behaves."""
    refs = [g for g in groups(trials, by) if g.origin.user_attrs.get("reference")]
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


def recommend(trials: Sequence[FrozenTrial], by: str = YARDSTICK) -> FrozenTrial | None:
    """The trial to take: the first trial of ``recommend_group``'s configuration."""
    group = recommend_group(trials, by)
    return None if group is None else group.origin


def rule_words(by: str, unit: str) -> str:
    """What the answer is the best of: "lowest bits/dim" (``unit``: the yardstick's) or,
    ranked by an objective, "lowest mse", "highest active_units"."""
    if by == YARDSTICK:
        return f"lowest {unit}"
    return f"{'highest' if maximized(by) else 'lowest'} {by}"


def why_ranked(by: str, unit: str) -> str | None:
    """Why the answer ranks by an objective rather than the yardstick (None when it ranks by
    the yardstick), in one sentence."""
    if by == YARDSTICK:
        return None
    return (f"It ranks by {by}, the study's first objective: {unit} (the yardstick) is not "
            f"among its objectives.")


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
