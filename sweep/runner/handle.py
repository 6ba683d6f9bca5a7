"""A study in a notebook: ``Sweep``, what ``sweep.start``, ``sweep.resume``, ``sweep.join``
and ``sweep.load`` return. It holds the study, its storage and its stores, and answers with
data::

    import sweep
    s = sweep.start({"objectives": ["neg_elbo"]}, study="demo", n_trials=4,
                    fixed={"dataset": "synthetic", "max_epochs": 1})
    best = s.recommended()            # trial number, config, metrics (None: no answer yet)
    vae = s.model()                   # the recommended trial's VAE, in eval mode
    s.export("best/")                 # config.toml, weights.pt, metrics.json
    s.status().to_dict()              # what `python -m sweep status` shows, as data

``model`` and ``export`` read the weights the trial kept. A trial that kept none (a PRUNED
one, or a study started with ``weights=False``) has to be trained again: they raise
``sweep.errors.NoWeights`` saying so unless called with ``retrain=True``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `import sweep` stays light: the command line imports it first
    import optuna
    import torch
    from optuna.trial import FrozenTrial

    from models.module import VAE
    from sweep.answer.status import Recommendation, Status
    from sweep.storage.stores import Stores


@dataclasses.dataclass
class Sweep:
    """A study with its storage and stores (see the module docstring)."""

    study: optuna.Study
    storage: optuna.storages.BaseStorage
    stores: Stores
    url: str

    @property
    def name(self) -> str:
        return self.study.study_name

    def recommended(self) -> Recommendation | None:
        """The trial to take (``sweep.answer.recommend``), or None while no trial qualifies."""
        return self.status().recommended

    def status(self) -> Status:
        """Trials by state, the front, the baseline, the references and the recommendation."""
        from sweep.answer.status import read_status

        return read_status(self.study, self.url)

    def trial(self, trial: int | str = "best") -> FrozenTrial:
        """Trial number ``trial``, or the recommended one for ``"best"`` (ParamError naming
        ``trial`` when there is none, or it never trained)."""
        from sweep.answer.export import pick

        return pick(self.study, trial)

    def model(self, trial: int | str = "best", *, retrain: bool = False) -> VAE:
        """The trained VAE of ``trial`` (a number, or ``"best"``), in eval mode, on CPU.

        From the weights the trial kept; with none, ``retrain=True`` trains its config again
        (as long as the trial took), else ``NoWeights`` is raised.
        """
        from sweep.answer.evaluate import model_for

        return model_for(self.trial(trial), self.storage, self.stores.artifacts,
                         progress=False, retrain=retrain)[0]

    def export(self, path: str | Path, trial: int | str = "best", *, retrain: bool = False,
               test_images: torch.Tensor | None = None) -> dict[str, Any]:
        """Write ``trial``'s config.toml, weights.pt and metrics.json into folder ``path``
        (``sweep.answer.export``); returns what metrics.json holds. ``retrain`` as for ``model``;
        ``test_images`` (as ``models.data.load_images`` gives them) are scored under
        ``"test"``."""
        from sweep.answer.export import export

        return export(self.study, self.storage, self.stores.artifacts, self.trial(trial),
                      Path(path), test_images, retrain=retrain)


def load(study: str | None = None, *, storage: str | None = None) -> Sweep:
    """The ``Sweep`` of study ``study`` (None: the storage's only study), to read: nothing
    runs. ``storage``: a URL, else $VAE_SWEEP_STORAGE, else sqlite:///sweeps.db."""
    from sweep.storage import settings as study_settings
    from sweep.storage.database import open_study, pinned, resolve_storage_url
    from sweep.storage.stores import open_stores

    loaded, opened, url = open_study(pinned(resolve_storage_url(storage)), study)
    stores = open_stores(study_settings.load(loaded).artifacts, url, loaded.study_name)
    return Sweep(loaded, opened, stores, url)
