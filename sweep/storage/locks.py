"""The locks that serialise what RDBStorage leaves racy: ``FileLock``, an exclusive ``flock``
on a file beside an SQLite database (the claim of a WAITING trial, the study lock, table
creation); ``named_lock``, a server's named lock (``pg_advisory_lock``, MySQL's
``GET_LOCK``); and ``creation_lock``, held while RDBStorage creates a new database's tables.
``LeaseLock`` is the study lock of a journal file on a shared file system, where ``flock``
may not reach the other machines (sweep.storage.journal).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy
import sqlalchemy.exc


class FileLock:
    """An exclusive ``flock`` on one file, shared by the threads of a process (reentrant
    per thread; other threads wait). One instance per path and process."""

    _all: dict[str, FileLock] = {}
    _guard = threading.Lock()

    def __init__(self, path: str) -> None:
        self.path = path
        self.rlock = threading.RLock()
        self.depth = 0
        self.fd: int | None = None

    @classmethod
    def of(cls, path: Path) -> FileLock:
        key = str(path.resolve())
        with cls._guard:
            return cls._all.setdefault(key, cls(key))

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self.rlock:
            if self.depth == 0:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
                fcntl.flock(self.fd, fcntl.LOCK_EX)
            self.depth += 1
            try:
                yield
            finally:
                self.depth -= 1
                if self.depth == 0 and self.fd is not None:
                    fcntl.flock(self.fd, fcntl.LOCK_UN)
                    os.close(self.fd)
                    self.fd = None


class LeaseLock:
    """An exclusive lock among processes on any machines that share a file system, one that
    needs no ``flock``: NFS mounted without a lock daemon and Lustre's ``localflock`` keep
    ``flock`` on one machine, so SQLite's locks do not hold there.

    The lock is a file created with ``O_EXCL`` (atomic on NFSv3 and later and on Lustre: what
    Optuna's ``JournalFileOpenLock`` relies on for every journal append). Its holder renews
    its mtime every ``renew_s`` seconds from a thread; a lock file whose mtime and inode
    stayed the same for ``break_s`` seconds, timed on the waiter's own clock (so no two
    machines' clocks are compared), belongs to a process that died holding it: the next
    waiter breaks it. Files are opened to be read, never only stat-ed, so that an NFS
    client's attribute cache cannot show a stale mtime (close-to-open consistency).
    Reentrant per thread, exclusive among the threads of a process (one instance per path
    and process, as FileLock)."""

    _all: dict[str, LeaseLock] = {}
    _guard = threading.Lock()

    def __init__(self, path: str, renew_s: float = 5.0, break_s: float = 60.0) -> None:
        self.path, self.renew_s, self.break_s = path, renew_s, break_s
        self.rlock = threading.RLock()
        self.depth = 0
        self.token = ""
        self.renewing: threading.Event | None = None

    @classmethod
    def of(cls, path: Path, **kwargs: float) -> LeaseLock:
        key = str(path.resolve())
        with cls._guard:
            return cls._all.setdefault(key, cls(key, **kwargs))

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self.rlock:
            if self.depth == 0:
                self._acquire()
            self.depth += 1
            try:
                yield
            finally:
                self.depth -= 1
                if self.depth == 0:
                    self._release()

    def _acquire(self) -> None:
        token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        seen, since, delay = None, time.monotonic(), 0.001
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                stamp = _stamp(self.path)
                if stamp != seen:
                    seen, since = stamp, time.monotonic()
                elif stamp is not None and time.monotonic() - since > self.break_s:
                    _break(self.path, stamp)
                time.sleep(delay)
                delay = min(2 * delay, 0.2)
                continue
            try:
                os.write(fd, token.encode())
            finally:
                os.close(fd)
            break
        self.token = token
        self.renewing = threading.Event()
        threading.Thread(target=self._renew, args=(self.renewing,), daemon=True,
                         name=f"lease-{Path(self.path).name}").start()

    def _renew(self, stop: threading.Event) -> None:
        while not stop.wait(self.renew_s):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def _release(self) -> None:
        if self.renewing is not None:
            self.renewing.set()
        with contextlib.suppress(OSError):
            if Path(self.path).read_text() == self.token:  # not one a waiter broke and took
                os.unlink(self.path)


def _stamp(path: str) -> tuple[int, int] | None:
    """(inode, mtime in ns) of the file at ``path``, read through an open (see LeaseLock);
    None when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return st.st_ino, st.st_mtime_ns


def _break(path: str, stamp: tuple[int, int]) -> None:
    """Remove the dead holder's lock file ``stamp`` names. It is moved aside first: should
    another waiter have broken it and taken the lock meanwhile, the file moved is a live one,
    and it goes back."""
    aside = f"{path}.broken-{uuid.uuid4().hex}"
    try:
        os.rename(path, aside)
    except OSError:  # gone already: another waiter broke it
        return
    if _stamp(aside) == stamp:
        os.unlink(aside)
        return
    # Put back; should a third waiter have made its own lock file in that instant, the two
    # share the lock: a window of microseconds, opened only by a holder that died.
    with contextlib.suppress(OSError):
        os.link(aside, path)
    os.unlink(aside)


_CREATION_KEY = "vae-sweep:create-tables"


def _lock_key(name: str) -> int:
    """A name as a PostgreSQL advisory lock key (a signed 64-bit integer)."""
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big", signed=True)


def named_lock(backend: str, name: str) -> tuple[Any, Any, Any] | None:
    """(lock, unlock, parameter) of a server's named lock on ``name``; None on a backend
    without one."""
    if backend == "postgresql":
        return (sqlalchemy.text("SELECT pg_advisory_lock(:k)"),
                sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), _lock_key(name))
    if backend in ("mysql", "mariadb"):
        return (sqlalchemy.text("SELECT GET_LOCK(:k, 600)"),
                sqlalchemy.text("SELECT RELEASE_LOCK(:k)"), str(_lock_key(name)))
    return None


def _created(engine: sqlalchemy.Engine) -> bool:
    """Whether RDBStorage finished creating this database: its last step stamps the schema
    revision into ``alembic_version``."""
    try:
        with engine.connect() as conn:
            return conn.execute(sqlalchemy.text(
                "SELECT version_num FROM alembic_version")).first() is not None
    except sqlalchemy.exc.SQLAlchemyError:  # no such table yet (or no server: said later)
        return False


@contextlib.contextmanager
def creation_lock(url: str, lock_file: Path | None,
                   engine_kwargs: dict[str, Any]) -> Iterator[None]:
    """Held while RDBStorage creates the tables: the file lock beside an SQLite file, a
    named lock on a server, taken on a connection of its own (closing it releases it).
    Not taken once the tables are there (RDBStorage then only reads), so a reader of an
    existing database leaves no lock file beside it."""
    engine = sqlalchemy.create_engine(url, **engine_kwargs)
    try:
        named = named_lock(engine.dialect.name, _CREATION_KEY)
        if _created(engine) or (named is None and lock_file is None):
            yield
            return
        if lock_file is not None:
            with FileLock.of(lock_file).held():
                yield
            return
        assert named is not None
        lock, unlock, param = named
        with engine.connect() as conn:
            conn.execute(lock, {"k": param})
            conn.commit()
            try:
                yield
            finally:
                with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
                    conn.execute(unlock, {"k": param})
                    conn.commit()
    finally:
        engine.dispose()
