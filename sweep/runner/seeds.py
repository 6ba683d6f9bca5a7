"""The sampler's seed of a worker."""

from __future__ import annotations

import os
import socket

import numpy as np
import optuna


def sampler_seed(seed: int, worker_id: int, storage: optuna.storages.BaseStorage,
                 name: str) -> int:
    """A sampler seed that differs per worker, per machine and per run of the same study.

    TPE's first trials are random draws from this seed: with the same seed, two workers,
    a second machine, or a second ``start`` joining the study, would propose the very
    trials already run. The trial count, the host and the process tell them apart.
    """
    study_id = storage.get_study_id_from_name(name)
    n_trials = len(storage.get_all_trials(study_id, deepcopy=False))
    host = int.from_bytes(socket.gethostname().encode()[:8].ljust(8, b"\0"), "big")
    entropy = [seed, worker_id, n_trials, os.getpid(), host]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])
