"""The progress line: what counts toward the goal, and how far running trials are."""

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from models.config import Config
from models.train import fit
from sweep.logs import printed
from sweep.runner.callbacks import EpochProgress
from sweep.runner.progress import Progress, no_result, results


def test_a_failed_trial_that_was_rerun_counts_once():
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    failed = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study.tell(failed, state=TrialState.FAIL)
    assert results(study.trials) == 2
    RetryHeartbeatStaleTrialCallback(max_retry=3)(study, study.trials[failed.number])
    assert results(study.trials) == 1  # the failure now counts through its queued re-run
    assert not Progress(study, goal=1).covered()  # a queued re-run is still to do
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                               TrialState.COMPLETE]
    assert results(study.trials) == 2
    assert Progress(study, goal=2).covered()


def test_trials_running_on_other_workers_count_toward_the_goal():
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    study.ask()  # another worker's trial, still running
    assert Progress(study, goal=2).covered()  # no third trial: that would overshoot
    assert not Progress(study, goal=3).covered()


def test_the_line_shows_how_far_each_running_trial_is(capsys):
    study = optuna.create_study()
    running = study.ask()
    running.set_user_attr("progress", "2/5 epochs")
    study.ask()  # running, no epoch finished yet
    progress = Progress(study, goal=3)
    assert progress.counts() == ("0/3 done: 0 complete, 0 pruned, 0 failed, "
                                 "2 running (#0 2/5 epochs), 0 queued")
    with printed():  # as the command line shows the sweep's log
        progress.poll()
        progress.poll()  # unchanged: not printed again
    progress.poll()  # nothing prints outside the command line
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].endswith("queued | best: none yet")


def test_epoch_progress_writes_each_epoch_to_the_trial(tiny, images):
    study = optuna.create_study()
    trial = study.ask()
    seen: list[str] = []
    callback = EpochProgress(trial, then=lambda: seen.append(
        study.trials[trial.number].user_attrs["progress"]))
    fit(Config.from_dict(dict(tiny, max_epochs=2)), images=images, callbacks=[callback])
    assert seen == ["1/2 epochs", "2/2 epochs"]


def test_a_collapsed_trial_is_reported_with_its_value_and_why_it_is_infeasible(capsys):
    study = optuna.create_study(study_name="s")
    study.set_metric_names(["bits_per_dim"])
    trial = study.ask()
    trial.set_user_attr("collapse_reason", "posterior collapse (0 active units)")
    study.tell(trial, 7.875)
    with printed():
        Progress(study, goal=2).report(study, study.trials[0])
    first = capsys.readouterr().out.splitlines()[0]
    assert first == ("trial 0 COMPLETE: bits_per_dim=7.875; infeasible: posterior collapse "
                     "(0 active units)")


def _finished(study, state, reason=None):
    trial = study.ask()
    if reason:
        trial.set_user_attr("fail_reason", reason)
    study.tell(trial, 1.0 if state == TrialState.COMPLETE else None, state=state)


def test_no_result_counts_the_failures_and_names_the_most_common_reason():
    study = optuna.create_study()
    for reason in ("training diverged (nan) at step 14: training loss is nan",
                   "out of memory: CUDA out of memory",
                   "training diverged (nan) at step 28: validation neg_elbo is nan"):
        _finished(study, TrialState.FAIL, reason)
    _finished(study, TrialState.PRUNED)
    assert no_result(study.trials) == (
        "no COMPLETE trial: 3 failed, most often training diverged (nan) (2 of 3; the last: "
        "training diverged (nan) at step 28: validation neg_elbo is nan), 1 pruned")
    _finished(study, TrialState.COMPLETE)
    assert no_result(study.trials) is None
    assert no_result([]) == "no COMPLETE trial: 0 failed"
