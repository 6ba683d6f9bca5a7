"""The yardstick's key and unit: bits/dim once a trial has it, nats/dim for continuous data,
the objectives before any trial was scored."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from sweep.answer.yardstick import BITS, NATS, key, unit


def trial(attrs: dict) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(state=TrialState.COMPLETE, value=1.0, user_attrs=attrs)


@pytest.mark.parametrize("trials,objectives,want", [
    ([{"nats_per_dim": 1.0, "bits_per_dim": 9.0}], ["nats_per_dim"], BITS),  # 8-bit data
    ([{"bits_per_dim": 9.0}], [], BITS),  # a study from before nats_per_dim
    ([{}, {"nats_per_dim": 1.0}], ["bits_per_dim"], NATS),  # continuous data
    ([{}], ["nats_per_dim"], NATS),  # nothing scored yet: the objectives say
    ([{}], ["bits_per_dim", "nats_per_dim"], BITS),
    ([], [], BITS),
])
def test_the_key_is_read_from_the_trials_then_the_objectives(trials, objectives, want):
    assert key([trial(a) for a in trials], objectives) == want


def test_units():
    assert (unit(BITS), unit(NATS)) == ("bits/dim", "nats/dim")
