"""The answer's margin over the best reference, paired over seeds, ± its standard error, on
a study built by hand in a SQLite file: the figure in status, the study note and the report
is the one computed here by hand."""

from __future__ import annotations

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from optuna_dashboard import get_note

from models.config import Config
from sweep import optuna_private
from sweep.answer import margin, report, status, summary
from sweep.space import parse_space
from sweep.storage import settings as study_settings
from sweep.storage import trial_record

DIST = {"kl_schedule": CategoricalDistribution(["constant", "linear", "cyclical"])}
REFERENCE = [7.0, 7.2, 7.1]  # bits/dim on seeds 0, 1, 2
PICK = [6.8, 7.0, 6.95]
# Differences pick - reference: -0.2, -0.2, -0.15. Mean -0.55 / 3; deviations from it
# -1/60, -1/60, +2/60, so the sample variance is (6 / 3600) / 2 = 1/1200 and the
# standard error sqrt(1/1200 / 3) = 1/60.
MEAN, SE = -0.55 / 3, 1 / 60


def add(study: optuna.Study, schedule: str, bits: float, seed: int, **attrs) -> None:
    study.add_trial(create_trial(
        state=TrialState.COMPLETE, values=[bits], params={"kl_schedule": schedule},
        distributions=DIST,
        user_attrs={"bits_per_dim": bits, "neg_elbo": bits * 2129.0, "active_units": 8,
                    "seed": seed, **attrs},
        system_attrs=trial_record.system_attrs(
            config=Config(kl_schedule=schedule, seed=seed).to_dict(),
            history=[{"epoch": 0, "rate": 30.0, "mse": 0.01, "active_units": 8}])))


def make_study(url: str, seeds: int = 3) -> optuna.Study:
    """Trial 0 the reference fix, 1 the searched pick, then each one's confirmation runs."""
    study = optuna.create_study(study_name="hand", storage=url, direction="minimize")
    study.set_metric_names(["bits_per_dim"])
    study_settings.save(study, study_settings.Settings(
        space=parse_space({"objectives": ["bits_per_dim"]}), goal=2))
    add(study, "linear", REFERENCE[0], 0, reference="KL warm-up")
    add(study, "cyclical", PICK[0], 0)
    for s in range(1, seeds):
        add(study, "linear", REFERENCE[s], s, confirm_of=0, stage="confirm")
        add(study, "cyclical", PICK[s], s, confirm_of=1, stage="confirm")
    return study


def test_the_margin_is_the_mean_paired_difference_with_its_standard_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'hand.db'}"
    study = make_study(url)
    data = summary.summary(study)
    assert data["recommended"]["trial"] == 1 and data["best_reference"]["trial"] == 0
    m = data["margin"]
    assert m["seeds"] == [0, 1, 2]
    assert m["pick_minus_reference"] == pytest.approx(MEAN)
    assert m["se"] == pytest.approx(SE)
    said = ("beats the best fix by 0.183 ± 0.017 bits/dim (paired over 3 seeds; "
            "± one standard error, sd/sqrt(n))")
    assert margin.text(m, "bits/dim") == said
    assert f"Margin: the pick {said}." in status.status(url, "hand")
    summary.save_notes(study, data)  # the study's note and the pick's, as the dashboard shows
    assert f"Margin: the pick {said}." in get_note(study)
    pick = optuna.Trial(study, optuna_private.trial_id(study.trials[1]))
    assert f"Margin: the pick {said}." in get_note(pick)
    page = report.build(study, optuna_private.study_storage(study),
                        FileSystemArtifactStore(str(tmp_path)), tmp_path / "out").read_text()
    assert f"The pick {said}." in page  # the report's seeds section


def test_with_one_shared_seed_there_is_no_plus_minus(tmp_path):
    data = summary.summary(make_study(f"sqlite:///{tmp_path / 'hand.db'}", seeds=1))
    m = data["margin"]
    assert m["seeds"] == [0] and m["se"] is None
    assert m["pick_minus_reference"] == pytest.approx(PICK[0] - REFERENCE[0])
    assert margin.text(m, "bits/dim") == "beats the best fix by 0.2000 bits/dim (1 seed)"


def test_a_pick_worse_than_the_reference_trails_it():
    m = {"pick_minus_reference": 0.05, "se": 0.004, "seeds": [0, 1]}
    assert margin.text(m, "nats/dim").startswith("trails the best fix by 0.0500 ± 0.0040")
