"""A study's images travel with it: ``copy_study`` copies a study and every artifact its
trials list into another storage and store, and ``artifacts_found`` says whether a store
holds a study's artifacts at all (what ``dashboard`` checks before serving).

``optuna.copy_study`` copies the trials with their artifact records (system attrs) but not
the files: the copy's default store (beside its database) would hold none of them, and each
image would answer HTTP 500 in the dashboard. Checkpoints are not copied: a copy is for
reading the finished trials, not for resuming them.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial

from sweep.errors import UsageError
from sweep.optuna_private import ARTIFACTS_ATTR_PREFIX, ArtifactStore
from sweep.storage import settings as study_settings
from sweep.storage.database import open_storage, open_study, shown
from sweep.storage.stores import normalize, open_stores


@dataclass(frozen=True)
class Copied:
    """What ``copy_study`` did: the study, its trials, the artifacts copied and those the
    source store had lost (listed by a trial, not found), and where the copy's images are."""

    study: str
    trials: int
    artifacts: int
    missing: int
    store: str


def artifact_ids(trial: FrozenTrial) -> list[str]:
    """The ids of the artifacts ``trial`` lists (Optuna's records, in its system attrs)."""
    return [json.loads(v)["artifact_id"] if isinstance(v, str) else v["artifact_id"]
            for k, v in trial.system_attrs.items() if k.startswith(ARTIFACTS_ATTR_PREFIX)]


def _has(store: ArtifactStore, artifact_id: str) -> bool:
    try:
        with contextlib.closing(store.open_reader(artifact_id)):
            return True
    except Exception:  # each store says "not there" its own way (file, S3, GCS errors)
        return False


def artifacts_found(study: optuna.Study, store: ArtifactStore) -> tuple[int, bool]:
    """How many artifacts ``study``'s trials list, and whether ``store`` holds any of them
    (it stops at the first one found)."""
    ids = [i for t in study.get_trials(deepcopy=False) for i in artifact_ids(t)]
    return len(ids), any(_has(store, i) for i in ids)


def studies_without_artifacts(storage: optuna.storages.BaseStorage, url: str,
                              override: str | None) -> list[tuple[str, int, str]]:
    """(study, artifacts its trials list, store) for each study in ``storage`` whose store
    (``override`` when given, else the one its settings name) holds none of them: a study
    copied or moved without its images."""
    out = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        data = study_settings.stored(study) or {}
        store = override or data.get("artifacts")
        stores = open_stores(normalize(store) if store else None, url, summary.study_name)
        listed, found = artifacts_found(study, stores.artifacts)
        if listed and not found:
            out.append((summary.study_name, listed, stores.where))
    return out


def copy_study(from_url: str, to_url: str, study: str | None = None,
               to_artifacts: str | None = None) -> Copied:
    """Copy ``study`` (the only study of ``from_url`` when None) into ``to_url``, and every
    artifact its trials list from its store into ``to_artifacts`` (default: the store beside
    the destination database). The copy's settings name its new store. UsageError when the
    study is missing, or already in the destination."""
    source, source_storage, _ = open_study(from_url, study)
    name = source.study_name
    data = dict(study_settings.stored(source) or {})
    source_stores = open_stores(data.get("artifacts"), from_url, name)
    destination = open_storage(to_url, heartbeat_interval=None)
    if name in optuna.get_all_study_names(destination):
        raise UsageError(f"{shown(to_url)} already has a study {name!r}")
    target = normalize(to_artifacts) if to_artifacts else None
    stores = open_stores(target, to_url, name)
    copied = missing = 0
    trials = source.get_trials(deepcopy=False)
    for trial in trials:
        for artifact_id in artifact_ids(trial):
            try:
                reader = source_stores.artifacts.open_reader(artifact_id)
            except Exception:  # a file the source store lost: the copy lacks it too
                missing += 1
                continue
            with contextlib.closing(reader):
                stores.artifacts.write(artifact_id, reader)
            copied += 1
    optuna.copy_study(from_study_name=name, from_storage=source_storage,
                      to_storage=destination)
    if data:  # a vae-sweep study: its copy reads its images from the new store
        copy = optuna.load_study(study_name=name, storage=destination)
        study_settings.write(copy, {**data, "artifacts": target})
    return Copied(name, len(trials), copied, missing, stores.where)
