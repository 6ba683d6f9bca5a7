"""``python -m sweep export``: take one trial away as ``config.toml``, ``weights.pt`` and
``metrics.json``.

``config.toml`` holds every ``Config`` field and the thread count the trial ran with, so
``python -m sweep train --config DIR/config.toml`` trains the same run again (the same
metrics on CPU, whatever this machine's default thread count); ``weights.pt`` is the
trial's ``weights.pt`` artifact, or, when the study kept none, the weights of a retraining
of its config (said on stderr, with a progress bar); ``metrics.json`` is everything the
trial recorded (metrics, config, provenance, per-epoch history), with the held-out metrics
of ``--test-data`` under ``"test"``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from sweep import configfile
from sweep.answer.recommend import of_study, recommend, trial_config
from sweep.errors import ParamError
from sweep.storage import trial_record


def pick(study: optuna.Study, which: int | str) -> FrozenTrial:
    """Trial number ``which``, or the recommended trial for ``"best"``."""
    trials = study.get_trials(deepcopy=False)
    if which == "best":
        chosen = recommend(trials, of_study(study))
        if chosen is None:
            raise ParamError("trial", f"best: study {study.study_name!r} has no complete trial "
                             "that kept an active unit; name a trial number")
    else:
        chosen = next((t for t in trials if t.number == int(which)), None)
        if chosen is None:
            raise ParamError("trial", f"{which}: study {study.study_name!r} has no such trial")
    if trial_record.config(chosen) is None:
        raise ParamError("trial", f"{which}: trial {chosen.number} is {chosen.state.name} "
                         "and never trained (it has no config)")
    return chosen


def export(study: optuna.Study, storage: optuna.storages.BaseStorage, store: Any,
           trial: FrozenTrial, out: Path, test_images: Any = None,
           retrain: bool = True, iw_samples: int | None = None) -> dict[str, Any]:
    """Write the three files into ``out``; returns what went into metrics.json.
    ``retrain=False``: NoWeights (before anything is written) when the trial kept none.
    ``iw_samples``: also the test NLL by the ELBO and the bound of that many importance
    samples (``sweep.answer.test_nll``: ``test_bits_per_dim_iw`` and the like)."""
    from sweep.answer import test_nll
    from sweep.answer.evaluate import download_weights, evaluate, model_for
    from sweep.answer.weights import load_model, save_weights

    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "weights.pt"
        if download_weights(trial, storage, store, saved):
            module, how = None, "saved weights"
        else:
            module, how = model_for(trial, storage, store, retrain=retrain)
        out.mkdir(parents=True, exist_ok=True)
        if module is None:
            shutil.copy(saved, out / "weights.pt")
            module = load_model(out / "weights.pt") if test_images is not None else None
        else:
            save_weights(module, out / "weights.pt")
    cfg = trial_config(trial)
    (out / "config.toml").write_text(configfile.dumps(
        cfg, f"study {study.study_name!r}, trial {trial.number} ({trial.state.name})\n"
             f"python -m sweep train --config {out / 'config.toml'} trains it again",
        threads=trial.user_attrs.get("threads")))
    data: dict[str, Any] = {"study": study.study_name, "trial": trial.number,
                            "state": trial.state.name, "values": trial.values,
                            **trial.user_attrs, "config": trial_record.config(trial),
                            "history": trial_record.history(trial),
                            "kl_per_dim": trial_record.kl_per_dim(trial), "weights": how}
    if how == "retrained" and module is not None:
        data["retrained"] = {k: v for k, v in module.last_metrics.items() if k != "kl_per_dim"}
    if test_images is not None and module is not None:
        data["test"] = evaluate(module, test_images)
        if iw_samples:
            data.update(test_nll.figures(module, test_images, iw_samples))
    (out / "metrics.json").write_text(json.dumps(trial_record.json_safe(data), indent=2) + "\n")
    return data

