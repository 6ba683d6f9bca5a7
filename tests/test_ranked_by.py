"""The answer follows the study's objectives: the recommendation ranks by the yardstick when
they name it, else by their first objective in its own direction, and status, the JSON
answer, the study's note and the report name that metric. Hand-made trials, exact picks."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from optuna_dashboard import get_note

from models.config import Config
from sweep import optuna_private
from sweep.answer import recommend as rec_rule
from sweep.answer.status import read_status, render, to_json
from sweep.answer.summary import save_notes
from sweep.runner import confirm
from sweep.space import parse_space
from sweep.storage import settings as study_settings
from sweep.storage import trial_record

LR = {"lr": FloatDistribution(1e-4, 1e-2, log=True)}


def trial(number, *, bpd, mse, au=8, **attrs):
    cfg = Config(lr=1e-4 * (1 + number)).to_dict()
    value = mse if math.isfinite(mse) else 1e9  # Optuna refuses NaN values
    t = create_trial(state=TrialState.COMPLETE, values=[value, au], params={"lr": cfg["lr"]},
                     distributions=LR,
                     user_attrs={"bits_per_dim": bpd, "neg_elbo": 1000 * bpd, "mse": mse,
                                 "active_units": au, "collapsed": au == 0, "seed": 0, **attrs},
                     system_attrs={"constraints": [1.0 - au], **trial_record.system_attrs(
                         config=cfg, history=[{"epoch": 0}])})
    t.number = number
    return t


# Trial 1 has the lowest bits/dim, trial 2 the lowest mse, trial 3 the most active units;
# trial 4 has a lower mse still, but collapsed.
TRIALS = [trial(0, bpd=8.0, mse=0.05, au=2, baseline=True),
          trial(1, bpd=6.0, mse=0.04, au=4, reference="A"),
          trial(2, bpd=7.0, mse=0.01, au=5),
          trial(3, bpd=7.5, mse=0.03, au=30),
          trial(4, bpd=9.0, mse=0.001, au=0)]


@pytest.mark.parametrize(("objectives", "by"), [
    ([], "neg_elbo"), (["bits_per_dim"], "neg_elbo"), (["nats_per_dim"], "neg_elbo"),
    (["mse", "neg_elbo"], "neg_elbo"), (["mse", "bits_per_dim"], "neg_elbo"),
    (["mse", "active_units"], "mse"), (["active_units", "mse"], "active_units"),
    (["bits_per_dim_own"], "bits_per_dim_own"),
])
def test_the_yardstick_when_the_objectives_name_it_else_the_first_objective(objectives, by):
    assert rec_rule.ranked_by(objectives) == by


def test_the_pick_is_the_best_of_that_metric_in_its_own_direction():
    assert rec_rule.recommend(TRIALS).number == 1  # the yardstick: lowest neg_elbo
    assert rec_rule.recommend(TRIALS, "mse").number == 2  # lowest; 4 collapsed
    assert rec_rule.recommend(TRIALS, "active_units").number == 3  # maximized
    assert rec_rule.reference_group(TRIALS, "mse").origin.number == 1
    nan = trial(5, bpd=5.0, mse=math.nan)  # no finite mse: not a candidate by mse
    assert rec_rule.recommend([*TRIALS, nan], "mse").number == 2
    assert rec_rule.recommend([*TRIALS, nan]).number == 5
    # The confirmation runs confirm the best by the same metric.
    searched = [origin.number for origin, _ in confirm.plan(TRIALS, top=1, by="mse")]
    assert searched == [2, 2, 1, 1]


def hand_study(url: str, name: str, objectives: list[str]) -> optuna.Study:
    """A study on ``objectives`` holding TRIALS, with the settings status reads."""
    space = parse_space({"objectives": objectives})
    study = optuna.create_study(study_name=name, storage=url, directions=space.directions())
    study.set_metric_names(list(space.objectives))
    study_settings.save(study, study_settings.Settings(space, goal=len(TRIALS)))
    for t in TRIALS:
        study.add_trial(t)
    return study


@pytest.fixture
def mse_study(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    return hand_study(url, "mse", ["mse", "active_units"]), url


def test_a_study_on_mse_and_active_units_is_answered_by_mse_and_says_so(mse_study):
    study, url = mse_study
    status = read_status(study, url)
    assert status.ranked_by == "mse"
    assert status.recommended.trial == 2 and status.recommended.ranked_by == "mse"
    text = render(status)
    assert ("\nRecommended (lowest mse, the mean over seeds, among complete trials that kept "
            "active units): trial 2; bits/dim 7, neg_elbo 7000 nats, mse 0.01, rate - nats, "
            "5 active units.\n") in text, text
    said = ("Over seeds, recommended trial 2 (runs 2, seeds 0), by the lowest mse: mse 0.0100, "
            "7.0000 bits/dim on validation over 1 seed(s).")
    why = ("It ranks by mse, the study's first objective: bits/dim (the yardstick) is not "
           "among its objectives.")
    assert f"\n{said}\n{why}\n" in text, text
    data = to_json(status)
    assert data["ranked_by"] == {"key": "mse", "direction": "minimize"}
    assert data["recommended"]["trial"] == 2
    assert data["recommended"]["mse"] == {"mean": 0.01, "sd": None, "values": [0.01]}
    save_notes(study)
    note = get_note(study)
    assert said.replace("Over seeds, recommended", "Recommended:") in note, note
    assert why in note
    pick = optuna.Trial(study, optuna_private.trial_id(study.trials[2]))
    assert why in get_note(pick) and "by the lowest mse" in get_note(pick)


def test_a_study_on_the_yardstick_reads_as_before(tmp_path):
    url = f"sqlite:///{tmp_path}/y.db"
    study = hand_study(url, "y", ["active_units", "bits_per_dim"])
    text = render(read_status(study, url))
    assert "\nRecommended (lowest bits/dim, the mean over seeds" in text
    assert "\nOver seeds, recommended trial 1 (runs 1, seeds 0): 6.0000 bits/dim" in text
    assert "It ranks by" not in text
    assert to_json(read_status(study, url))["ranked_by"] == {"key": "bits_per_dim",
                                                             "direction": "minimize"}
