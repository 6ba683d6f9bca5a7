"""Shared fixtures: a tiny model on small synthetic images, trained in seconds on CPU.

The suite runs single-threaded, in this process and in every ``python -m sweep`` it starts
(they inherit the environment): on 2 cores, torch's default of a thread per core in each of
several processes made the suite 4.5x slower (1,015 s against 223 s).
"""

import os

os.environ["VAE_SWEEP_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"

import pytest
import torch

from models.config import Config
from models.data import load_images

torch.set_num_threads(1)

TINY = dict(dataset="synthetic", synthetic_size=512, width=8, depth=3, latent_dim=16,
            batch_size=32, seed=0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first: under pytest-xdist they start at once and the short ones fill in
    around them, instead of one long test running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def tiny() -> dict:
    return dict(TINY)


@pytest.fixture(scope="session")
def images():
    return load_images(Config(**TINY))
