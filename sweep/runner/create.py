"""Creating a study: ``create_study`` (``sweep.create_study``), the study-level half of a
sweep, as ``optuna.create_study`` is Optuna's. What every trial of the study shares is given
here (the space, the fixed fields, the data, the network, what trials keep, the seed and the
literature's fixes); what one machine runs is given to ``Sweep.optimize``
(``sweep.runner.study``): the trials to add, the workers, GPUs and timeout.

Every argument is checked before anything is written (``sweep.errors.BAD_INPUT``, a
``ParamError`` naming the parameter); the study is created, or loaded with
``load_if_exists``, under the study lock, with its settings (``sweep.storage.settings``).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.config import Config
from models.networks import Builder
from sweep.errors import ParamError, UsageError
from sweep.runner import network
from sweep.runner.handle import load_study
from sweep.space import Space, fix, for_continuous, load_space, parse_space
from sweep.storage import settings as study_settings
from sweep.storage.database import check_url, resolve_storage_url, shown
from sweep.storage.names import check_study_name
from sweep.storage.settings import Settings
from sweep.storage.stores import normalize as normalize_store

if TYPE_CHECKING:
    from sweep.runner.handle import Sweep

log = logging.getLogger(__name__)


def default_study_name(dataset: str) -> str:
    name = dataset.split(":", 1)[-1].rstrip("/")
    if dataset.startswith("npy:"):
        return "vae-" + Path(name).stem
    return "vae-" + (Path(name).name if dataset.startswith("folder:") else name)


def parse(space: str | Path | Mapping[str, Any] | Space | None) -> Space:
    """``space`` as a ``Space``: a TOML file, a dict of the same, or one already (None: the
    built-in space); SpaceError naming what is wrong."""
    if isinstance(space, Space):
        return space
    if isinstance(space, Mapping):
        return parse_space(copy.deepcopy(dict(space)))
    return load_space(space)


def create_study(space: str | Path | Mapping[str, Any] | Space | None = None, *,
                 study_name: str | None = None, storage: str | None = None,
                 fixed: Mapping[str, Any] | None = None, model: str | Builder | None = None,
                 baseline: bool = True, references: bool = True, weights: bool = True,
                 keep_checkpoints: bool = False, heartbeat: int = 10,
                 artifacts: str | None = None, load_if_exists: bool = False,
                 load_data: bool = True) -> Sweep:
    """Create study ``study_name`` and return its ``Sweep``; ``Sweep.optimize`` runs it.

    ``space``: a sweep TOML file, the same description as a dict, or a ``Space`` (None: the
    built-in space); ``fixed`` are Config fields that win over it (the data among them:
    ``{"dataset": "mnist"}``). ``model``: the network (``models.networks``): a built-in name,
    ``module:function``, ``file.py:function`` or the builder function itself (one defined in
    a notebook runs in this process only); it wins over the space's.
    ``storage``: a URL, else $VAE_SWEEP_STORAGE, else sqlite:///sweeps.db; ``study_name``:
    default vae-<dataset>.
    ``baseline``: each budget added starts with the seed configuration; ``references``: and
    the literature's fixes after it (``sweep.answer.references``), counted in the budget.
    ``weights``: keep the final weights of COMPLETE trials; ``keep_checkpoints``: and their
    last checkpoints; ``heartbeat``: seconds between a trial's heartbeats (one silent for 3x
    is failed and re-run from its checkpoint); ``artifacts``: the study's image and
    checkpoint store (``sweep.storage.stores``; None: beside the SQLite file).
    ``load_data``: read the data now, so bad data fails here and ``optimize`` in this
    process uses it (False: only an array file's, to check it; workers read the rest).

    A study of that name raises ``StudyExists`` (Optuna's ``DuplicatedStudyError``) unless
    ``load_if_exists``: then it is loaded and given these settings (the same objectives and
    network, else UsageError), keeping its budget and its artifact store.
    """
    url = resolve_storage_url(storage)
    check_url(url)
    if study_name is not None and not study_name.strip():  # "" silently became the default
        raise ParamError("study_name", f"{study_name!r}: a study name cannot be empty")
    check_study_name(study_name)  # CON, NUL...: no folder on Windows can have the name
    fixed = dict(fixed or {})
    if model is not None:
        fixed["model"] = network.spec_of(model)
    Config.from_dict(fixed)  # a bad field is named as the user wrote it
    space = fix(parse(space), fixed)
    base = Config.from_dict(space.fixed)
    store = normalize_store(artifacts) if artifacts else None
    settings = Settings(space, goal=0, heartbeat=heartbeat, keep_checkpoints=keep_checkpoints,
                        keep_weights=weights, artifacts=store, baseline=baseline,
                        references=references)
    name = study_name or default_study_name(base.dataset)

    from models.arrays import PREFIX as NPY_PREFIX
    from models.data import load_images
    from sweep.logs import quiet_logs

    # Bad data fails before any write; an array file is read whole even without load_data
    # (cheap beside decoding a folder), so NaNs are found here, not by every worker.
    whole = load_data or base.dataset.startswith(NPY_PREFIX)
    images = load_images(base) if whole else None
    settings = _for_data(settings)
    # A bad network or knob fails before any write too.
    settings = dataclasses.replace(settings, model_sha256=network.check(settings.space, images))
    with quiet_logs():
        _create(url, name, settings, load_if_exists)
    handle = load_study(name, storage=url)
    # This process built the network from ``model`` (or a built-in), so it may run it.
    return dataclasses.replace(handle, images=images if load_data else None,
                               network=settings.base.model)


def _for_data(settings: Settings) -> Settings:
    """``settings`` for its data: continuous (float) data gets its yardstick and an unbounded
    decoder (``sweep.space.for_continuous``), each change said in one line. Only the array's
    header is read, so a study created without its data checks it too."""
    from models.arrays import is_continuous

    if not is_continuous(settings.base.dataset):
        return settings
    space, notes = for_continuous(settings.space)
    for line in notes:
        log.info("%s", line)
    return dataclasses.replace(settings, space=space)


def _create(url: str, name: str, settings: Settings, load_if_exists: bool) -> None:
    """Create the study with ``settings`` (or give an existing one them, keeping its goal
    and store) under the study lock."""
    import optuna

    from sweep.runner.exists import StudyExists
    from sweep.runner.heartbeat import open_with_heartbeat

    space = settings.space
    beating = open_with_heartbeat(url, settings.heartbeat)
    with beating.study_lock(name):
        try:
            created = optuna.create_study(study_name=name, storage=beating,
                                          directions=space.directions(),  # type: ignore[arg-type]
                                          load_if_exists=load_if_exists)
        except optuna.exceptions.DuplicatedStudyError:
            raise StudyExists(name, shown(url)) from None
        old = study_settings.stored(created)
        if old and old["space"]["objectives"] != list(space.objectives):
            raise UsageError(f"study {name!r} has objectives {old['space']['objectives']}; "
                             f"this config asks for {list(space.objectives)}")
        if old:
            same_network(name, Settings.from_dict(old), settings)
        created.set_metric_names(list(space.objectives))
        store = settings.artifacts or (old or {}).get("artifacts")
        study_settings.save(created, dataclasses.replace(
            settings, goal=old["goal"] if old else 0, artifacts=store))


def same_network(name: str, old: Settings, new: Settings) -> None:
    """UsageError unless a second ``start`` of study ``name`` trains the network it trains."""
    if old.base.model != new.base.model:
        raise UsageError(f"study {name!r} trains the network {old.base.model}; this start "
                         f"asks for {new.base.model}")
    if old.model_sha256 and new.model_sha256 and old.model_sha256 != new.model_sha256:
        raise UsageError(f"study {name!r} was started with {old.base.model} of sha256 "
                         f"{old.model_sha256[:16]}; its source now has "
                         f"{new.model_sha256[:16]}: start a new study for the changed code")
