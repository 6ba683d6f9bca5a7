"""Confirmation over seeds: once a study's search budget is spent, its best configurations
and its best reference are trained again with more seeds, so the answer is a mean over
seeds, not one lucky run.

``plan`` picks the ``confirm`` (the space's, default 3) best configurations by the
recommendation rule (first runs that kept an active unit, not the baseline), plus the best
reference fix when it is not among them, and gives each the seeds ``s + 1 ... s +
EXTRA_SEEDS`` (``s``: the config's own seed), so the pick and the reference are measured on
the same seeds and their gap is paired. ``enqueue`` queues those runs, labelled
``confirm_of = <first trial>`` and ``stage = "confirm"`` in their user attrs (with the
exact space to rebuild them in ``sweep.runner.stages.STAGE_KEY``), and raises the study's goal by
their number: they run on top of ``--n-trials``. A worker calls it, under the study lock,
when the budget is spent and no trial is running (``sweep.runner.loop``), once the sampler
has proposed at least one trial; a configuration
already confirmed is not run again, so a second call, or a second ``start`` that finds no
new top configuration, queues nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.answer import recommend as rec_rule
from sweep.optuna_private import FIXED_PARAMS_KEY
from sweep.runner.stages import STAGE_KEY
from sweep.space import EXTRA_SEEDS, parse_space
from sweep.storage import settings as study_settings


def _configs(trials: Sequence[FrozenTrial], by: str) -> list[FrozenTrial]:
    """First runs of distinct configurations, best first by their own run's ``by`` (the
    metric the answer ranks by, ``rec_rule.ranked_by``; one per config:
    a config the sampler proposed twice is confirmed once). Not by the mean over seeds: a
    confirmed configuration regresses toward its mean, and ranking by it would confirm the
    next unconfirmed one, and the next, without end."""
    seen: set[str] = set()
    out = []
    sign = -1 if rec_rule.maximized(by) else 1
    for group in sorted(rec_rule.groups(trials, by), key=lambda g: (
            sign * g.origin.user_attrs[by], g.origin.number)):
        t = group.origin
        key = repr(sorted((rec_rule.trial_config(t).to_dict()).items()))
        if t.user_attrs.get("baseline") or key in seen:
            continue
        seen.add(key)
        out.append(t)
    return out


def plan(trials: Sequence[FrozenTrial], top: int, by: str = rec_rule.YARDSTICK
         ) -> list[tuple[FrozenTrial, int]]:
    """(first run, seed) of every confirmation run still to queue: none before the sampler
    has proposed a trial (a budget spent on the baseline and the references has no win of
    the search to confirm; its answer is the best reference, measured once)."""
    if top <= 0 or not rec_rule.searched(trials):
        return []
    chosen = _configs(trials, by)[:top]
    ref = rec_rule.reference_group(trials, by)
    if ref is not None and all(t.number != ref.origin.number for t in chosen):
        chosen.append(ref.origin)
    queued = {(int(t.user_attrs["confirm_of"]), int(t.user_attrs.get("seed", -1)))
              for t in trials if "confirm_of" in t.user_attrs}
    out = []
    for origin in chosen:
        seed = rec_rule.trial_config(origin).seed
        out += [(origin, s) for s in range(seed + 1, seed + 1 + EXTRA_SEEDS)
                if (origin.number, s) not in queued]
    return out


def confirmation_trial(origin: FrozenTrial, seed: int, space: dict[str, Any]
                       ) -> FrozenTrial:
    """A WAITING trial that runs ``origin``'s config with ``seed``: the origin's stage space
    (``space``, as stored) with the seed fixed, and its params enqueued."""
    data = {**space, "fixed": {**space["fixed"], "seed": seed},
            "search": {k: v for k, v in space["search"].items() if k != "seed"}}
    params = {k: v for k, v in origin.params.items() if k != "seed"}
    return optuna.trial.create_trial(
        state=TrialState.WAITING,
        user_attrs={"stage": "confirm", "confirm_of": origin.number, "seed": seed},
        system_attrs={FIXED_PARAMS_KEY: params, STAGE_KEY: {
            "stage": "confirm", "space": parse_space(data).to_dict(),
            "labels": {"confirm_of": origin.number, "seed": seed}}})


def enqueue(study: optuna.Study, trials: Sequence[FrozenTrial] | None = None) -> int:
    """Queue the confirmation runs still to run and raise the goal by their number; the
    caller holds the study lock. Returns how many were queued."""
    settings = study_settings.load(study)
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    todo = plan(trials, settings.space.confirm, rec_rule.ranked_by(settings.space.objectives))
    for origin, seed in todo:
        stored = origin.system_attrs.get(STAGE_KEY)
        space = stored["space"] if stored else settings.space.to_dict()
        study.add_trial(confirmation_trial(origin, seed, space))
    if todo:
        study_settings.save(study, dataclasses.replace(settings, goal=settings.goal + len(todo)))
    return len(todo)
