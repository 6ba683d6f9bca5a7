"""The focus stage's window, the confirmation plan and the rule over seeds, on hand-made
trials: exact windows, exact (trial, seed) pairs, means, SDs and paired gaps."""

from __future__ import annotations

import dataclasses
import statistics

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from models.config import Config
from sweep.answer.recommend import gap, recommend, recommend_group, reference_group
from sweep.runner import confirm
from sweep.runner.stages import focus_space
from sweep.space import fix, load_space, parse_space
from sweep.storage import trial_record

CALIBRATED = Config(recon_reduction="sum", likelihood="gaussian", sigma_mode="optimal")


def test_the_focus_space_fixes_the_family_and_windows_the_continuous_knobs():
    space = fix(load_space(None), {"max_epochs": 3})
    focused = focus_space(space, CALIBRATED)
    assert focused.params["lr"] == {"low": pytest.approx(1e-3 / 3), "high": pytest.approx(3e-3),
                                    "log": True}
    # The latent window (x/÷16 around 256) stops at the space's own range, 16 to 512.
    assert focused.params["latent_dim"] == {"low": 16, "high": 512, "log": True}
    assert focused.params["batch_size"] == {"low": 20, "high": 80, "log": True}
    assert set(focused.params) == {"lr", "latent_dim", "batch_size"}  # constant KL weight
    for field in ("likelihood", "sigma_mode", "recon_reduction", "kl_schedule", "free_bits"):
        assert focused.fixed[field] == getattr(CALIBRATED, field)
    assert focused.fixed["max_epochs"] == 3
    cyclical = focus_space(space, Config(kl_schedule="cyclical", kl_cycles=4, kl_ratio=0.5))
    assert cyclical.params["kl_cycles"] == {"low": 2, "high": 6, "log": False}
    assert cyclical.params["kl_ratio"] == {"low": 0.25, "high": 0.75, "log": False}
    # A field the user fixed is never searched, and free bits keeps the space's choices
    # (Optuna refuses a categorical whose choices change within a study).
    mine = focus_space(fix(space, {"lr": 2e-3}), Config(free_bits=0.25))
    assert "lr" not in mine.params and mine.fixed["lr"] == 2e-3
    assert mine.params["free_bits"] == space.params["free_bits"]
    # A range the user narrowed bounds the window too.
    narrow = parse_space({"search": {"latent_dim": {"low": 200, "high": 300},
                                     "lr": {"low": 1e-3, "high": 1.5e-3, "log": True},
                                     "kl_schedule": {"choices": ["constant"]}},
                          "strategy": "focus"})
    windowed = focus_space(narrow, Config())
    assert windowed.params["latent_dim"] == {"low": 200, "high": 300, "log": True}
    assert windowed.params["lr"] == {"low": 1e-3, "high": 1.5e-3, "log": True}


LR = {"lr": FloatDistribution(1e-4, 1e-2, log=True)}


def trial(number, bpd, au=8, seed=0, **attrs):
    cfg = Config(lr=1e-4 * (1 + number), seed=seed).to_dict()
    t = create_trial(state=TrialState.COMPLETE, value=bpd, params={"lr": cfg["lr"]},
                     distributions=LR,
                     user_attrs={"bits_per_dim": bpd, "neg_elbo": 1000 * bpd, "seed": seed,
                                 "active_units": au, "collapsed": au == 0, **attrs},
                     system_attrs={"constraints": [1.0 - au], **trial_record.system_attrs(
                         config=cfg, history=[{"epoch": 0}])})
    t.number = number
    return t


def study_of(trials):
    study = optuna.create_study()
    for t in trials:
        study.add_trial(t)
    return study


TRIALS = [trial(0, 8.0, au=0, baseline=True), trial(1, 7.0, reference="A"),
          trial(2, 7.2, reference="B"), trial(3, 6.8), trial(4, 6.9), trial(5, 6.95),
          trial(6, 6.0, au=0)]


def test_a_collapsed_trial_with_the_lowest_value_is_never_best():
    study = study_of(TRIALS)  # trial 6 has the lowest value and no active unit
    assert study.best_trial.number == 3
    assert recommend(study.trials).number == 3


def test_the_plan_confirms_the_top_configurations_and_the_best_reference():
    plan = confirm.plan(TRIALS, top=2)
    assert [(t.number, s) for t, s in plan] == [(3, 1), (3, 2), (4, 1), (4, 2), (1, 1), (1, 2)]
    queued = [trial(10 + i, 7.0, seed=s, confirm_of=t.number) for i, (t, s) in enumerate(plan)]
    assert confirm.plan([*TRIALS, *queued], top=2) == []  # once
    assert confirm.plan(TRIALS, top=0) == []
    assert confirm.plan(TRIALS[:3], top=2) == []  # the sampler proposed nothing to confirm


