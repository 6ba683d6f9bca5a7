"""Process-wide state that a library call changes for its own duration only: a notebook's
kernel that runs a study finds its environment as it was."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def environ_kept() -> Iterator[None]:
    """The environment as it was before, once the block ends: Lightning's seed_everything
    writes PL_GLOBAL_SEED and PL_SEED_WORKERS into it at every fit."""
    before = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(before):
            del os.environ[key]
        for key, value in before.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
