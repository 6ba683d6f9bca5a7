"""Shared fixtures: a tiny model on small synthetic images, trained in seconds on CPU."""

import pytest

from models.config import Config
from models.data import load_images

TINY = dict(dataset="synthetic", synthetic_size=512, width=8, depth=3, latent_dim=16,
            batch_size=32, seed=0)


@pytest.fixture
def tiny() -> dict:
    return dict(TINY)


@pytest.fixture(scope="session")
def images():
    return load_images(Config(**TINY))
