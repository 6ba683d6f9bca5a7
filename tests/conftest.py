"""Shared fixtures: a tiny model on small synthetic images, trained in seconds on CPU.

The suite runs single-threaded, in this process and in every ``python -m sweep`` it starts
(they inherit the environment): on 2 cores, torch's default of a thread per core in each of
several processes made the suite 4.5x slower (1,015 s against 223 s).
"""

import os

os.environ["VAE_SWEEP_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"

import re
from pathlib import Path

import pytest
import torch

from models.config import Config
from models.data import load_images

torch.set_num_threads(1)

TINY = {"dataset": "synthetic", "synthetic_size": 512, "model.width": 8, "model.depth": 3,
        "latent_dim": 16, "batch_size": 32, "seed": 0}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first: under pytest-xdist they start at once and the short ones fill in
    around them, instead of one long test running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


NO_STUDY = "VAE_SWEEP_TEST_NO_STUDY"  # read by tests/forkserver.py's commands too


def _refused(self, trial):
    raise pytest.fail.Exception("a test not marked slow trained a study's trial: mark it "
                                "@pytest.mark.slow")


@pytest.fixture(autouse=True)
def no_study_unless_slow(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """The worker loop refuses to train a trial in a test not marked slow, here or in a
    command it runs: ``pytest -m "not slow"`` is the quick suite, and starts no study."""
    if request.node.get_closest_marker("slow") is None:
        from sweep.runner.loop import Worker

        monkeypatch.setattr(Worker, "run_trial", _refused)
        monkeypatch.setenv(NO_STUDY, "1")


@pytest.fixture
def tiny() -> dict:
    return dict(TINY)


@pytest.fixture(scope="session")
def images():
    return load_images(Config.from_dict(dict(TINY)))


README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
# What the README's commands get in tests: a model small enough for seconds on CPU.
README_TINY = {"synthetic_size": 96, "model.width": 4, "model.depth": 2, "latent_dim": 8,
               "batch_size": 32}


def readme_section(title: str) -> str:
    """The README's text under heading ``title`` (any level), up to the next heading."""
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ )", README + "\n# end",
                      re.MULTILINE | re.DOTALL)
    assert match, f"no section {title!r} in README.md"
    return match.group(1)


def readme_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.DOTALL)


@pytest.fixture(scope="session")
def readme_example(tmp_path_factory):
    """The README's Python example ("From Python"), run in-process in a fresh folder; its
    variables, and ``where`` it ran. Tiny sizes go through ``fixed`` (as a user would shrink
    it); a low active-unit threshold lets the tiny trials keep units, so there is a pick."""
    import sweep

    where = tmp_path_factory.mktemp("notebook")
    (code,) = readme_blocks(readme_section("From Python"), "python")
    create = sweep.create_study

    def tiny_create(*args, fixed=None, **kwargs):
        return create(*args, fixed={**(fixed or {}), **README_TINY, "au_threshold": 1e-4},
                      **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(where)
        mp.delenv("VAE_SWEEP_STORAGE", raising=False)
        mp.setattr(sweep, "create_study", tiny_create)
        scope: dict = {}
        exec(compile(code, "README.md (From Python)", "exec"), scope)
    scope["where"] = where
    return scope
