"""Write docker/constraints.txt: the version of every package that the image's
``pip install ".[postgresql,s3]"`` adds on top of torch and torchvision, as installed in the
environment that ran the test suite, so the image runs what the suite ran.

    /tmp/vae-sweep-ci-venv/bin/python docker/freeze.py   # after .ci/run, from the repo root

torch and torchvision (and what they pull in) are left out: the Dockerfile installs them
first, pinned by its TORCH and TORCHVISION arguments, from the index of its CUDA variant.
"""

from __future__ import annotations

import re
from importlib.metadata import distribution
from pathlib import Path

from packaging.requirements import Requirement

ROOT = "vae-sweep"
EXTRAS = ("postgresql", "s3")
FIRST = {"torch", "torchvision"}  # installed by the Dockerfile before the project
OUT = Path(__file__).with_name("constraints.txt")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure() -> dict[str, str]:
    """{package: installed version} of everything ROOT[EXTRAS] requires, FIRST's subtrees
    excepted."""
    pins: dict[str, str] = {}
    todo = [(ROOT, set(EXTRAS))]
    while todo:
        name, extras = todo.pop()
        for line in distribution(name).requires or []:
            req = Requirement(line)
            wanted = req.marker is None or any(
                req.marker.evaluate({"extra": extra}) for extra in extras | {""})
            key = canonical(req.name)
            if not wanted or key in FIRST:
                continue
            if key not in pins:
                pins[key] = distribution(req.name).version
                todo.append((req.name, set(req.extras)))
            elif req.extras:  # a second path may ask for extras the first did not
                todo.append((req.name, set(req.extras)))
    return pins


def main() -> None:
    pins = closure()
    OUT.write_text(
        "# The versions the test suite ran on, for the image's install of the project\n"
        "# (pip install --constraint); written by docker/freeze.py, which says how.\n"
        + "".join(f"{name}=={pins[name]}\n" for name in sorted(pins)))
    print(f"{OUT}: {len(pins)} packages")


if __name__ == "__main__":
    main()
