"""The recommendation rule on hand-made trials: lowest yardstick among the complete trials
that kept active units, with its complete config."""

from __future__ import annotations

import math

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from models.config import Config
from sweep.answer.recommend import baseline, changed_fields, recommend, references, trial_config
from sweep.storage import trial_record

DIST = {"kl_schedule": CategoricalDistribution(["constant", "linear"])}


def trial(number: int, state: TrialState = TrialState.COMPLETE, neg_elbo: float = 100.0,
          au: int = 5, history: list | None = None, **attrs) -> optuna.trial.FrozenTrial:
    cfg = Config(kl_schedule="linear", latent_dim=32, max_epochs=3).to_dict()
    value = neg_elbo if math.isfinite(neg_elbo) else 1e9  # Optuna refuses NaN values
    t = create_trial(state=state, values=[value] if state == TrialState.COMPLETE else None,
                     params={"kl_schedule": "linear"}, distributions=DIST,
                     user_attrs={"neg_elbo": neg_elbo, "active_units": au,
                                 "collapsed": au == 0, **attrs},
                     system_attrs=trial_record.system_attrs(
                         config=cfg, history=[{"epoch": 0}] if history is None else history))
    t.number = number
    return t


def test_lowest_neg_elbo_among_complete_trials_that_kept_active_units():
    trials = [
        trial(0, TrialState.PRUNED, neg_elbo=10.0, au=0, baseline=True),  # collapsed, pruned
        trial(1, neg_elbo=20.0, au=0),  # lowest complete, but collapsed
        trial(2, TrialState.PRUNED, neg_elbo=30.0, au=9),  # stopped early by the pruner
        trial(3, neg_elbo=math.nan, au=4),  # no finite yardstick
        trial(4, neg_elbo=55.0, au=2),
        trial(5, neg_elbo=50.0, au=1),  # the answer
        trial(6, TrialState.FAIL, neg_elbo=5.0, au=8),
    ]
    assert recommend(trials).number == 5


def test_ties_go_to_more_active_units_then_the_earlier_trial():
    assert recommend([trial(0, neg_elbo=50.0, au=3), trial(1, neg_elbo=50.0, au=7)]).number == 1
    assert recommend([trial(2, neg_elbo=50.0, au=7), trial(1, neg_elbo=50.0, au=7)]).number == 1


def test_no_candidate_no_recommendation():
    assert recommend([trial(0, au=0), trial(1, TrialState.PRUNED)]) is None
    assert recommend([]) is None


def test_the_answer_carries_every_config_field():
    best = recommend([trial(0, neg_elbo=3.0)])
    cfg = trial_config(best)
    assert cfg == Config(kl_schedule="linear", latent_dim=32, max_epochs=3)
    assert changed_fields(cfg) == {"kl_schedule": "linear", "latent_dim": 32, "max_epochs": 3}


def test_baseline_is_the_marked_trial_that_ran_and_references_one_per_label():
    failed = trial(0, TrialState.FAIL, baseline=True, history=[])
    rerun = trial(3, TrialState.PRUNED, baseline=True)
    refs = [trial(1, reference="free bits"), trial(2, reference="cyclical"),
            trial(4, reference="free bits", history=[])]
    trials = [failed, *refs[:2], rerun, refs[2]]
    assert baseline(trials).number == 3
    assert [t.number for t in references(trials)] == [1, 2]
    assert baseline([trial(0)]) is None
