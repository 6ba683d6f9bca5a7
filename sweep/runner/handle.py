"""A study in a notebook: ``Sweep``, what ``sweep.create_study``, ``sweep.load_study``,
``sweep.start``, ``sweep.resume`` and ``sweep.join`` return. It holds the study, its storage
and its stores; it runs the study (``optimize``) and answers with data::

    import sweep
    s = sweep.create_study({"objectives": ["neg_elbo"]}, study_name="demo",
                           fixed={"dataset": "synthetic", "max_epochs": 1})
    s.optimize(n_trials=4)            # this machine's workers, until the study's goal is met
    s.recommended_trial               # the optuna FrozenTrial to take (None: no answer yet)
    best = s.answer()                 # its number, complete config, metrics, and ranking
    vae = s.model()                   # the recommended trial's VAE, in eval mode
    s.export("best/")                 # config.toml, weights.pt, metrics.json
    s.status().to_dict()              # what `python -m sweep status` shows, as data

``model`` and ``export`` read the weights the trial kept. A trial that kept none (a PRUNED
one, or a study created with ``weights=False``) has to be trained again: they raise
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
    # The data create_study read, for this process's worker (None: each worker reads it).
    images: torch.Tensor | None = dataclasses.field(default=None, repr=False, compare=False)
    # The network this process may import for the study (create_study's ``model``); a
    # study's own network, loaded, needs ``optimize(model=...)``: see sweep.runner.network.
    network: str | None = None

    @property
    def name(self) -> str:
        return self.study.study_name

    def optimize(self, n_trials: int | None = None, *, timeout: float | None = None,
                 workers: int | None = None, gpus: list[int] | None = None,
                 trials_per_gpu: int = 1, threads: int | None = None,
                 model: str | None = None) -> None:
        """Add ``n_trials`` to the study's budget (None: add none), then run trials on this
        machine until the budget is spent, as Optuna's ``Study.optimize`` does, or until
        ``timeout`` seconds, after which no trial starts.

        The budget is the study's, not this call's: workers on other machines
        (``python -m sweep worker``) run its trials too, and two ``optimize(n_trials=3)``
        at once run 6. ``gpus``: the GPU ids to use, ``trials_per_gpu`` workers each
        (default: every visible GPU); ``workers``: worker processes on a machine without
        GPUs; ``threads``: CPU threads per worker; ``model``: where this machine imports the
        study's network from, when it is not built in (``sweep.runner.network``).
        """
        from sweep.runner.study import RunOptions, optimize

        optimize(self.study, self.url, n_trials,
                 RunOptions(gpus=gpus, workers=workers, trials_per_gpu=trials_per_gpu,
                            threads=threads, timeout=timeout, model=model or self.network),
                 self.images)

    def add_budget(self, n_trials: int) -> None:
        """Add ``n_trials`` to the study's budget and run none: workers on any machine
        (``python -m sweep worker``, ``sweep.join``) run them."""
        from sweep.logs import quiet_logs
        from sweep.runner import budget

        with quiet_logs():
            budget.add(self.url, self.name, n_trials)

    @property
    def recommended_trial(self) -> FrozenTrial | None:
        """The trial to take (``sweep.answer.recommend``), as ``study.best_trial`` is
        Optuna's pick: ranked by the yardstick when the study's objectives name it, else by
        their first objective. None while no trial qualifies."""
        from sweep.answer import recommend as rec_rule

        return rec_rule.recommend(self.study.get_trials(deepcopy=False),
                                  rec_rule.of_study(self.study))

    def answer(self) -> Recommendation | None:
        """The recommended trial's number, complete config, metrics and the metric it is
        the best of (``ranked_by``), or None while no trial qualifies."""
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


def load_study(study_name: str | None = None, *, storage: str | None = None) -> Sweep:
    """The ``Sweep`` of study ``study_name`` (None: the storage's only study), as
    ``optuna.load_study``: nothing runs until ``optimize``. ``storage``: a URL, else
    $VAE_SWEEP_STORAGE, else sqlite:///sweeps.db."""
    from sweep.storage import settings as study_settings
    from sweep.storage.database import open_study, pinned, resolve_storage_url
    from sweep.storage.stores import open_stores

    loaded, opened, url = open_study(pinned(resolve_storage_url(storage)), study_name)
    stores = open_stores(study_settings.load(loaded).artifacts, url, loaded.study_name)
    return Sweep(loaded, opened, stores, url)
