"""The collapse-aware early stop and the single-objective pruning callback."""

import optuna

from models.config import Config
from models.train import fit
from sweep.callbacks import CollapseStop, OptunaPruning


def test_collapsed_run_stops_after_the_warmup_with_a_reason(tiny, images):
    stop = CollapseStop(patience=2)
    result = fit(Config(**tiny, max_epochs=20), images=images, callbacks=[stop])
    assert stop.state == "PRUNED" and "posterior collapse" in stop.reason
    assert len(result.history) < 20  # stopped early, after two collapsed epochs in a row
    assert all(h["active_units"] == 0 for h in result.history[-2:])


def test_no_stop_before_the_warmup_ends(tiny, images):
    stop = CollapseStop()
    cfg = Config(**tiny, max_epochs=3, kl_schedule="linear", kl_warmup_steps=10_000)
    result = fit(cfg, images=images, callbacks=[stop])
    assert stop.state is None and len(result.history) == 3


def test_non_finite_loss_fails_the_run(tiny, images):
    stop = CollapseStop()
    cfg = Config(**tiny, max_epochs=3, likelihood="gaussian", sigma_mode="learned", lr=1e9)
    fit(cfg, images=images, callbacks=[stop])
    assert stop.state == "FAIL" and "loss is" in stop.reason


def test_pruning_callback_reports_each_epoch_and_obeys_the_pruner(tiny, images):
    class Always(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return trial.last_step is not None and trial.last_step >= 1

    study = optuna.create_study(pruner=Always())
    trial = study.ask()
    pruning = OptunaPruning(trial, "mse")
    result = fit(Config(**tiny, max_epochs=5), images=images, callbacks=[pruning])
    assert pruning.pruned_at == 1 and len(result.history) == 2
    assert sorted(study.trials[0].intermediate_values) == [0, 1]
