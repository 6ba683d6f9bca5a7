"""The collapse-aware early stop and the pruning callbacks (Optuna's, single objective; the
Pareto rule's, any number of objectives), through real fits of the tiny model."""

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState, create_trial
from optuna_dashboard import get_note

from models.config import CHOICES, Config
from models.data import ImageDataModule
from models.likelihoods import LIKELIHOODS
from models.train import fit
from sweep import optuna_private
from sweep.pruning import ParetoRule
from sweep.runner.callbacks import CollapseStop, OptunaPruning, ParetoPruning, pruning_callback
from sweep.runner.objective import Objective
from sweep.space import parse_space
from sweep.storage import trial_record

OBJ = ("mse", "rate", "active_units")
DIRS = ["minimize", "minimize", "maximize"]


def test_collapsed_run_stops_after_the_warmup_with_a_reason(tiny, images):
    stop = CollapseStop(patience=2)
    result = fit(Config.from_dict(dict(tiny, max_epochs=20)), images=images, callbacks=[stop])
    n = len(result.history)
    assert n < 20  # stopped early, after two collapsed epochs in a row
    assert all(h["active_units"] == 0 for h in result.history[-2:])
    # A constant KL weight has no warm-up to speak of.
    assert stop.state == "PRUNED"
    assert stop.reason == f"posterior collapse: 0 active units at epochs {n - 1}-{n}"


def test_a_collapse_after_a_warmup_is_stopped_once_the_warmup_is_over(tiny, images):
    stop = CollapseStop()
    cfg = Config.from_dict(dict(tiny, max_epochs=5, kl_schedule="linear", kl_warmup_steps=20))
    result = fit(cfg, images=images, callbacks=[stop])
    n = len(result.history)
    assert stop.reason == f"posterior collapse: 0 active units at epoch {n}"
    assert result.history[-1]["step"] >= 20 > result.history[-2]["step"]  # its first chance
    # The trial's note says what came before the collapse (the reason has no room for it).
    from sweep.answer.summary import collapse_note

    note = collapse_note(stop.reason, {"rate": 0.01, "mse": 0.05}, 20).splitlines()
    assert note[0] == f"## {stop.reason}"
    assert note[2].startswith("After the KL warm-up (it ended at step 20): rate 0.01 nats")


def test_no_stop_before_the_warmup_ends(tiny, images):
    stop = CollapseStop()
    cfg = Config.from_dict(dict(tiny, max_epochs=3, kl_schedule="linear", kl_warmup_steps=10_000))
    result = fit(cfg, images=images, callbacks=[stop])
    assert stop.state is None and len(result.history) == 3


# Every registered likelihood, with each decoder output it reads (probabilities or logits)
# and, for the Gaussian, each way of setting its variance.
VARIANTS = [(name, activation, sigma)
            for name in LIKELIHOODS for activation in CHOICES["decoder_activation"]
            for sigma in (CHOICES["sigma_mode"] if name == "gaussian" else ("optimal",))]


@pytest.mark.slow
@pytest.mark.parametrize("likelihood,activation,sigma", VARIANTS)
def test_divergence_is_named_as_divergence_under_every_likelihood(tiny, images, likelihood,
                                                                   activation, sigma):
    # The Bernoulli likelihood raised "all elements of input should be between 0 and 1".
    stop = CollapseStop()
    cfg = Config.from_dict(dict(tiny, max_epochs=3, likelihood=likelihood,
                                decoder_activation=activation, sigma_mode=sigma, lr=1e12))
    result = fit(cfg, images=images, callbacks=[stop])
    steps = result.metrics["steps"]
    assert stop.state == "FAIL" and len(result.history) == 1  # stopped after its first epoch
    assert stop.reason.startswith(f"training diverged (nan) at step {steps}: "), stop.reason
    assert "loss is nan" in stop.reason


