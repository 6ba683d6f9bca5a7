"""A trial's long values: its full ``config``, its per-epoch ``history``, its final
``kl_per_dim`` and its ``provenance``, kept where Optuna's own tools do not print them.

Optuna-dashboard and ``optuna trials`` show every user attr on one line: a 5,000-character
``kl_per_dim`` or the 40-field config made trial pages thousands of pixels wide and
``optuna trials`` lines of 8,000 characters, and a 115-character ``versions`` still made a
page scroll sideways below 1,350 px. So user attrs hold only short values (metrics, seed,
threads, the git SHA, labels, reasons: a line of ``LINE_LIMIT`` characters at most as the
dashboard shows it, key included), and the long ones are trial *system* attrs under
``vae_sweep:`` keys (``KEYS``). System attrs live in the same database row set as the rest
of the trial, so a resumed study, the pruner, the report, the recommendation and a copy of
the study all keep them; the dashboard and the CLI do not display them.

The dashboard lists a trial's user attrs in the order the storage returns them, which for
SQLite is by key, in a box that shows six lines before it scrolls: so the first key,
``SUMMARY``, sorts before every other and says what tells most (``summary``: the stage, the
reference, bits/dim, active units, collapsed).

The database is the source of truth: every reader goes through this module's accessors
(``config``, ``history``, ``kl_per_dim``, ``provenance``), never through the keys. The same
values, with the seed, metrics and threads, are also uploaded as each trial's ``trial.json``
artifact (``sweep.answer.trial_artifacts``) so a dashboard user can download them; nothing
reads that file back.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep.optuna_private import trial_id

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

# Characters of a user attr's line on a trial page ("key value"): at 1,000 px wide the
# dashboard's attr box is about 480 px, some 64 characters of its 16 px Roboto, before the
# page scrolls sideways (measured in headless Chromium, optuna-dashboard 0.21).
LINE_LIMIT = 64
SUMMARY = "_summary"  # the user attr shown first ("_" sorts before the lowercase keys)
CONFIG, HISTORY, KL_PER_DIM = "vae_sweep:config", "vae_sweep:history", "vae_sweep:kl_per_dim"
PROVENANCE = "vae_sweep:provenance"
KEYS = (CONFIG, HISTORY, KL_PER_DIM, PROVENANCE)
# The metrics that are long (one value per latent dim): kept here, never as user attrs.
LONG_METRICS = ("kl_per_dim",)


def system_attrs(config: dict[str, Any] | None = None,
                 history: list[dict[str, Any]] | None = None,
                 kl_per_dim: list[float] | None = None,
                 provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """The system attrs holding these values (those given): what ``write`` stores, and what
    ``optuna.create_trial(system_attrs=...)`` takes to make such a trial directly."""
    values = {CONFIG: config, HISTORY: history, KL_PER_DIM: kl_per_dim, PROVENANCE: provenance}
    return {k: v for k, v in values.items() if v is not None}


def write(trial: optuna.Trial, config: dict[str, Any], history: list[dict[str, Any]],
          kl_per_dim: list[float] | None, provenance: dict[str, Any] | None = None) -> None:
    """Store the long values of a trial that has trained (see the module docstring)."""
    for key, value in system_attrs(config, history, kl_per_dim, provenance).items():
        trial.storage.set_trial_system_attr(trial_id(trial), key, value)


def config(t: FrozenTrial) -> dict[str, Any] | None:
    """The trial's full config (``Config.to_dict()``), or None if it never trained."""
    value = t.system_attrs.get(CONFIG)
    return dict(value) if value is not None else None


def history(t: FrozenTrial) -> list[dict[str, Any]]:
    """The trial's per-epoch validation metrics (empty before its first epoch ends)."""
    return list(t.system_attrs.get(HISTORY) or [])


