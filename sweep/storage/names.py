"""A study's name as a file name: its checkpoint folder, its study lock beside a journal,
its SLURM log folder. A leaf: the storage's modules and the runner's all name files so."""

from __future__ import annotations

import hashlib
import re


def safe_name(study_name: str) -> str:
    """``study_name`` as a file name: a name that is not a plain file name (``/``, ``..``,
    spaces...) is made one, with a hash of the real name appended so that two such studies
    never share a file."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", study_name)
    if safe != study_name or safe in ("", ".", ".."):
        safe = f"{safe}-{hashlib.sha1(study_name.encode()).hexdigest()[:8]}"
    return safe
