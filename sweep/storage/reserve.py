"""Room kept beside an SQLite database for the writes that stop a run when its disk fills up.

In WAL mode SQLite appends every commit to the ``-wal`` file, and it can only move those pages
into the database file (a checkpoint) by growing that file too. So a disk that fills up
stops every write at once, even the few that would mark the running trials FAIL and queue
their re-runs: they stayed RUNNING until ``resume`` (measured on a 1 MB tmpfs, where the WAL
took the whole disk before its first checkpoint).

Every process that writes to a study (``start``, ``resume``, ``worker``: storages opened with
heartbeats) therefore keeps ``<db>-reserve``, RESERVE_BYTES allocated beside the database:

- **armed** (RESERVE_BYTES long): made, or made whole again, when such a process opens the
  database. No room for it means the disk is full already: the process is told so before
  it writes anything.
- **released** (empty): the first write that finds the database full truncates it, and is
  tried once more in the room that frees. Every worker sharing the database reads an empty
  reserve as "the database is full": it stops beating, records its trial FAIL with its
  re-run queued (each takes about 50 KB), and exits. A writer opening the database arms it
  again once the disk has room (``resume`` after space was freed, or the file moved); one
  opening it before that is told the database is full.
- **absent**: none kept (a reader such as ``status`` opened the file, or the reserve could
  not be made: a file system without room accounting, read-only folders).

It is truncated rather than deleted so that the other processes see it was used, and an
empty or missing reserve is harmless: releasing it twice, or a missing one, frees nothing.
A journal file (``sweep.storage.journal``) keeps one too, ``<log>-reserve``: its appends
are what fill the disk there. The file stays beside the database like its ``-lock`` file;
moving a study to another disk means moving ``<db>`` and ``<db>-wal`` (the reserve is made
again there); ``sweep copy`` reads the database only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

# About ten workers' FAIL-and-re-queue writes (measured at 45 KB each, 11 WAL frames of
# 4 KB), with a few heartbeats and reports besides.
RESERVE_BYTES = 512 * 1024
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)


class NoRoom(OSError):
    """The disk has no room for the reserve: the database is full already."""


class Reserve:
    """``<db>-reserve`` of one SQLite database (see the module docstring)."""

    def __init__(self, database: Path, size: int = RESERVE_BYTES) -> None:
        self.path = Path(f"{database}-reserve")
        self.size = size

    def arm(self) -> bool:
        """Allocate the reserve (a no-op when it is whole). False when none can be kept
        here; NoRoom when the disk is full.

        An emptied reserve is made again only once the disk has twice its size free: it
        was emptied for the last writes of the workers that found the database full, and
        taking that room back while they write would leave their trials RUNNING. Freeing
        space, or moving the database, frees far more."""
        if self.released() and shutil.disk_usage(self.path.parent).free < 2 * self.size:
            raise NoRoom(errno.ENOSPC, f"{self.path.name} was emptied when the disk filled "
                                       f"up, and less than {2 * self.size // 1024} KB is free")
        new = not self.path.exists()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            if err.errno in _NO_ROOM:
                raise NoRoom(err.errno, f"no room for {self.path.name}") from None
            return False  # a read-only folder: the database itself says what is wrong
        try:
            _allocate(fd, self.size)
        except OSError as err:
            # Give back what was allocated: a partial reserve would only shrink the disk. A
            # file made here goes (an empty one would tell the others the disk filled up).
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                if new:
                    self.path.unlink()
            if err.errno in _NO_ROOM:
                raise NoRoom(err.errno, f"no room for {self.path.name} "
                                        f"({self.size // 1024} KB)") from None
            return False
        finally:
            os.close(fd)
        return True

    def release(self) -> bool:
        """Empty the reserve; whether that freed any room (False once another process,
        or this one, released it already, or when there is none)."""
        try:
            if self.path.stat().st_size == 0:
                return False
            os.truncate(self.path, 0)
        except FileNotFoundError:
            return False
        return True

    def released(self) -> bool:
        """Whether the reserve was used up: the database filled its disk."""
        try:
            return self.path.stat().st_size == 0
        except FileNotFoundError:  # removed by hand: nothing says the disk is full
            return False


def _allocate(fd: int, size: int) -> None:
    """``size`` bytes really allocated (not a sparse file), ENOSPC when they do not fit."""
    if hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, 0, size)
        return
    # macOS has no posix_fallocate: zeros written, then flushed so a full disk says so now.
    if os.fstat(fd).st_size < size:
        os.pwrite(fd, b"\0" * size, 0)
        os.fsync(fd)
