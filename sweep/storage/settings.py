"""A study's settings: what ``start`` was given, kept in the study's user attrs so that
``resume`` and every worker, on any machine, rebuild exactly the same trials and write their
images and checkpoints to the same store (``artifacts``, see ``sweep.storage.stores``).

The search space already holds the command line's fields: ``--set``, ``--data`` and
``--max-epochs`` are folded into its ``[fixed]`` table by ``space.fix`` (the command line
wins over the sweep file, which wins over ``Config``'s defaults), so a trial's config is
always ``suggest(trial, settings.space)``.

They are a study *system* attr (``KEY``), read by every worker from the database as the
trials are: optuna-dashboard shows user attrs cut at 1,024 characters (the default space's
settings alone are longer), so as a user attr they showed as broken JSON. Studies made
before are read from the user attr of the same name (``stored``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from models.config import Config
from sweep.errors import ParamError, UsageError
from sweep.space import Space

if TYPE_CHECKING:
    import optuna

KEY = "vae_sweep_settings"  # a study system attr (see the module docstring)
MAX_HEARTBEAT_S = 3600  # Optuna's heartbeat thread dies on waits past the OS timer's range


@dataclasses.dataclass(frozen=True)
class Settings:
    space: Space
    goal: int  # finished trials the study is run to (see progress.results)
    heartbeat: int = 10  # seconds between heartbeats; a trial silent for 3x is failed
    keep_checkpoints: bool = False
    keep_weights: bool = True  # upload final weights as an artifact (see sweep.runner.objective)
    # Where images and checkpoints go (sweep.storage.stores): an absolute folder or s3://BUCKET/PREFIX;
    # None: beside the SQLite file (studies made before stores existed read the same way).
    artifacts: str | None = None
    # sha256 of the network's source file when the study started (sweep.runner.network): a
    # worker whose builder hashes otherwise is refused.
    model_sha256: str | None = None
    # Whether a budget added to the study (Sweep.optimize) enqueues the seed configuration
    # first and the literature's fixes after it (sweep.runner.budget).
    baseline: bool = True
    references: bool = True

    def __post_init__(self) -> None:
        if self.goal < 0:
            raise ParamError("n_trials", f"must be >= 0, got {self.goal}")
        if not 1 <= self.heartbeat <= MAX_HEARTBEAT_S:
            raise ParamError("heartbeat", f"must be in [1, {MAX_HEARTBEAT_S}] seconds, "
                             f"got {self.heartbeat}")

    @property
    def base(self) -> Config:
        """Every trial's config before the searched params: defaults, then the fixed fields
        (the data fields among them are the data every worker loads)."""
        return Config.from_dict(self.space.fixed)

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space.to_dict(), "goal": self.goal, "heartbeat": self.heartbeat,
                "keep_checkpoints": self.keep_checkpoints, "keep_weights": self.keep_weights,
                "artifacts": self.artifacts, "model_sha256": self.model_sha256,
                "baseline": self.baseline, "references": self.references}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        return cls(space=Space.from_dict(data["space"]), goal=data["goal"],
                   heartbeat=data["heartbeat"], keep_checkpoints=data["keep_checkpoints"],
                   keep_weights=data["keep_weights"], artifacts=data.get("artifacts"),
                   model_sha256=data.get("model_sha256"),
                   # Studies made before these were kept enqueued both (start's default).
                   baseline=data.get("baseline", True), references=data.get("references", True))


def stored(study: optuna.Study) -> dict[str, Any] | None:
    """The settings as stored (``Settings.to_dict()``), or None for a study ``start`` did not
    make."""
    from sweep.optuna_private import study_id, study_storage

    data = study_storage(study).get_study_system_attrs(study_id(study)).get(KEY)
    return data if data is not None else study.user_attrs.get(KEY)


def write(study: optuna.Study, data: dict[str, Any]) -> None:
    """Store settings as plain data (what ``stored`` returns)."""
    from sweep.optuna_private import study_id, study_storage

    study_storage(study).set_study_system_attr(study_id(study), KEY, data)


def save(study: optuna.Study, settings: Settings) -> None:
    write(study, settings.to_dict())


def load(study: optuna.Study) -> Settings:
    """The settings of a study made by ``start``; UsageError for any other study."""
    data = stored(study)
    if data is None:
        raise UsageError(f"study {study.study_name!r} was not started by vae-sweep "
                         "(it has no settings to run it with)")
    return Settings.from_dict(data)
