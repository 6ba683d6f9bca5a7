"""Optuna's shape: ``sweep.create_study`` refuses a name that is taken (Optuna's
``DuplicatedStudyError``) unless ``load_if_exists``, a budget added to a study adds up, and
the command line keeps its behaviour over it: ``start`` adds trials to a study of that name,
``--if-new`` leaves one as it is, and the old ``start --config`` still reads the sweep
file. No trial trains here: the budget is added, not run."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

import sweep
from sweep import optuna_private
from sweep.cli import main
from sweep.storage import settings as study_settings

FIXED = {"dataset": "synthetic", "synthetic_size": 96, "latent_dim": 8, "batch_size": 32}
TOML = "objectives = [\"mse\", \"active_units\"]\n"


def goal(url: str, name: str) -> int:
    return study_settings.load(optuna.load_study(study_name=name, storage=url)).goal


def waiting(url: str, name: str) -> int:
    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    return sum(t.state == TrialState.WAITING for t in trials)


def test_a_taken_name_raises_optunas_error_unless_load_if_exists(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    s = sweep.create_study(study_name="s", storage=url, fixed=FIXED, load_data=False)
    assert isinstance(s.study, optuna.Study) and s.study.study_name == "s"
    assert s.recommended_trial is None and s.answer() is None
    assert goal(url, "s") == 0 and s.study.trials == []  # created: nothing to run yet
    with pytest.raises(optuna.exceptions.DuplicatedStudyError,
                       match=r"^study 's' already exists in sqlite:///.*s\.db "
                             r"\(load_if_exists=True opens it\)$"):
        sweep.create_study(study_name="s", storage=url, fixed=FIXED, load_data=False)
    again = sweep.create_study(study_name="s", storage=url, fixed=FIXED, load_data=False,
                               load_if_exists=True)
    assert optuna_private.study_id(again.study) == optuna_private.study_id(s.study)
    assert optuna_private.study_id(
        sweep.load_study(study_name="s", storage=url).study) == optuna_private.study_id(s.study)


def test_budgets_add_up_and_start_with_the_seed_and_the_fixes_the_study_asked_for(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    s = sweep.create_study(study_name="s", storage=url, fixed=FIXED, load_data=False)
    s.add_budget(2)  # the seed, and room for one fix
    assert goal(url, "s") == 2 and waiting(url, "s") == 2
    sweep.load_study(study_name="s", storage=url).add_budget(3)
    # The seed runs once; each budget keeps its place, so 2 of the 3 other fixes come.
    assert goal(url, "s") == 5 and waiting(url, "s") == 4
    bare = sweep.create_study(study_name="bare", storage=url, fixed=FIXED, load_data=False,
                              baseline=False, references=False)
    bare.add_budget(4)
    assert goal(url, "bare") == 4 and waiting(url, "bare") == 0  # the sampler proposes all
    with pytest.raises(sweep.errors.ParamError, match=r"^n_trials must be >= 1, got 0$"):
        bare.optimize(n_trials=0)
    assert goal(url, "bare") == 4


def test_start_adds_to_a_study_if_new_leaves_it_and_config_still_names_the_space(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.toml").write_text(TOML)
    url = f"sqlite:///{tmp_path}/s.db"
    args = ["start", "--storage", url, "--study", "s", "--no-run", "--no-references",
            "--data", "synthetic", "--set", "synthetic_size=96"]
    assert main([*args, "--n-trials", "2", "--space", "f.toml"]) == 0
    assert main([*args, "--n-trials", "3", "--space", "f.toml"]) == 0
    assert goal(url, "s") == 5
    capsys.readouterr()
    assert main([*args, "--n-trials", "4", "--space", "f.toml", "--if-new"]) == 0
    assert "study 's' exists: left as it is (--if-new)" in capsys.readouterr().out
    assert goal(url, "s") == 5
    # The old spelling reads the same file, with one line saying the new one.
    assert main([*args, "--n-trials", "1", "--config", "f.toml"]) == 0
    assert capsys.readouterr().err == ("note: start --config is now --space (train --config "
                                       "is one trial's config)\n")
    assert goal(url, "s") == 6
    study = optuna.load_study(study_name="s", storage=url)
    assert study.metric_names == ["mse", "active_units"]
    # Another sweep file's objectives for the same study: exit 2, one line, as before.
    (tmp_path / "g.toml").write_text("objectives = [\"bits_per_dim\"]\n")
    assert main([*args, "--n-trials", "1", "--space", "g.toml"]) == 2
    err = capsys.readouterr().err
    assert err == ("python -m sweep start: error: study 's' has objectives ['mse', "
                   "'active_units']; this config asks for ['bits_per_dim']\n")
