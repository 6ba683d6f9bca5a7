"""A study's name as a file name: its checkpoint folder, its study lock beside a journal,
its SLURM log folder, its report; and the names no platform can hold. A leaf: the storage's
modules and the runner's all name files so."""

from __future__ import annotations

import hashlib
import re

from sweep.errors import ParamError


def safe_name(study_name: str) -> str:
    """``study_name`` as a file name (see checkpoint_dir), on every platform: a Windows
    device name (``reserved``) is made another one too."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", study_name)
    if reserved(safe):
        safe = f"_{safe}"  # "CON.x-<hash>" would be CON still
    if safe != study_name or safe in ("", ".", ".."):
        safe = f"{safe}-{hashlib.sha1(study_name.encode()).hexdigest()[:8]}"
    return safe


# Names Windows keeps for devices, in any case and with any extension ("nul.txt" is NUL):
# no file or folder can have them there.
RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", *(f"{port}{i}" for port in ("COM", "LPT")
                                                     for i in range(10))})


def reserved(name: str) -> bool:
    """Whether ``name`` is a device name on Windows (``RESERVED``)."""
    return name.split(".")[0].rstrip(" ").upper() in RESERVED


def check_study_name(name: str | None) -> None:
    """Refuse a study name that is a Windows device name (ParamError): every store and
    report named after it would have to be renamed on some machine."""
    if name is not None and reserved(name):
        raise ParamError("study_name", f"{name!r} is a device name on Windows (CON, PRN, AUX, NUL, "
                         "COM0-9, LPT0-9): choose another")


def portable_name(text: str) -> str:
    """``text`` as one readable file name on every platform (``report-NAME``): both path
    separators, ``/`` and ``\\``, and the other characters Windows refuses (``:*?"<>|``,
    control characters) become ``_``, so no study name reaches outside the folder."""
    return re.sub(r'[\x00-\x1f/\\:*?"<>|]', "_", text)
