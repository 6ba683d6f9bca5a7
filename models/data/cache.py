"""The decode cache of a folder dataset: one file beside the images holding them decoded,
named by a hash of the file list, sizes and mtimes, so that any change misses it."""

from __future__ import annotations

import hashlib
import os
import threading
import warnings

import torch

# Bump when the cache format or decoding changes, so old cache files are never reused.
CACHE_VERSION = "1"
CACHE_PREFIX = ".vae-sweep-cache-"


def path(root: str, files: list[str]) -> str:
    """Cache file named by a hash of the file list, sizes and mtimes: any change misses."""
    digest = hashlib.sha256(CACHE_VERSION.encode())
    prefix = os.path.join(root, "")  # relative names: a moved folder keeps its cache
    for path in files:
        st = os.stat(path)
        rel = path[len(prefix):] if path.startswith(prefix) else path
        digest.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return os.path.join(root, f"{CACHE_PREFIX}{digest.hexdigest()[:16]}.pt")


def read(cache: str, n: int) -> torch.Tensor | None:
    """The ``n`` images cached in ``cache``, or None: missing, or unreadable (with a warning)."""
    if os.path.exists(cache):
        try:
            cached = torch.load(cache, weights_only=True)
            if (isinstance(cached, torch.Tensor) and cached.dtype == torch.uint8
                    and cached.ndim == 4 and len(cached) == n):
                return cached
        except Exception as exc:  # a truncated or foreign file: decode again and overwrite
            warnings.warn(f"ignoring unreadable cache {cache}: {exc}", stacklevel=4)
    return None


def write(cache: str, images: torch.Tensor, root: str) -> None:
    """``images`` into ``cache``, or a warning where ``root`` cannot be written."""
    # Write to a private name, then rename: concurrent workers never read a half-written file.
    tmp = f"{cache}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        torch.save(images, tmp)
        os.replace(tmp, cache)
    except OSError as exc:  # read-only data is fine: it is just decoded again next time
        warnings.warn(f"cannot cache decoded images in {root} ({exc}); they will be "
                      "decoded again next run", stacklevel=4)
        if os.path.exists(tmp):
            os.remove(tmp)
