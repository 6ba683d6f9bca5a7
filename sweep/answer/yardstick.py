"""The yardstick's key and unit: bits/dim for 8-bit data, nats/dim for continuous data.

Every trial is scored by one Gaussian rule (``models.metrics.yardstick_nll``), ``neg_elbo``
nats per example. The answer reads it per dimension: ``bits_per_dim`` for 8-bit data (with
the log2(255) term of the 8-bit levels, the unit of the image literature), ``nats_per_dim``
for continuous (float, ``npy:``) data, which has no levels and no ``bits_per_dim``. This
module is the one place that says which: status, the report, the JSON answer, the
dashboard's notes and the progress line ask it rather than name ``bits_per_dim``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import optuna
from optuna.trial import FrozenTrial

BITS = "bits_per_dim"
NATS = "nats_per_dim"
UNITS = {BITS: "bits/dim", NATS: "nats/dim"}


def key(trials: Iterable[FrozenTrial], objectives: Sequence[str] = ()) -> str:
    """The yardstick of a study's trials: ``BITS`` once a trial has it (8-bit data; studies
    from before ``nats_per_dim`` existed have only it), ``NATS`` once a trial has only that
    (continuous data). Before any trial was scored: ``NATS`` when the objectives name it
    and not ``BITS`` (the default objective of continuous data), else ``BITS``."""
    for t in trials:
        if BITS in t.user_attrs:
            return BITS
        if NATS in t.user_attrs:
            return NATS
    return NATS if NATS in objectives and BITS not in objectives else BITS


def of_study(study: optuna.Study) -> str:
    """``key`` of the study's trials and objectives."""
    return key(study.get_trials(deepcopy=False), study.metric_names or ())


def unit(yardstick: str) -> str:
    """"bits/dim" or "nats/dim"."""
    return UNITS[yardstick]
