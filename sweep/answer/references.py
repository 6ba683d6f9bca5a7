"""The literature's single fixes for posterior collapse, run as labelled reference trials.

Each reference is the seed configuration (``Config()`` plus the study's ``[fixed]`` fields)
with one published fix applied. Every fix uses the summed reconstruction term of the ELBO
those papers optimise: the seed's per-pixel mean divides the reconstruction by D = 3,072 on
CIFAR-10 against a KL summed over latent dims, which is the imbalance that drowns it.

``start`` enqueues them right after the baseline (``--no-references`` skips them), labelled
by ``reference = "<label>"`` in their user attrs, so the report can put the seed, each fix
and the sweep's pick side by side, and the sampler (TPE) starts from these known-good regions.
They count toward ``n_trials`` (``--n-trials``): a study of N trials runs at most N - 1 of
them after the baseline. A reference the study's space cannot express (a field it changes is neither
searched with that value in range nor fixed at that value) is skipped with one line.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from models.config import Config
from sweep.optuna_private import FIXED_PARAMS_KEY
from sweep.space import Space, baseline_params

if TYPE_CHECKING:
    import optuna


NO_ROOM = "reference skipped, no room in n_trials"  # the start of the note on such a skip


@dataclasses.dataclass(frozen=True)
class Reference:
    label: str
    changes: dict[str, Any]  # Config fields that differ from the seed


# Strongest first (by bits/dim in the README's CIFAR-10 walkthrough), so a budget too small
# for all four still runs the fix that wins there.
# Labels short enough for one line of a dashboard trial page ("reference LABEL"; see
# sweep.storage.trial_record.LINE_LIMIT); the config says the rest.
REFERENCES: tuple[Reference, ...] = (
    Reference("calibrated decoder, optimal sigma (Rybkin et al. 2021)",
              {"recon_reduction": "sum", "likelihood": "gaussian", "sigma_mode": "optimal"}),
    Reference("free bits, 0.25 nats/dim (Kingma et al. 2016)",
              {"recon_reduction": "sum", "free_bits": 0.25}),
    Reference("cyclical annealing, 4 cycles (Fu et al. 2019)",
              {"recon_reduction": "sum", "kl_schedule": "cyclical", "kl_cycles": 4,
               "kl_ratio": 0.5}),
    Reference("KL warm-up, 1,000 steps (Bowman et al. 2016)",
              {"recon_reduction": "sum", "kl_schedule": "linear", "kl_warmup_steps": 1000}),
)


def reference_params(space: Space, ref: Reference,
                     knobs: dict[str, Any] | None = None) -> dict[str, Any] | str:
    """The params that make ``suggest`` return ``ref``'s config in ``space``, or why it
    cannot: the first changed field that is neither searched with that value reachable nor
    fixed (or defaulted) at that value. Searched knobs of the network take their defaults
    in ``knobs``, as the seed's do (``baseline_params``)."""
    params = baseline_params(dataclasses.replace(space, fixed={**space.fixed, **ref.changes}),
                             knobs)
    seed = {**Config().to_dict(), **space.fixed}
    for field, value in ref.changes.items():
        if field in space.params:
            if params.get(field) != value:
                return f"{field}={value} is outside search.{field} (or its condition)"
        elif seed[field] != value:
            return f"{field} is fixed at {seed[field]!r}, not searched"
    return params


def enqueue_references(study: optuna.Study, space: Space, room: int,
                       knobs: dict[str, Any] | None = None) -> list[str]:
    """Enqueue up to ``room`` references not already in ``study``; one line per reference
    that was skipped, for the user. A reference whose config a trial already enqueued runs
    (the baseline, when ``[fixed]`` applies that very fix) is not run twice."""
    trials = study.get_trials(deepcopy=False)
    present = {t.user_attrs.get("reference") for t in trials}
    notes: list[str] = []
    for ref in REFERENCES:
        params = reference_params(space, ref, knobs)
        if isinstance(params, str):
            notes.append(f"reference skipped, not in this space: {ref.label}: {params}")
            continue
        if ref.label in present:  # enqueued by an earlier start of this study
            continue
        same = next((t.number for t in trials if t.system_attrs.get(FIXED_PARAMS_KEY) == params),
                    None)
        if same is not None:
            notes.append(f"reference skipped, trial {same} already runs its config: {ref.label}")
            continue
        if room <= 0:
            notes.append(f"{NO_ROOM}: {ref.label}")
            continue
        study.enqueue_trial(params, user_attrs={"reference": ref.label})
        room -= 1
    return notes
