"""A run's config as a TOML file: one flat table of ``Config`` fields, every field written.

``export`` writes it; ``train --config FILE`` reads it (its ``--set``/``--data`` win over the
file). A file may list only some fields: the rest keep ``Config``'s defaults. Besides the
fields, ``threads`` is how the run executed: CPU results depend on the thread count (a
reduction split over 2 threads adds in another order), so ``train`` runs with the file's
count unless ``--threads`` says otherwise, whatever this machine's default. Anything wrong
(no file, bad TOML, a table where a value belongs, an unknown key, a bad value) raises one
of ``sweep.errors.BAD_INPUT`` naming the file and the key. Imports no torch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from models.config import KNOB, Config, ConfigError, is_knob
from sweep.errors import ParamError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pyproject installs tomli on Python 3.10
    import tomli as tomllib


THREADS = "threads"  # the one key that is not a Config field (see the module docstring)


def dumps(cfg: Config, header: str = "", threads: int | None = None) -> str:
    """``cfg`` as TOML, one ``key = value`` line per field, in ``Config``'s order, then the
    thread count the run used, when known."""
    lines = [f"# {line}" for line in header.splitlines()]
    for key, value in cfg.to_dict().items():
        # JSON's strings and numbers are TOML's (repr keeps every digit of a float); a knob's
        # key is quoted, or TOML would read model.NAME as a table beside model's string.
        text = repr(value) if isinstance(value, float) else json.dumps(value)
        lines.append(f"{json.dumps(key) if is_knob(key) else key} = {text}")
    if threads is not None:
        lines += ["# CPU threads it ran with: train uses them unless --threads is given",
                  f"{THREADS} = {threads}"]
    return "\n".join(lines) + "\n"


def read_values(path: str | Path) -> tuple[dict[str, Any], int | None]:
    """The Config fields in TOML file ``path``, checked (each value typed by ``Config``), and
    its thread count (None when it names none)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = tomllib.load(f)
    except OSError as err:
        raise ParamError("config", f"{p}: cannot read it ({err.strerror or err})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ParamError("config", f"{p}: invalid TOML: {err}") from None
    threads = data.pop(THREADS, None)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ParamError("config", f"{p}: {THREADS} must be an integer >= 1, got {threads!r}")
    if isinstance(data.get("model"), dict):  # model.NAME = V unquoted: TOML's table of knobs
        data.update({KNOB + k: v for k, v in data.pop("model").items()})
    for key, value in data.items():
        if isinstance(value, (dict, list)):
            raise ConfigError(key, f"expected a value, got a {type(value).__name__} (in {p}: "
                                   "a config file is one flat table of Config fields)")
    try:
        Config.from_dict(data)
    except ConfigError as err:
        raise ConfigError(err.key, f"{str(err).split(': ', 1)[1]} (in {p})") from None
    return data, threads
