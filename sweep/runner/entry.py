"""The whole-run calls the commands of the same names wrap, each returning the study's
``Sweep`` (``sweep.runner.handle``): ``start`` (``create_study`` then ``Sweep.optimize``, in
one call), ``resume`` (continue a stopped study from its checkpoints) and ``join`` (run an
existing study's trials from this machine)::

    import sweep
    s = sweep.start("sweep.toml", study_name="cifar", n_trials=20, fixed={"max_epochs": 3},
                    options=sweep.RunOptions(gpus=[0, 1]))
    s = sweep.resume("cifar")

Errors and what a run leaves behind are those of ``sweep.runner.study``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.networks import Builder
from sweep.runner import budget, network
from sweep.runner.create import create_study, parse
from sweep.runner.handle import load_study
from sweep.runner.study import RunOptions, load_settings, resume_run, slots
from sweep.space import Space
from sweep.storage.database import resolve_storage_url, shown

if TYPE_CHECKING:
    from sweep.runner.handle import Sweep

log = logging.getLogger(__name__)


def start(space: str | Path | Mapping[str, Any] | Space | None = None, *,
          study_name: str | None = None, storage: str | None = None, n_trials: int = 20,
          fixed: Mapping[str, Any] | None = None, model: str | Builder | None = None,
          baseline: bool = True, references: bool = True, weights: bool = True,
          keep_checkpoints: bool = False, heartbeat: int = 10, artifacts: str | None = None,
          load_if_exists: bool = False, options: RunOptions | None = None,
          run: bool = True) -> Sweep:
    """``create_study`` then ``Sweep.optimize``, in one call (what ``python -m sweep start``
    runs); returns the ``Sweep``. The arguments are ``create_study``'s, then ``n_trials``
    (the trials to add) and ``options`` (how this machine runs them), ``optimize``'s.
    ``run=False`` only adds the trials (``Sweep.add_budget``): ``worker`` processes run them.
    Every argument, the run's included, is checked before anything is written.
    """
    options = options or RunOptions()
    budget.check(n_trials)
    parsed = parse(space)  # a bad sweep file is refused before torch loads
    slots(options, None if model is None else network.spec_of(model))
    handle = create_study(parsed, study_name=study_name, storage=storage, fixed=fixed,
                          model=model, baseline=baseline, references=references,
                          weights=weights, keep_checkpoints=keep_checkpoints,
                          heartbeat=heartbeat, artifacts=artifacts,
                          load_if_exists=load_if_exists, load_data=run)
    if run:
        handle.optimize(n_trials, **dataclasses.asdict(options))
    else:
        handle.add_budget(n_trials)
        log.info("run it from any machine: python -m sweep worker --study %s --storage %s",
                 handle.name, shown(resolve_storage_url(storage)))
    return handle


def resume(study_name: str, *, storage: str | None = None,
           options: RunOptions | None = None) -> Sweep:
    """Continue a stopped study with its stored settings; trials that a crash, kill -9 or
    Ctrl-C left unfinished re-run from their last checkpoint. Returns its ``Sweep``."""
    url = resolve_storage_url(storage)
    resume_run(url, study_name, options or RunOptions())
    return load_study(study_name, storage=url)


def join(study_name: str, *, storage: str | None = None,
         options: RunOptions | None = None) -> Sweep:
    """Run trials of an existing study from this machine until its stored goal is met;
    returns its ``Sweep``. The same as ``load_study(...).optimize()``, for a study of a
    network this process has to be told where to import from (``options.model``)."""
    url = resolve_storage_url(storage)
    load_settings(url, study_name)  # UsageError naming the study when there is none
    handle = load_study(study_name, storage=url)
    handle.optimize(**dataclasses.asdict(options or RunOptions()))
    return handle
