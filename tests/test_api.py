"""The Python API in-process, as a notebook uses it: the README's example, the ``Sweep``
handle's answers against ``status``, errors that name the parameter, and a run that leaves
the calling process as it found it."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import os
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib
import optuna
import pytest
import torch

import sweep
from sweep.answer.recommend import recommend
from sweep.cli import FLAGS, main
from sweep.errors import NoWeights, ParamError
from sweep.runner.interrupts import armed, signals_interrupt

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_readme_example_runs_in_process(readme_example):
    example = readme_example
    best, x, x_hat = example["answer"], example["x"], example["x_hat"]
    assert x_hat.shape == x.shape == (8, 3, 32, 32)
    assert 0 <= float(x_hat.min()) and float(x_hat.max()) <= 1
    assert best.metrics["active_units"] > 0 and best.ranked_by == "neg_elbo"
    assert (example["where"] / "sweeps.db").exists()
    # The model is the recommended trial's: its config, and its reconstructions as scored.
    assert example["vae"].cfg == best.config
    assert not example["vae"].training
    # recommended_trial is that trial as Optuna has it; load_study opens the same study.
    assert example["best"].number == best.trial
    assert example["best"].user_attrs["bits_per_dim"] == best.metrics["bits_per_dim"]
    again = example["again"]
    assert again.study.study_name == "notebook" and again.url == example["s"].url
    assert again.recommended_trial.number == best.trial


@pytest.mark.slow
def test_recommended_agrees_with_the_status_text_and_data(readme_example, capsys):
    example = readme_example
    s, best = example["s"], example["answer"]
    trials = s.study.get_trials(deepcopy=False)
    assert best.trial == recommend(trials).number
    url = f"sqlite:///{example['where'] / 'sweeps.db'}"
    assert main(["status", "--storage", url, "--study", "notebook"]) == 0
    text = capsys.readouterr().out
    said = re.search(r"^Recommended \(.*\): trial (\d+);", text, re.M)
    assert said is not None and int(said[1]) == best.trial, text
    fields = re.search(r"^Its config, every field: (.*)$", text, re.M)
    assert fields is not None and fields[1] == " ".join(
        f"{k}={v}" for k, v in best.config.to_dict().items())
    data = s.status().to_dict()
    assert data["recommended"]["trial"] == best.trial
    assert data["recommended"]["config"] == best.config.to_dict()
    assert data["baseline"]["trial"] == 0
    states = [t.state.name for t in trials]
    assert data["counts"] == {state: states.count(state) for state in set(states)}


@pytest.mark.slow
def test_the_handle_exports_the_recommended_trial(readme_example, tmp_path):
    example = readme_example
    s, best = example["s"], example["answer"]
    written = s.export(tmp_path / "best")
    assert written["trial"] == best.trial and written["weights"] == "saved weights"
    assert sorted(p.name for p in (tmp_path / "best").iterdir()) == [
        "config.toml", "metrics.json", "weights.pt"]
    with pytest.raises(ParamError, match=r"^trial 99: study 'notebook' has no such trial"):
        s.model(99)


SPACE = {"objectives": ["neg_elbo"],
         "fixed": {"dataset": "synthetic", "synthetic_size": 96, "width": 4, "depth": 2,
                   "latent_dim": 8, "batch_size": 32, "max_epochs": 1,
                   "recon_reduction": "sum", "kl_schedule": "linear",
                   "kl_warmup_steps": 100000},
         "search": {"lr": {"low": 1e-3, "high": 2e-3}}}


def _state() -> dict:
    """What a library call must leave as it found it in the calling process."""
    lightning = ("pytorch_lightning", "lightning.pytorch", "lightning.fabric")
    return {"signals": {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)},
            "environ": dict(os.environ), "threads": torch.get_num_threads(),
            "warnings": list(warnings.filters),
            "backend": dict.__getitem__(matplotlib.rcParams, "backend"),
            "levels": {n: logging.getLogger(n).level for n in (*lightning, "sweep")},
            "optuna": optuna.logging.get_verbosity()}


def _handler(signum, frame):  # a notebook's own handler, to find again after the run
    raise AssertionError("not called")


@pytest.mark.slow
def test_a_run_leaves_the_process_as_it_found_it_and_never_retrains_silently(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    old = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        before = _state()
        s = sweep.start(SPACE, study_name="quiet", storage=url, n_trials=1, references=False,
                        weights=False, options=sweep.RunOptions(threads=2, timeout=600))
        after = _state()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    assert after == before
    trial = s.study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    with pytest.raises(NoWeights, match="trial 0 .* kept no weights.*retrain=True"):
        s.model(0)
    with pytest.raises(NoWeights):
        s.export(tmp_path / "out", 0)
    assert not (tmp_path / "out").exists()
    assert s.model(0, retrain=True).cfg.lr == trial.params["lr"]


def test_each_run_has_its_own_signal_record_and_gives_the_handler_back():
    previous = signal.signal(signal.SIGINT, _handler)
    try:
        for _ in range(2):  # a second run answers Ctrl-C as the first did
            with pytest.raises(KeyboardInterrupt, match="SIGINT"), \
                    signals_interrupt() as received, armed():  # as while a trial trains
                signal.raise_signal(signal.SIGINT)
            assert received == ["SIGINT"]
            assert signal.getsignal(signal.SIGINT) is _handler
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.slow
def test_no_library_module_chooses_a_matplotlib_backend_or_leaves_a_pyplot_figure(tmp_path):
    """Importing every module and drawing a report's figure leaves the user's backend (here
    MPLBACKEND=svg) and no figure in pyplot's global state, which a notebook owns."""
    code = ("import importlib, pkgutil, sys, sweep, matplotlib\n"
            "for m in pkgutil.walk_packages(sweep.__path__, 'sweep.'):\n"
            "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
            "from sweep.answer import figures\n"
            "figures.importance_chart({'mse': {'lr': 0.7, 'latent_dim': 0.3}},\n"
            "                         __import__('pathlib').Path('chart.png'))\n"
            "plt = sys.modules.get('matplotlib.pyplot')  # torchmetrics loads it\n"
            "assert plt is None or plt.get_fignums() == [], plt.get_fignums()\n"
            "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, env=dict(os.environ, MPLBACKEND="svg",
                                              PYTHONPATH=str(ROOT)), timeout=300)
    assert done.returncode == 0, done.stderr


