"""Every private Optuna name vae-sweep uses, in one place, each with the reason.

Optuna may change any of these in a minor release: pyproject bounds optuna to the versions
the suite ran on, and tests/test_private_names.py fails when the code uses a private name
this module does not list (torch's and Lightning's are in ``models.private_api``).
Other modules import them from here, never from ``optuna.*._*`` directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# A type in RDBStorage's method signatures (with FrozenStudy below), which
# sweep.storage.retries.RetriedRDBStorage repeats so that mypy checks its overrides
# against Optuna's.
from optuna._typing import JSONSerializable

# The type of "an artifact store": Optuna exports only the concrete stores (file system,
# S3, GCS), and ours wrap them (a prefix, several stores read as one).
from optuna.artifacts._protocol import ArtifactStore

# Artifacts are uploaded with the ids we choose ("NN-<uuid>", so the dashboard lists them in
# order): optuna.artifacts.upload_artifact draws a random id, so we write the same metadata
# (this attr prefix, this record) ourselves, and Optuna's readers find them as their own.
from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX, ArtifactMeta

# The system attr where a trial's constraint values live (what constraints_func fills, now
# deprecated in Optuna 5): TPE, best_trial(s) and optuna-dashboard all read it, and no public
# call writes it, so the collapse constraint is written there (sweep.runner.objective).
# Heartbeats are what a storage inherits from this base: optuna.storages.fail_stale_trials and
# optimize() look for it, and a JournalStorage has none (Optuna 5.0), so
# sweep.storage.journal.SweepJournalStorage implements it.
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.study._constrained_optimization import _CONSTRAINTS_KEY as CONSTRAINTS_KEY
from optuna.study._frozen import FrozenStudy

if TYPE_CHECKING:
    from types import ModuleType

    import optuna

# RDBStorage methods that are private but called from outside it: Optuna's _CachedStorage
# (which every Study puts around an RDBStorage) calls these four, so SweepStorage overrides
# them to retry through outages like the public ones.
CACHED_STORAGE_CALLS = ("_create_new_trial", "_set_trial_param", "_get_best_trial_id",
                        "_get_trials")
# The RDBStorage method optuna.storages.fail_stale_trials asks which trials to fail:
# SweepStorage overrides it to hold off just after an outage and to record why.
STALE_TRIAL_IDS = "_get_stale_trial_ids"

# The system attr where enqueue_trial keeps a queued trial's params: a re-run over seeds is
# queued with it (sweep.runner.confirm), and a user's enqueued trial is told apart by it.
FIXED_PARAMS_KEY = "fixed_params"

# What tests/test_private_names.py finds in the code, each with where it is explained above.
PRIVATE: dict[str, str] = {
    "optuna._typing": "JSONSerializable",
    "optuna.artifacts._protocol": "ArtifactStore",
    "optuna.artifacts._upload": "ARTIFACTS_ATTR_PREFIX, ArtifactMeta",
    "optuna.storages._heartbeat": "BaseHeartbeat",
    "optuna.study._constrained_optimization": "CONSTRAINTS_KEY",
    "optuna.study._constrained_optimization:_CONSTRAINTS_KEY": "CONSTRAINTS_KEY",
    "optuna.study._frozen": "FrozenStudy",
    "optuna.storages._rdb": "rdb_models",
    "optuna.storages.journal._storage": "replay_afresh",
    "_thread_lock": "replay_afresh", "_worker_id_prefix": "replay_afresh",
    "_sync_with_backend": "replay_afresh", "_replay_result": "replay_afresh",
    "_trial_id": "trial_id", "_study_id": "study_id", "_storage": "study_storage",
    **{name: "CACHED_STORAGE_CALLS" for name in ("_create_new_trial", "_set_trial_param",
                                                 "_get_best_trial_id", "_get_trials")},
    "_get_stale_trial_ids": "STALE_TRIAL_IDS",
}

__all__ = ["ARTIFACTS_ATTR_PREFIX", "CACHED_STORAGE_CALLS", "CONSTRAINTS_KEY",
           "FIXED_PARAMS_KEY", "PRIVATE", "STALE_TRIAL_IDS",
           "ArtifactMeta", "ArtifactStore", "BaseHeartbeat", "FrozenStudy", "JSONSerializable",
           "rdb_models", "replay_afresh", "study_id", "study_storage", "trial_id"]


def rdb_models() -> ModuleType:
    """RDBStorage's table models: "RUNNING trials that never sent a heartbeat" is one query
    on them, and no public call answers it
    (sweep.storage.sweep_storage.SweepStorage.unclaimed_running).
    Imported when called: it loads SQLAlchemy's ORM, which most commands never need."""
    from optuna.storages._rdb import models

    return models


def replay_afresh(storage: optuna.storages.JournalStorage) -> None:
    """Rebuild a JournalStorage's in-memory state from its journal, with the same worker id
    (so the trials this process owns stay its own): a signal that lands inside the replay
    of new records leaves it half-applied, and JournalStorage has no public call to start
    over (sweep.storage.journal.SweepJournalStorage.fresh_connections)."""
    from optuna.storages.journal._storage import JournalStorageReplayResult

    with storage._thread_lock:
        storage._replay_result = JournalStorageReplayResult(storage._worker_id_prefix)
        storage._sync_with_backend()


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The storage's id of ``trial``: storage calls (heartbeats, system attrs) and the
    dashboard's URLs take it, and a trial exposes only its number."""
    return trial._trial_id


def study_id(study: optuna.Study) -> int:
    """The storage's id of ``study``, for the storage calls that take it."""
    return study._study_id


def study_storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage ``study`` reads and writes: a study's system attrs (where optuna-dashboard
    keeps its notes, and vae-sweep its settings, out of the dashboard's view) are reached
    only through it, since Optuna 5 dropped ``Study.system_attrs``."""
    return study._storage
