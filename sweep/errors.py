"""The one family of "bad input" errors: each means exit code 2 and one line naming the input.

A leaf module (it imports nothing of the project's but ``models.config``), so every layer can
raise these without importing the command line. ``ConfigError`` comes from ``models``, which
knows nothing of the sweep; ``BAD_INPUT`` is what the command line catches.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from models.config import ConfigError


class UsageError(ValueError):
    """Bad input the user can fix: a flag, a study name, a port. One line, exit 2."""


class ParamError(UsageError):
    """A bad argument of a library call, named as the parameter: ``n_trials must be >= 0``.

    ``message`` follows the parameter's name and may name other parameters as ``{name}``;
    ``render`` writes every name through another table, as the command line does to name
    its flags (``--n-trials must be >= 0``).
    """

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        self.message = message
        super().__init__(self.render(lambda name: name))

    def render(self, name: Callable[[str], str]) -> str:
        rest = re.sub(r"\{([a-z_]+)\}", lambda m: name(m[1]), self.message)
        return f"{name(self.param)} {rest}"


class SpaceError(UsageError):
    """The sweep description (TOML or stored space) is invalid; the message starts with the
    offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class StorageError(UsageError):
    """A storage URL that cannot be used; the message is one line naming the URL."""


BAD_INPUT: tuple[type[Exception], ...] = (UsageError, ConfigError)


class RunError(RuntimeError):
    """A run that could not go on (not bad input): one line, exit 1. ``study``: the study a
    resume would continue (the command line names the command that does)."""

    def __init__(self, message: str, study: str | None = None) -> None:
        super().__init__(message)
        self.study = study


class DatabaseFull(RunError):
    """The database has no room left (SQLite "database or disk is full", PostgreSQL "No space
    left on device"): waiting does not help, so it is not retried."""


class NoWeights(RunError):
    """The trial kept no weights (PRUNED, or a study started without them): its model needs
    a retraining that the caller did not allow (``retrain=True``)."""


class StorageUnreachable(RunError):
    """The database stayed unreachable for longer than the outage wait
    ($VAE_SWEEP_OUTAGE_WAIT_S): an outage, not bad input, so exit 1."""


class WorkerError(RunError):
    """A worker stopped: several trials in a row failed with unexpected errors."""


class NoResult(RunError):
    """The study's budget was spent and none of its trials is COMPLETE: there is no answer
    (every trial failed or was pruned); the message says how many and why."""