def test_errors_name_the_parameter_and_the_command_line_the_flag(tmp_path):
    with contextlib.chdir(tmp_path):
        with pytest.raises(ParamError, match=r"^n_trials must be >= 1, got -1$"):
            sweep.start(SPACE, n_trials=-1, storage="sqlite:///s.db")
        with pytest.raises(ParamError, match=r"^timeout must be a positive number"):
            sweep.RunOptions(timeout=0)
        with pytest.raises(ParamError, match=r"^gpus and workers exclude each other; use "
                                             r"trials_per_gpu"):
            sweep.RunOptions(gpus=[0], workers=2)
        assert list(tmp_path.iterdir()) == []  # nothing written
        err = ParamError("gpus", "and {workers} exclude each other")
        assert err.render(FLAGS.__getitem__) == "--gpus and --workers exclude each other"
        for name in ("a", "b"):
            optuna.create_study(study_name=name, storage="sqlite:///two.db")
        with pytest.raises(ParamError,
                           match=r"^study_name is needed: 2 studies in .*two.db \(a, b\)"):
            sweep.load_study(storage="sqlite:///two.db")


def test_every_parameter_of_the_api_that_is_a_flag_is_in_the_flag_table():
    """An error names a parameter (``n_trials``) and the command line shows its flag; the
    parameters that are not flags are the ones the command line spells otherwise."""
    spelled_otherwise = {"space", "fixed", "baseline", "references", "weights",
                         "keep_checkpoints", "load_if_exists", "load_data", "self"}
    params = {*inspect.signature(sweep.create_study).parameters,
              *inspect.signature(sweep.Sweep.optimize).parameters,
              *inspect.signature(sweep.load_study).parameters,
              *(f.name for f in dataclasses.fields(sweep.RunOptions))} - spelled_otherwise
    assert {"n_trials", "gpus", "workers", "trials_per_gpu", "timeout", "study_name"} <= params
    assert {p: FLAGS.get(p, "") for p in params} == {p: f"--{p.replace('_', '-')}"
                                                     if p != "study_name" else "--study"
                                                     for p in params}
