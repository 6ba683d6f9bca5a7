"""A configuration proposed again takes the earlier finished trial's values, marked as a
repeat, and is not trained again; the baseline, the references and the confirmation runs
always train."""

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState

import sweep.runner.objective
from sweep.optuna_private import CONSTRAINTS_KEY
from sweep.runner import confirm
from sweep.runner.objective import Objective
from sweep.space import baseline_params, parse_space
from sweep.storage import trial_record


def space_of(tiny):
    # One value to search: the sampler can only propose the configuration it has run.
    return parse_space({"objectives": ["mse", "rate"], "pruner": "none",
                        "search": {"kl_weight": {"choices": [0.5]}},
                        "fixed": {**tiny, "max_epochs": 1, "kl_schedule": "linear",
                                  "kl_warmup_steps": 100_000}})


@pytest.fixture
def counted(monkeypatch):
    """The configs ``fit`` trained, in order."""
    fit, trained = sweep.runner.objective.fit, []

    def counting(cfg, **kw):
        trained.append(cfg)
        return fit(cfg, **kw)

    monkeypatch.setattr(sweep.runner.objective, "fit", counting)
    return trained


def test_a_repeated_configuration_takes_the_finished_trials_values(tmp_path, tiny, images,
                                                                    counted):
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.optimize(Objective(space_of(tiny), images, FileSystemArtifactStore(str(tmp_path)),
                             tmp_path / "ckpt"), n_trials=3)
    first, *again = study.trials
    assert len(counted) == 1  # trained once
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    for t in again:
        assert t.values == first.values and t.user_attrs["repeat_of"] == 0
        assert t.user_attrs["wall_time_s"] == 0.0 and first.user_attrs["wall_time_s"] > 0
        for key in ("mse", "bits_per_dim", "active_units", "seed", "stage"):
            assert t.user_attrs[key] == first.user_attrs[key], key
        assert trial_record.config(t) == trial_record.config(first)
        assert trial_record.history(t) == trial_record.history(first)
        assert t.system_attrs[CONSTRAINTS_KEY] == first.system_attrs[CONSTRAINTS_KEY]
    assert "repeat_of" not in first.user_attrs


@pytest.mark.slow
def test_the_stages_the_answer_needs_are_trained_even_when_repeated(tmp_path, tiny, images,
                                                                    counted):
    space = space_of(tiny)
    study = optuna.create_study(directions=["minimize", "minimize"])
    objective = Objective(space, images, FileSystemArtifactStore(str(tmp_path)),
                          tmp_path / "ckpt")
    study.optimize(objective, n_trials=1)
    first = study.trials[0]
    seed = trial_record.config(first)["seed"]
    # Its configuration again as a confirmation run (its own seed, so the very same config),
    # and as the baseline and a reference would be labelled.
    study.add_trial(confirm.confirmation_trial(first, seed, space.to_dict()))
    study.enqueue_trial(baseline_params(space) | first.params, user_attrs={"baseline": True})
    study.enqueue_trial(first.params, user_attrs={"reference": "KL warm-up"})
    study.optimize(objective, n_trials=3)
    assert len(counted) == 4
    stages = [t.user_attrs["stage"] for t in study.trials[1:]]
    assert stages == ["confirm", "baseline", "reference"]
    for t in study.trials[1:]:
        assert trial_record.config(t) == trial_record.config(first)
        assert "repeat_of" not in t.user_attrs and t.user_attrs["wall_time_s"] > 0
