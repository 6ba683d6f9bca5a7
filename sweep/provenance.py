"""What makes a trial reproducible besides its config: git SHA, package versions, host, and
the CPU thread count (results on the CPU depend on it)."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "torchvision", "pytorch-lightning", "optuna", "vae-sweep")


@functools.cache
def provenance() -> dict[str, object]:
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        sha = None
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"git_sha": sha, "versions": versions, "python": platform.python_version(),
            "host": platform.node()}


def torch_threads() -> int:
    """The intra-op threads torch runs with now (what a run records and ``train --config``
    restores: a reduction over 2 threads adds in another order than over 1)."""
    import torch

    return torch.get_num_threads()
