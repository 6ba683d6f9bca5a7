"""A study's budget: ``add`` raises its stored goal by ``n_trials`` (what ``Sweep.optimize``
and ``sweep.start`` do first), under the study lock, so two concurrent ``start --n-trials 3``
run 6 trials. A budget starts with the seed configuration and the literature's fixes when
the study's settings ask for them (``sweep.storage.settings``: ``baseline``,
``references``), and the line that says how it is spent (``plan``) is logged.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from models import networks
from sweep.answer.references import NO_ROOM, enqueue_references
from sweep.errors import ParamError
from sweep.space import EXTRA_SEEDS, Space, baseline_params
from sweep.storage import settings as study_settings
from sweep.storage.database import shown, storage_file

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

log = logging.getLogger(__name__)


def check(n_trials: int) -> None:
    if n_trials < 1:  # 0 made an empty study and said nothing
        raise ParamError("n_trials", f"must be >= 1, got {n_trials}")


def add(url: str, name: str, n_trials: int) -> None:
    """Add ``n_trials`` to study ``name``'s goal; the seed and the fixes come first."""
    import optuna

    from sweep.runner.heartbeat import open_with_heartbeat
    from sweep.runner.progress import results

    check(n_trials)
    beating = open_with_heartbeat(url, 10)  # this process runs no trial on it
    with beating.study_lock(name):
        study = optuna.load_study(study_name=name, storage=beating)
        settings = study_settings.load(study)
        space = settings.space
        done = results(study.get_trials(deepcopy=False))
        before = settings.goal
        goal = max(before, done) + n_trials
        study_settings.save(study, dataclasses.replace(settings, goal=goal))
        knobs = networks.defaults(settings.base.model)  # the seed runs the network's own
        if settings.baseline:
            study.enqueue_trial(baseline_params(space, knobs), user_attrs={"baseline": True},
                                skip_if_exists=True)
        unplaced = 0  # references a larger n_trials would have run
        if settings.references:  # they count toward n_trials, after the baseline
            room = n_trials - int(settings.baseline)
            for line in enqueue_references(study, space, room, knobs):
                log.info("%s", line)
                unplaced += line.startswith(NO_ROOM)
    if before > done:
        log.info("study %r in %s had %d trial(s) still to run (running elsewhere, or left by a "
                 "stopped run): joined it with %d more, %d to run", name, shown(url),
                 before - done, n_trials, goal - done)
    else:
        log.info("study %r in %s: %d trial(s) to run, objectives %s%s", name, shown(url),
                 n_trials, ", ".join(space.objectives),
                 plan(space, study.get_trials(deepcopy=False), goal, n_trials, unplaced))
    log.info("images and checkpoints: %s", _where(settings.artifacts, url, name))
    if settings.artifacts is None and storage_file(url) is None:
        log.info("note: they stay on this machine; give the study a shared artifact store "
                 "(artifacts: a shared folder or s3://BUCKET) when workers run on several "
                 "machines")


def plan(space: Space, trials: Sequence[FrozenTrial], goal: int, n_trials: int,
         unplaced: int) -> str:
    """How the budget is spent, for the start line (sweep.runner.stages, sweep.runner.confirm).

    Confirmation re-runs the search's best, so it runs only when the ``goal`` leaves room
    for a trial the sampler proposes after the labelled ones (the baseline, the references,
    and the ``unplaced`` references this budget had no room for, which a larger one runs
    first); otherwise the line says so, and which ``n_trials`` would leave that room."""
    from sweep.answer import recommend as rec_rule

    text = "; search: the references, then a window around the best of them" if (
        space.strategy == "focus") else ""
    if not space.confirm:
        return text
    missing = sum(rec_rule.labelled(t) for t in trials) + unplaced + 1 - goal
    if missing > 0:
        return text + (f"; no re-runs over seeds, so the answer rests on 1 seed: they confirm "
                       f"the search's best, and these {goal} trials are the seed and the fixes "
                       f"(--n-trials {n_trials + missing} or more leaves room for them)")
    return text + (f"; then the {space.confirm} best and the best reference re-run with "
                   f"{EXTRA_SEEDS} more seeds each")


def _where(store: str | None, url: str, name: str) -> str:
    from sweep.storage.stores import open_stores

    return open_stores(store, url, name).where if store is None else store
