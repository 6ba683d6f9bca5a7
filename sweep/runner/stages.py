"""Which stage of the search proposed a trial, and the space that trial searched.

The default space's strategy is "focus": the study spends its budget where the answer is.

1. ``baseline``: the seed configuration (``sweep.runner.study`` enqueues it first).
2. ``reference``: the literature's single fixes (``sweep.answer.references``): one trial per family
   (warm-up, cyclical annealing, free bits, calibrated decoder) screens the families.
3. ``focus``: every trial the sampler proposes once a reference has finished. The best
   finished reference (lowest yardstick, kept an active unit) is the centre: its categorical
   fields (likelihood, reductions, KL schedule kind, ...) are fixed, and the continuous
   knobs are searched in a window around its values (``WINDOWS``: learning rate, latent
   size, batch size, and its KL schedule's own parameters) within the space's own ranges.
   Successive halving over epochs (the Hyperband pruner) stops most of them after one
   epoch; finalists train max_epochs.
4. ``confirm``: the best configurations and the best reference re-run with more seeds
   (``sweep.runner.confirm``).

``search`` is a sampler trial over the space as written: the "tpe" strategy (a sweep file
with a [search] table), or the focus strategy before any reference finished
(``--no-references``). Each trial's stage is its user attr ``stage``; the stage and the
exact space it searched are kept in its system attrs (``STAGE_KEY``), so a re-run after a
crash rebuilds the same config, and the centre of a focus trial is ``focus_of``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from models.config import LIMITS, Config, is_knob
from sweep import optuna_private
from sweep.answer import recommend as rec_rule
from sweep.optuna_private import FIXED_PARAMS_KEY
from sweep.space import Space, parse_space

STAGE_KEY = "vae_sweep_stage"  # system attr: {"stage", "space", "labels"}

# Field -> (how the window is drawn, its size, values the field allows). "log": from
# value / size to value * size on a log scale; "linear": value -/+ size. Only fields the
# centre's config uses are searched (a schedule's parameters only with that schedule), and
# never outside the range the space itself searches them over.
# The latent size's window is wide because its best value moves with the training budget
# the most: with 1 epoch at lr 1.6e-3 on CIFAR-10 (calibrated decoder, the fix that wins),
# 64 dims beat 128 and 256 on 45,000 images (negative ELBO -2,506 / -2,435 / -2,377 nats),
# and 16 to 32 dims won on 4,500 (-1,335 at 16 against -1,136 at 256, lr 2.5e-3).
WINDOWS: dict[str, tuple[str, float, float, float]] = {
    "lr": ("log", 3.0, 1e-6, 1.0),
    "latent_dim": ("log", 16.0, 2, LIMITS["latent_dim"]),
    "batch_size": ("log", 2.0, 8, 1024),
    "kl_warmup_steps": ("log", 4.0, 10, 1_000_000),
    "kl_cycles": ("linear", 2, 1, 64),
    "kl_ratio": ("linear", 0.25, 0.05, 1.0),
}
_USED_WHEN = {"kl_warmup_steps": ("linear", "sigmoid"), "kl_cycles": ("cyclical",),
              "kl_ratio": ("cyclical",)}


def best_reference(trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The finished reference with the lowest yardstick that kept an active unit."""
    return rec_rule.recommend([t for t in rec_rule.references(trials)
                               if rec_rule.is_candidate(t)])


def focus_space(space: Space, centre: Config) -> Space:
    """``space`` narrowed to a window around ``centre``: every field fixed at the centre's
    value except the WINDOWS fields its config uses (and free bits among the space's own
    choices when the centre uses free bits); the user's fixed fields stay fixed, and the
    network's searched knobs keep their whole range (no reference knows them better)."""
    values = centre.to_dict()
    search: dict[str, dict[str, Any]] = {}
    for name, (kind, size, lowest, highest) in WINDOWS.items():
        if name in space.fixed or values["kl_schedule"] not in _USED_WHEN.get(
                name, (values["kl_schedule"],)):
            continue
        value = values[name]
        if "low" in space.params.get(name, {}):  # the user's own range bounds the window
            lowest = max(lowest, space.params[name]["low"])
            highest = min(highest, space.params[name]["high"])
        if kind == "log":
            low, high = max(lowest, value / size), min(highest, value * size)
        else:
            low, high = max(lowest, value - size), min(highest, value + size)
        if isinstance(value, int):
            low, high = math.ceil(low), math.floor(high)
        if low < high:
            search[name] = {"low": low, "high": high, "log": kind == "log"}
    # Optuna keeps a categorical's choices for the whole study: free bits keeps the space's.
    if values["free_bits"] > 0 and "free_bits" in space.params:
        search["free_bits"] = {"choices": list(space.params["free_bits"]["choices"])}
    search.update({k: v for k, v in space.params.items() if is_knob(k)})
    data = space.to_dict()
    data["fixed"] = {**{k: v for k, v in values.items() if k not in search}, **space.fixed}
    data["search"] = search
    return parse_space(data)


def _record(trial: optuna.Trial, stage: str, space: Space, labels: dict[str, Any]) -> None:
    trial.storage.set_trial_system_attr(optuna_private.trial_id(trial), STAGE_KEY, {
        "stage": stage, "space": space.to_dict(), "labels": labels})
    for key, value in {"stage": stage, **labels}.items():
        trial.set_user_attr(key, value)


def trial_space(trial: optuna.Trial, space: Space) -> tuple[str, Space]:
    """The stage of ``trial`` and the space its config comes from (``suggest``), recorded on
    the trial (``STAGE_KEY`` and user attrs) the first time it runs; a re-run finds it."""
    system = trial.storage.get_trial_system_attrs(optuna_private.trial_id(trial))
    stored = system.get(STAGE_KEY)
    if stored:  # a re-run (or an enqueued confirmation run): the same stage and space
        same = parse_space(stored["space"])
        _record(trial, stored["stage"], same, stored.get("labels", {}))
        return stored["stage"], same
    attrs = trial.user_attrs
    labels: dict[str, Any]
    if attrs.get("baseline"):
        stage, labels = "baseline", {"baseline": True}
    elif attrs.get("reference"):
        stage, labels = "reference", {"reference": attrs["reference"]}
    elif FIXED_PARAMS_KEY in system:  # enqueued by the user (enqueue_trial)
        stage, labels = "enqueued", {}
    else:
        centre = best_reference(trial.study.get_trials(deepcopy=False))
        if space.strategy == "focus" and centre is not None:
            stage, labels = "focus", {"focus_of": centre.number}
            space = focus_space(space, rec_rule.trial_config(centre))
        else:
            stage, labels = "search", {}
    _record(trial, stage, space, labels)
    return stage, space


def must_train_fully(stage: str) -> bool:
    """The stages whose trials no pruner stops: the answer compares them at full budget."""
    return stage in ("baseline", "reference", "confirm")
