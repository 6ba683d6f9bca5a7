"""The user's own data as one array: ``npy:PATH``, a ``.npy`` file or a ``.npz`` with one array.

Shapes: ``(N, C, H, W)`` images or ``(N, D)`` vectors (tabular rows, time series), N
examples. The dtype says what the values are:

- ``uint8``: 8-bit data (images), stored as is and scaled to [0, 1] per batch like every
  built-in dataset; scored in bits/dim (``models.metrics.bits_per_dim``);
- a float type (float16, float32, float64): continuous data, kept as float32 and fed to the
  network unscaled; scored in nats/dim, without the 8-bit discretisation term.

Anything else is refused before any work starts, with one line naming the file
(``ConfigError("dataset", ...)``): a missing or unreadable file, an ``.npz`` without exactly
one array, another dtype (an int64 array could be counts or labels: say which by its
dtype), another rank, an empty axis, and a float array holding NaN or inf. The file type
is read from its first bytes (numpy's magic or a zip), not its extension.
"""

from __future__ import annotations

import os
import zipfile
from typing import IO

import numpy as np
import torch

from models.config import ConfigError

__all__ = ["PREFIX", "is_continuous", "load_array"]

PREFIX = "npy:"
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"


def _path(spec: str) -> str:
    return os.path.expanduser(spec[len(PREFIX):])


def _kind(path: str) -> str:
    """"npy" or "npz" by the file's first bytes; ConfigError for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(NPY_MAGIC))
    except OSError as err:
        reason = "no such file" if isinstance(err, FileNotFoundError) else err.strerror
        raise ConfigError("dataset", f"cannot read {path} ({reason})") from None
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(ZIP_MAGIC):
        return "npz"
    raise ConfigError("dataset", f"{path} is not a .npy or .npz file (numpy.save or "
                                 "numpy.savez writes one)")


def _npz_member(path: str) -> str:
    """The one array's name in an .npz; ConfigError unless there is exactly one."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith(".npy")]
    except (OSError, zipfile.BadZipFile) as err:
        raise ConfigError("dataset", f"cannot read {path} ({err})") from None
    if len(names) != 1:
        shown = ", ".join(n[:-len(".npy")] for n in names[:5]) + (", ..." if len(names) > 5
                                                                   else "")
        raise ConfigError("dataset", f"{path} holds {len(names)} arrays"
                                     f"{' (' + shown + ')' if names else ''}; npy: takes an "
                                     ".npz with exactly one (numpy.savez(path, x))")
    return names[0]


def _header(path: str) -> tuple[tuple[int, ...], np.dtype]:
    """The array's shape and dtype from its header alone (no data read)."""
    try:
        if _kind(path) == "npy":
            with open(path, "rb") as f:
                return _read_header(f)
        with zipfile.ZipFile(path) as zf, zf.open(_npz_member(path)) as f:
            return _read_header(f)
    except ConfigError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ConfigError("dataset", f"cannot read {path} ({err})") from None


def _read_header(f: IO[bytes]) -> tuple[tuple[int, ...], np.dtype]:
    fmt = np.lib.format
    version = fmt.read_magic(f)
    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, _, dtype = read(f)
    return tuple(int(n) for n in shape), np.dtype(dtype)


def _check(path: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if not (dtype == np.uint8 or np.issubdtype(dtype, np.floating)):
        raise ConfigError("dataset", f"{path} holds {dtype} values; expected uint8 (8-bit "
                                     "images) or a float type (continuous data)")
    if len(shape) not in (2, 4):
        raise ConfigError("dataset", f"{path} has shape {shape}, rank {len(shape)}; expected "
                                     "(N, C, H, W) images or (N, D) vectors")
    if 0 in shape:
        raise ConfigError("dataset", f"{path} has shape {shape}: an empty axis")


def is_continuous(spec: str) -> bool:
    """Whether ``npy:PATH``'s array holds floats (continuous data), from its header alone;
    False for every other dataset spec (the built-in ones and folders are 8-bit)."""
    if not spec.startswith(PREFIX):
        return False
    path = _path(spec)
    shape, dtype = _header(path)
    _check(path, shape, dtype)
    return dtype != np.uint8


def load_array(spec: str) -> torch.Tensor:
    """``npy:PATH``'s array, checked (see the module docstring): uint8 as is, floats as
    float32; (N, C, H, W) or (N, D)."""
    path = _path(spec)
    shape, dtype = _header(path)
    _check(path, shape, dtype)
    try:
        if _kind(path) == "npy":
            array = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as npz:
                array = npz[_npz_member(path)[:-len(".npy")]]
    except (OSError, ValueError, zipfile.BadZipFile) as err:  # e.g. a truncated file
        raise ConfigError("dataset", f"cannot read {path} ({err})") from None
    if dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(array))
    # float64 beyond float32's range becomes inf here, so the check comes after the cast.
    with np.errstate(over="ignore"):
        values = np.ascontiguousarray(array, dtype=np.float32)
    finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ConfigError("dataset", f"{path} has NaN or inf values (or beyond float32's range) "
                                     f"in {len(bad)} example(s), the first at index {bad[0]}; "
                                     "drop or impute them")
    return torch.from_numpy(values)
