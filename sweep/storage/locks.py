"""The locks that serialise what RDBStorage leaves racy: ``FileLock``, an exclusive ``flock``
on a file beside an SQLite database (the claim of a WAITING trial, the study lock, table
creation); ``named_lock``, a server's named lock (``pg_advisory_lock``, MySQL's
``GET_LOCK``); and ``creation_lock``, held while RDBStorage creates a new database's tables.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
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
