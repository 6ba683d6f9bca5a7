"""How long a storage call waits out a database outage: one leaf that the storage's open
(``sweep.storage.database``), its retries (``sweep.storage.retries``) and the command
line (which refuses a bad value before any work) all read."""

from __future__ import annotations

import math
import os

from sweep.errors import UsageError

OUTAGE_ENV = "VAE_SWEEP_OUTAGE_WAIT_S"
OUTAGE_WAIT_S = 600.0  # how long a storage call waits out an outage, unless OUTAGE_ENV says


def outage_wait_s() -> float:
    """Seconds a storage call waits out an outage: $VAE_SWEEP_OUTAGE_WAIT_S, else
    OUTAGE_WAIT_S. Read at each use (a test or a caller may set it after import);
    UsageError naming the variable for anything but a number >= 0."""
    text = os.environ.get(OUTAGE_ENV, "").strip()
    if not text:
        return OUTAGE_WAIT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise UsageError(f"{OUTAGE_ENV}={text!r}: expected a number of seconds >= 0")
    return value
