"""Trials display well in Optuna's own tools: every user attr is one short line as the
dashboard shows it, a summary first, and the long values (config, history, kl_per_dim,
provenance) come back from the database through ``sweep.storage.trial_record`` and from
each trial's ``trial.json`` artifact alike."""

import json

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta
from optuna.trial import TrialState, create_trial

from sweep import optuna_private
from sweep.answer.references import REFERENCES
from sweep.runner.objective import Objective
from sweep.runner.requeue import Requeue
from sweep.space import parse_space
from sweep.storage import trial_record

LATENT = 64  # kl_per_dim alone would be ~1,300 characters as a user attr


def test_every_user_attr_is_short_and_the_long_values_round_trip(tmp_path, tiny, images):
    # A KL warm-up longer than the run: no collapse stop, so every trial has two epochs.
    space = parse_space({"objectives": ["mse", "rate"], "pruner": "none",
                         "search": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}},
                         "fixed": {**tiny, "latent_dim": LATENT, "max_epochs": 2,
                                   "kl_schedule": "linear", "kl_warmup_steps": 100_000}})
    storage = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="attrs", storage=storage,
                                directions=["minimize", "minimize"])
    # Labelled trials carry the longest labels a study writes (stage, reference).
    study.enqueue_trial({"lr": 1e-3}, user_attrs={"baseline": True})
    study.enqueue_trial({"lr": 2e-3}, user_attrs={"reference": REFERENCES[0].label})
    (tmp_path / "artifacts").mkdir()
    store = FileSystemArtifactStore(str(tmp_path / "artifacts"))
    study.optimize(Objective(space, images, store, tmp_path / "ckpt"), n_trials=3)

    trials = optuna.load_study(study_name="attrs", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    long = {(t.number, k): n for t in trials for k, v in t.user_attrs.items()
            if (n := trial_record.line_length(k, v)) > trial_record.LINE_LIMIT}
    assert long == {}
    # The line shown first says what tells most; the provenance is kept whole, out of view.
    who = ("baseline (the seed)", "calibrated decoder", "search")
    assert [t.user_attrs[trial_record.SUMMARY] for t in trials] == [
        f"{w}: {t.user_attrs['bits_per_dim']:.4g} bits/dim, "
        + ("collapsed" if t.user_attrs["collapsed"] else
           f"{t.user_attrs['active_units']} active units")
        for w, t in zip(who, trials, strict=True)]
    assert min(trial_record.SUMMARY, *(k for t in trials for k in t.user_attrs)) == \
        trial_record.SUMMARY  # first in key order: how SQLite returns them to the dashboard
    for t in trials:
        assert not {"config", "history", "kl_per_dim"} & set(t.user_attrs), t.number
        config, history = trial_record.config(t), trial_record.history(t)
        kl = trial_record.kl_per_dim(t)
        assert config is not None and config["lr"] == t.params["lr"]
        assert config["latent_dim"] == LATENT and config["seed"] == t.user_attrs["seed"]
        assert [h["epoch"] for h in history] == [0, 1]
        assert len(kl) == LATENT and sum(kl) == pytest.approx(t.user_attrs["rate"], rel=1e-4)
        (meta,) = [m for m in get_all_artifact_meta(t, storage=optuna_private.study_storage(study))
                   if m.filename == "trial.json"]
        path = tmp_path / f"trial-{t.number}.json"
        download_artifact(artifact_store=store, artifact_id=meta.artifact_id, file_path=str(path))
        document = json.loads(path.read_text())
        assert document["config"] == config and document["history"] == history
        assert document["metrics"]["kl_per_dim"] == kl
        assert document["seed"] == config["seed"] and document["threads"] >= 1
        assert document["provenance"]["versions"]["optuna"] == optuna.__version__
        assert trial_record.provenance(t) == document["provenance"]
        assert t.user_attrs["git_sha"] == document["provenance"]["git_sha"]


def test_a_requeued_trial_starts_without_the_failed_trials_record():
    study = optuna.create_study()
    failed = create_trial(state=TrialState.FAIL, system_attrs={
        **trial_record.system_attrs(config={"lr": 1.0}, history=[{"epoch": 0}],
                                    kl_per_dim=[0.5]), "kept": 1})
    study.add_trial(failed)
    Requeue("test")(study, study.trials[0])
    rerun = study.trials[1]
    assert rerun.state == TrialState.WAITING and rerun.system_attrs["kept"] == 1
    assert trial_record.config(rerun) is None and trial_record.history(rerun) == []
    assert trial_record.kl_per_dim(rerun) == []


def test_a_long_reason_is_clipped_to_a_short_attr():
    err = OSError("No space left on device: " + "/very/deep/path" * 40)
    reason = trial_record.error_reason(err)
    assert reason.startswith("OSError: No space left on device") and reason.endswith("...")
    assert trial_record.line_length("artifacts_missing", reason) <= trial_record.LINE_LIMIT
    path = "/x" * 200 + "/trial-0/last.ckpt"
    assert trial_record.clip(path, tail=True).endswith("/trial-0/last.ckpt")
    assert len(trial_record.clip(path, tail=True)) == trial_record.LINE_LIMIT - 20
    assert trial_record.clip("short") == "short"


def test_a_reason_names_no_absolute_path_of_this_machine():
    err = OSError(28, "No space left on device")
    err.filename = "/mnt/shared/vae-sweep/checkpoints/s/trial-3/last.ckpt"
    assert trial_record.first_line(err) == (
        "[Errno 28] No space left on device: '.../trial-3/last.ckpt'")
    reason = trial_record.error_reason(err)  # that, clipped to a dashboard line
    assert reason.startswith("OSError: [Errno 28] No space") and "/mnt" not in reason
    assert trial_record.first_line(ValueError("\n  bad\nsecond")) == "bad"