def test_pruning_callback_reports_each_epoch_and_obeys_the_pruner(tiny, images):
    class Always(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return trial.last_step is not None and trial.last_step >= 2  # epochs trained

    study = optuna.create_study(pruner=Always())
    trial = study.ask()
    pruning = OptunaPruning(trial, "mse")
    result = fit(Config.from_dict(dict(tiny, max_epochs=5)), images=images, callbacks=[pruning])
    assert pruning.pruned_at == 1 and len(result.history) == 2
    assert sorted(study.trials[0].intermediate_values) == [1, 2]


class PruneFrom(optuna.pruners.BasePruner):
    """Says "prune" at every reported epoch from ``first`` on."""

    def __init__(self, first: int) -> None:
        self.first = first

    def prune(self, study, trial):
        return trial.last_step is not None and trial.last_step >= self.first


def test_optuna_pruner_never_stops_the_final_epoch(tiny, images):
    study = optuna.create_study(pruner=PruneFrom(2))
    trial = study.ask()
    pruning = OptunaPruning(trial, "mse")
    result = fit(Config.from_dict(dict(tiny, max_epochs=2)), images=images, callbacks=[pruning])
    assert pruning.pruned_at is None and pruning.reason is None and len(result.history) == 2
    assert sorted(study.trials[0].intermediate_values) == [1, 2]  # the last one is reported


def test_optuna_pruner_never_stops_the_step_that_reaches_max_steps(tiny, images):
    dm = ImageDataModule(Config.from_dict(dict(tiny)), images)
    dm.setup("fit")
    per_epoch = len(dm.train_dataloader())
    study = optuna.create_study(pruner=PruneFrom(2))
    pruning = OptunaPruning(study.ask(), "mse")
    cfg = Config.from_dict(dict(tiny, max_epochs=5, max_steps=2 * per_epoch))  # ends with epoch 1
    result = fit(cfg, images=images, callbacks=[pruning])
    assert pruning.pruned_at is None and len(result.history) == 2
    assert result.metrics["steps"] == 2 * per_epoch


def history(vector, epochs):
    mse, rate, au = vector
    return [{"epoch": e, "step": e + 1, "kl_weight": 1.0, "mse": mse, "rate": rate,
             "active_units": au} for e in range(epochs)]


def finished(state, vector, epochs):
    values = list(vector) if state == TrialState.COMPLETE else None
    return create_trial(state=state, values=values,
                        system_attrs=trial_record.system_attrs(history=history(vector, epochs)))


# No trained model has mse 0 with 16 active units at rate 0: dominated at every epoch.
PERFECT = (0.0, 0.0, 16)
# mse 1 is the worst possible for pixels in [0, 1]: it dominates nothing that reconstructs.
NO_RECON = (1.0, 0.0, 16)


def study_with(trials):
    study = optuna.create_study(directions=DIRS)
    for t in trials:
        study.add_trial(t)
    return study


def counting_reads(study):
    """Counts the callback's reads of the study's trials."""
    reads = []
    get_trials = study.get_trials

    def counted(*args, **kwargs):
        reads.append(kwargs.get("states"))
        return get_trials(*args, **kwargs)

    study.get_trials = counted
    return reads


@pytest.mark.parametrize("max_epochs,pruned_at", [(5, 1), (2, None)])
def test_pareto_pruner_stops_a_dominated_trial_but_not_on_its_final_epoch(tiny, images,
                                                                          max_epochs, pruned_at):
    # 4 complete + 1 pruned trial reach epoch 1; a trial pruned after epoch 0 and a failed
    # trial are not references at epoch 1 (the failed one: at no epoch).
    study = study_with([finished(TrialState.COMPLETE, PERFECT, 5) for _ in range(4)]
                       + [finished(TrialState.PRUNED, PERFECT, 2),
                          finished(TrialState.PRUNED, PERFECT, 1),
                          finished(TrialState.FAIL, PERFECT, 5)])
    reads = counting_reads(study)
    pruning = ParetoPruning(study.ask(), OBJ, DIRS, ParetoRule(min_trials=5, min_epochs=2))
    result = fit(Config.from_dict(dict(tiny, max_epochs=max_epochs)), images=images,
                 callbacks=[pruning])
    assert pruning.pruned_at == pruned_at
    if pruned_at is None:  # epoch 0: warm-up; epoch 1: final; no read at all
        assert pruning.reason is None and len(result.history) == 2 and reads == []
    else:
        assert len(result.history) == 2 and len(reads) == 1
        assert pruning.reason == ("dominated by 5 of 5 earlier trials at epoch 1 "
                                  "(mse, rate, active_units)")


def test_pareto_pruner_keeps_a_trial_that_is_not_dominated(tiny, images):
    study = study_with([finished(TrialState.COMPLETE, NO_RECON, 3) for _ in range(5)])
    reads = counting_reads(study)
    pruning = ParetoPruning(study.ask(), OBJ, DIRS, ParetoRule(min_trials=5, min_epochs=1,
                                                               fraction=0.2))
    result = fit(Config.from_dict(dict(tiny, max_epochs=3)), images=images, callbacks=[pruning])
    assert pruning.reason is None and len(result.history) == 3
    assert len(reads) == 2  # one read after epochs 0 and 1, none after the final epoch 2


def test_pareto_pruner_waits_for_enough_trials(tiny, images):
    study = study_with([finished(TrialState.COMPLETE, PERFECT, 3) for _ in range(4)])
    pruning = ParetoPruning(study.ask(), OBJ, DIRS, ParetoRule(min_trials=5, min_epochs=1))
    result = fit(Config.from_dict(dict(tiny, max_epochs=3)), images=images, callbacks=[pruning])
    assert pruning.reason is None and len(result.history) == 3


@pytest.mark.parametrize("toml,kind", [
    ({"objectives": ["mse"]}, OptunaPruning),
    ({"objectives": ["mse"], "pruner": "none"}, OptunaPruning),  # reports, prunes nothing
    ({"objectives": ["mse"], "pruner": "pareto"}, ParetoPruning),
    ({"objectives": list(OBJ)}, ParetoPruning),
    ({"objectives": list(OBJ), "pruner": "none"}, type(None)),
])
def test_the_space_picks_the_pruning_callback(toml, kind):
    trial = optuna.create_study(directions=["minimize"] * len(toml["objectives"])).ask()
    assert type(pruning_callback(trial, parse_space(toml))) is kind


@pytest.mark.parametrize("warmup", [100_000, None], ids=["pareto", "collapse-first"])
def test_objective_records_why_the_pareto_pruner_pruned(tmp_path, tiny, images, warmup):
    # The tiny model collapses at once with the constant KL weight; a long linear warm-up
    # keeps the collapse stop out of the way.
    schedule = {"kl_schedule": "linear", "kl_warmup_steps": warmup} if warmup else {}
    space = parse_space({"objectives": list(OBJ), "search": {},
                         "fixed": {**tiny, "max_epochs": 4, **schedule},
                         "pruner": {"min_trials": 3, "min_epochs": 1}})
    study = study_with([finished(TrialState.COMPLETE, PERFECT, 4) for _ in range(3)])
    repeat = finished(TrialState.COMPLETE, PERFECT, 4)  # its history is its origin's
    repeat.set_user_attr("repeat_of", 0)
    study.add_trial(repeat)  # counted once, through its origin: still "3 of 3"
    objective = Objective(space, images,
                          FileSystemArtifactStore(str(tmp_path)), tmp_path / "ckpt")
    study.optimize(objective, n_trials=1)
    trial = study.trials[-1]
    assert len(trial_record.history(trial)) == 1  # a reference for later trials' epoch 0
    if warmup:
        assert trial.state == TrialState.PRUNED
        assert trial.user_attrs["pruned_epoch"] == 0
        assert trial.user_attrs["pruned_reason"] == ("dominated by 3 of 3 earlier trials at "
                                                     "epoch 0 (mse, rate, active_units)")
    else:  # the collapse stop is checked first: COMPLETE with its values, infeasible
        assert trial.state == TrialState.COMPLETE and trial.constraints == {"0": 1.0}
        reason = trial.user_attrs["collapse_reason"]
        assert reason == "posterior collapse: 0 active units at epoch 1"
        assert "pruned_epoch" not in trial.user_attrs
        # Marked where a dashboard user looks: the first line of the trial's note.
        note = get_note(optuna.Trial(study, optuna_private.trial_id(trial))).splitlines()
        assert note[0] == f"## {reason}"
        assert note[2].startswith("With a constant KL weight (no warm-up): rate ")
