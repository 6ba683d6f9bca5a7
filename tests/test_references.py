"""The literature's fixes as reference trials: each expressed in the study's space, or
skipped with a reason; enqueued labelled, within the trial budget."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import FixedTrial

from models.config import Config
from sweep.answer.references import REFERENCES, enqueue_references, reference_params
from sweep.space import baseline_params, fix, load_space, parse_space, suggest


def ref(word: str) -> str:
    """The label of the one reference whose label names ``word``."""
    (label,) = [r.label for r in REFERENCES if word in r.label]
    return label


def test_the_strongest_fix_comes_first_so_a_small_budget_still_runs_it():
    """The calibrated decoder wins the README's CIFAR-10 walkthrough: with room for one
    reference, it is the one enqueued."""
    space = fix(load_space(None), {"latent_dim": 64})
    study = optuna.create_study(directions=space.directions())
    notes = enqueue_references(study, space, room=1)
    assert [t.user_attrs["reference"] for t in study.get_trials()] == [ref("calibrated")]
    assert notes == [f"reference skipped, no room in n_trials: {ref(w)}"
                     for w in ("free bits", "cyclical", "warm-up")]


@pytest.mark.parametrize("ref", REFERENCES, ids=lambda r: r.label.split(",")[0])
def test_every_reference_is_the_seed_plus_its_fix_in_the_default_space(ref):
    space = fix(load_space(None), {"latent_dim": 64, "max_epochs": 2})
    params = reference_params(space, ref)
    assert isinstance(params, dict)
    cfg = suggest(FixedTrial(params), space)
    expected = Config(latent_dim=64, max_epochs=2).replace(**ref.changes)
    assert cfg == expected


def test_a_reference_the_space_cannot_express_is_skipped_with_its_reason():
    space = parse_space({"fixed": {"likelihood": "mse"},
                         "search": {"recon_reduction": {"choices": ["sum", "mean"]},
                                    "kl_schedule": {"choices": ["constant", "linear"]},
                                    "kl_warmup_steps": {"low": 1, "high": 20}}})
    reasons = {r.label: reference_params(space, r) for r in REFERENCES}
    assert "likelihood is fixed at 'mse'" in reasons[ref("calibrated")]
    assert "free_bits is fixed at 0.0" in reasons[ref("free bits")]
    assert "kl_warmup_steps=1000 is outside search.kl_warmup_steps" in reasons[ref("warm-up")]


def test_enqueue_labels_them_stays_within_room_and_does_not_repeat():
    space = fix(load_space(None), {"latent_dim": 64})
    study = optuna.create_study(directions=space.directions())
    notes = enqueue_references(study, space, room=3)
    waiting = study.get_trials()
    assert [t.user_attrs["reference"] for t in waiting] == [r.label for r in REFERENCES[:3]]
    assert notes == [f"reference skipped, no room in n_trials: {REFERENCES[3].label}"]
    assert waiting[1].system_attrs["fixed_params"]["free_bits"] == 0.25
    enqueue_references(study, space, room=10)  # a second start adds only the missing one
    assert [t.user_attrs["reference"] for t in study.get_trials()][3:] == [REFERENCES[3].label]


def test_a_reference_the_baseline_already_runs_is_not_run_twice():
    """[fixed] that applies the calibrated decoder makes the baseline that very config."""
    space = fix(load_space(None), {"likelihood": "gaussian", "sigma_mode": "optimal",
                                   "recon_reduction": "sum"})
    study = optuna.create_study(directions=space.directions())
    study.enqueue_trial(baseline_params(space), user_attrs={"baseline": True})
    notes = enqueue_references(study, space, room=10)
    labels = [t.user_attrs.get("reference") for t in study.get_trials()]
    assert labels == [None, ref("free bits"), ref("cyclical"), ref("warm-up")]
    assert notes == [f"reference skipped, trial 0 already runs its config: {ref('calibrated')}"]
