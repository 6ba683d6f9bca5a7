"""Test NLL as papers report it, for ``export`` and ``report`` (``--iw-samples K``): the
importance-weighted bound and the ELBO on the ``--test-data`` split, in bits/dim under each
trial's own likelihood (``models.iw_bound``), for one trial or for the pick, the seed and
the best reference.

Figures are keyed ``test_<name>``: ``test_bits_per_dim_iw``, ``test_bits_per_dim_elbo``
(``test_nats_per_dim_*`` for continuous data), ``test_iw_samples`` (K), ``test_images`` and
``test_seconds`` (the wall time of both passes).
"""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING, Any

import optuna

from sweep.answer import recommend as rec_rule
from sweep.errors import ParamError
from sweep.optuna_private import ArtifactStore

if TYPE_CHECKING:
    import torch

    from models.module import VAE
    from sweep.answer.roles import Roles

log = logging.getLogger(__name__)


def figures(module: VAE, images: torch.Tensor, samples: int) -> dict[str, Any]:
    """The test figures of one model on ``images``, keyed ``test_<name>`` (module docstring)."""
    from models.iw_bound import heldout_nll

    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ParamError("iw_samples", f"must be an integer >= 1, got {samples!r}")
    return {f"test_{k}": v for k, v in heldout_nll(module, images, samples).items()}


def subjects(study: optuna.Study, who: Roles) -> list[tuple[str, optuna.trial.FrozenTrial]]:
    """(role, trial) for the pick, the seed and the best reference, those the study has."""
    best_ref = rec_rule.reference_group(study.get_trials(deepcopy=False))
    found = [("the sweep's pick", who.recommended), ("the seed (baseline)", who.baseline),
             ("best reference", None if best_ref is None else best_ref.origin)]
    return [(role, t) for role, t in found if t is not None]


def score(study: optuna.Study, storage: optuna.storages.BaseStorage, store: ArtifactStore,
          who: Roles, images: torch.Tensor, samples: int
          ) -> list[tuple[str, int, dict[str, Any]]]:
    """(role, trial number, figures) of each of ``subjects``, one line on stderr each."""
    from sweep.answer.evaluate import model_for

    rows = []
    for role, t in subjects(study, who):
        log.info("test NLL: trial %d (%s), K = %d", t.number, role, samples)
        module, _ = model_for(t, storage, store)
        rows.append((role, t.number, figures(module, images, samples)))
    return rows


def section(rows: list[tuple[str, int, dict[str, Any]]], spec: str) -> str:
    """The report's section of ``score``'s rows, as HTML (an ``<h2 id=test-nll>``)."""
    if not rows:
        return ""
    unit = "bits/dim" if "test_bits_per_dim_iw" in rows[0][2] else "nats/dim"
    key = "bits_per_dim" if unit == "bits/dim" else "nats_per_dim"
    k, n = rows[0][2]["test_iw_samples"], rows[0][2]["test_images"]
    cells = "".join(
        f"<tr><td>{html.escape(role)}</td><td>{number}</td>"
        f"<td>{f[f'test_{key}_elbo']:.4f}</td><td>{f[f'test_{key}_iw']:.4f}</td>"
        f"<td>{f['test_seconds']:.0f}</td></tr>" for role, number, f in rows)
    return (f"<h2 id=test-nll>Test NLL as papers report it</h2><p>On the {n} images of "
            f"<code>{html.escape(spec)}</code>, under each trial's own likelihood: the "
            f"one-sample ELBO and the importance-weighted bound with K = {k} (Burda et al. "
            f"2015, eq. 8), {unit}; the bound is the tighter, lower figure.</p>"
            f"<table><tr><th>role</th><th>trial</th><th>ELBO {unit}</th>"
            f"<th>IW bound {unit}</th><th>seconds</th></tr>{cells}</table>")


def add_section(page: str, text: str) -> str:
    """``page`` (the report's HTML) with ``text`` as its last section."""
    return page.replace("</body>", text + "</body>", 1)