def kl_per_dim(t: FrozenTrial) -> list[float]:
    """The final epoch's rate per latent dim, nats per image (empty if it never trained)."""
    return list(t.system_attrs.get(KL_PER_DIM) or [])


def provenance(t: FrozenTrial) -> dict[str, Any]:
    """What the trial ran with besides its config (``sweep.provenance``: git SHA, package
    versions, Python, host); empty if it never trained."""
    return dict(t.system_attrs.get(PROVENANCE) or {})


def short_label(reference: str) -> str:
    """A reference's label up to its first comma or parenthesis: "free bits"."""
    return reference.split(",")[0].split(" (")[0]


def who(attrs: dict[str, Any]) -> str:
    """Which stage ran the trial and why, in a few words, from its user attrs (``stage`` and
    the labels: ``reference``, ``focus_of``, ``confirm_of``)."""
    stage = attrs.get("stage", "trial")
    if attrs.get("reference"):
        return f"reference: {short_label(attrs['reference'])}"
    if stage == "baseline":
        return "baseline (the seed)"
    if stage == "focus" and "focus_of" in attrs:
        return f"focus around #{attrs['focus_of']}"
    if stage == "confirm" and "confirm_of" in attrs:
        return f"confirms #{attrs['confirm_of']}, seed {attrs.get('seed')}"
    return str(stage)


def summary(attrs: dict[str, Any], metrics: dict[str, Any]) -> str:
    """The trial in one line (the ``SUMMARY`` attr): ``who`` ran it (a reference by its fix
    alone), bits/dim, and its active units or that it collapsed. ``attrs``: its user attrs
    (stage and labels)."""
    ran = short_label(attrs["reference"]) if attrs.get("reference") else who(attrs)
    bpd, units = metrics.get("bits_per_dim"), metrics.get("active_units")
    text = f"{ran}: {bpd:.4g} bits/dim" if isinstance(bpd, (int, float)) else ran
    return text + (", collapsed" if units == 0 else f", {units} active units")


def shown(value: Any) -> str:
    """A user attr's value as optuna-dashboard prints it (its ``serialize_attrs``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value)


def without_record(attrs: dict[str, Any]) -> dict[str, Any]:
    """``attrs`` (a trial's system attrs) less the long values: what a re-run of the trial
    starts with, before it trains and writes its own."""
    return {k: v for k, v in attrs.items() if k not in KEYS}


def short_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` without the long ones (``LONG_METRICS``): the part kept as user attrs."""
    return {k: v for k, v in metrics.items() if k not in LONG_METRICS}


def clip(text: str, limit: int = LINE_LIMIT - 20, tail: bool = False) -> str:
    """``text`` cut to ``limit`` characters ("..." marking the cut), so a reason built from
    an error message stays one short line with its key (20 characters are left for it).
    ``tail`` keeps the end instead (of a path, the file's name is what tells)."""
    if len(text) <= limit:
        return text
    return "..." + text[3 - limit:] if tail else text[:limit - 3] + "..."


def error_reason(err: BaseException) -> str:
    """``err`` as a short reason attr: its type and the first line of its message."""
    return clip(f"{type(err).__name__}: {first_line(err)}")


def first_line(err: BaseException) -> str:
    """The first line of ``err``'s message, with the absolute paths an OSError names cut to
    their last two parts (``.../trial-0/last.ckpt``): a reason is read by everyone who
    reads the database, and the rest of the path is only this machine's layout."""
    text = (str(err).strip().splitlines() or [""])[0]
    for name in (getattr(err, "filename", None), getattr(err, "filename2", None)):
        if isinstance(name, str) and os.path.isabs(name):
            text = text.replace(name, os.path.join("...", *Path(name).parts[-2:]))
    return text


def line_length(key: str, value: Any) -> int:
    """The length of the user attr's line on a trial page: its key, a space, its value."""
    return len(key) + 1 + len(shown(value))


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as null: JSON has no such numbers (a diverged run's
    metrics must still parse)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value