def test_a_queued_confirmation_run_is_the_same_config_with_another_seed():
    space = fix(load_space(None), {"max_epochs": 2}).to_dict()
    run = confirm.confirmation_trial(TRIALS[3], 2, space)
    assert run.state == TrialState.WAITING
    assert run.user_attrs == {"stage": "confirm", "confirm_of": 3, "seed": 2}
    assert run.system_attrs["fixed_params"] == TRIALS[3].params
    assert run.system_attrs["vae_sweep_stage"]["space"]["fixed"]["seed"] == 2


def test_the_pick_is_the_best_mean_over_the_most_seeds_and_a_collapsed_seed_rules_it_out():
    runs = [trial(10, 6.9, seed=1, confirm_of=3), trial(11, 6.7, seed=2, confirm_of=3),
            trial(12, 6.8, seed=1, confirm_of=4), trial(13, 6.5, seed=2, au=0, confirm_of=4),
            trial(14, 7.1, seed=1, confirm_of=1), trial(15, 7.05, seed=2, confirm_of=1)]
    trials = [*TRIALS, *runs]
    pick = recommend_group(trials)
    assert pick.origin.number == 3 and [t.number for t in pick.runs] == [3, 10, 11]
    assert pick.mean() == pytest.approx(statistics.fmean([6.8, 6.9, 6.7]))
    assert pick.sd() == pytest.approx(0.1)
    assert recommend(trials).number == 3  # trial 4's seed 2 collapsed: not a reliable fix
    ref = reference_group(trials)
    assert ref.origin.number == 1 and ref.seeds == [0, 1, 2]
    mean, sd, n = gap(ref, pick)
    diffs = [7.0 - 6.8, 7.1 - 6.9, 7.05 - 6.7]  # paired seed by seed
    assert (mean, sd, n) == (pytest.approx(statistics.fmean(diffs)),
                             pytest.approx(statistics.stdev(diffs)), 3)
    # Three seeds beat one: a lone run of 6.6 does not displace the confirmed pick.
    assert recommend_group([*trials, trial(16, 6.6)]).origin.number == 3


@pytest.mark.parametrize("n_trials,references,says", [
    (5, True, "no re-runs over seeds, so the answer rests on 1 seed: they confirm the search's "
              "best, and these 5 trials are the seed and the fixes (--n-trials 6 or more leaves "
              "room for them)"),
    (3, True, "(--n-trials 6 or more"),  # the 2 fixes that fit are skipped, not the search
    (6, True, "; then the 3 best and the best reference re-run with 2 more seeds each"),
    (1, False, "(--n-trials 2 or more"),
    (2, False, "; then the 3 best"),
])
def test_the_start_line_says_at_once_whether_the_budget_leaves_room_to_confirm(
        tmp_path, caplog, n_trials, references, says):
    import sweep

    with caplog.at_level("INFO", logger="sweep"):
        sweep.start(study_name="s", storage=f"sqlite:///{tmp_path}/s.db", n_trials=n_trials,
                    fixed={"dataset": "synthetic"}, references=references, run=False)
    (line,) = [r.getMessage() for r in caplog.records if "trial(s) to run" in r.getMessage()]
    assert says in line, line
    # What the line promises is what confirm.plan does once the budget is spent: the labelled
    # trials leave room for a searched one exactly when the line promises re-runs.
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")
    labelled = len(study.trials)  # the enqueued baseline and references, nothing else yet
    assert (n_trials > labelled) == ("then the 3 best" in line)


def test_the_answer_says_on_how_many_seeds_it_rests_and_why_only_one():
    from sweep.answer.summary import lines, summary
    from sweep.storage import settings as study_settings

    runs = [trial(10, 6.9, seed=1, confirm_of=3), trial(11, 6.7, seed=2, confirm_of=3)]
    labelled = TRIALS[:3]  # the seed and two fixes: nothing the sampler proposed
    for trials, confirm_n, says in (
            (labelled, 3, "The answer rests on 1 seed: re-runs over seeds confirm the search's "
                          "best, and the 3 trials of this study are the seed and the fixes (a "
                          "study of 4 trials or more runs them)."),
            (TRIALS, 3, "The answer rests on 1 seed: the re-runs over seeds come once the "
                        "budget is spent."),
            (TRIALS, 0, "The answer rests on 1 seed: its configurations are not re-run over "
                        "seeds (confirm = 0)."),
            ([*TRIALS, *runs], 3, "The answer rests on 3 seeds.")):
        study = study_of(trials)
        space = dataclasses.replace(load_space(None), confirm=confirm_n)
        study_settings.save(study, study_settings.Settings(space, goal=len(trials)))
        data = summary(study)
        assert data["confirmation"]["runs"] == (2 if trials[-1] is runs[-1] else 0)
        assert says in lines(data), lines(data)
