"""Where studies live: ``open_storage`` is the only place an Optuna storage is made.

Supported URLs: ``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db`` (one file
for the workers of one machine), ``journal:///absolute/path.log`` (``journal://relative.log``,
or a plain path to an existing journal, as Optuna's CLI takes it: an Optuna journal file
on a file system every machine shares, no server; ``sweep.storage.journal``), and any other
SQLAlchemy URL whose dialect and driver are installed (``postgresql://...``,
``mysql+pymysql://...``) for workers on several machines.
A URL without a driver uses the one that is installed: ``postgresql://`` means psycopg 3
to SQLAlchemy 2.1, and the ``[postgresql]`` extra installs psycopg2, so ``postgresql://``
becomes ``postgresql+psycopg2://`` when only psycopg2 is there (``mysql://`` likewise
becomes ``mysql+pymysql://``).
SQLite is set up for several local worker processes: WAL journal mode (readers never block
the writer; the mode is stored in the file) and a 60 s busy timeout, so a worker waits for
the write lock instead of failing with "database is locked". Besides the file live
``<db>-wal`` and ``<db>-shm`` (SQLite's), ``<db>-lock`` (the claim and creation lock) and,
once a study was started, ``<db>-reserve`` (room for the last writes when the disk fills up:
``sweep.storage.reserve``); moving a study to another disk means moving ``<db>`` and
``<db>-wal`` together.
Every database storage is an RDBStorage with heartbeats, so trials of a killed worker are
failed (and can be retried) by Optuna; it is a ``sweep.storage.sweep_storage.SweepStorage``:
retried through database outages, with an atomic claim of queued trials on SQLite and a
study-wide lock. A journal is a ``sweep.storage.journal.SweepJournalStorage``, which does
the same on its file (beside it: ``<log>.lock`` while a record is appended,
``<log>.<study>.lock`` while a worker takes a trial, ``<log>-heartbeats/``, ``<log>-reserve``).

A malformed URL, an unknown scheme, a missing driver or an SQLite path that cannot be
created raises StorageError, one line naming the URL (password hidden), before anything
is written. A study's artifacts and checkpoints live where its settings say (see
``sweep.storage.stores``); ``artifact_dir`` and ``checkpoint_dir`` are the defaults: beside the
SQLite or journal file, or in the working directory for a server database.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sqlite3
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep.errors import DatabaseFull, ParamError, StorageError, StorageUnreachable, UsageError
from sweep.storage.names import safe_name
from sweep.storage.outages import OUTAGE_ENV, outage_wait_s
from sweep.storage.reserve import NoRoom, Reserve

if TYPE_CHECKING:  # optuna and sqlalchemy load lazily: the CLI imports this module early
    import optuna
    from optuna.trial import FrozenTrial
    from sqlalchemy.engine import URL

    from sweep.storage.journal import SweepJournalStorage
    from sweep.storage.sweep_storage import SweepStorage

    # What open_storage gives a worker (heartbeats on): the calls of either that
    # sweep.runner.loop and sweep.runner.heartbeat make are the same.
    WorkerStorage = SweepStorage | SweepJournalStorage

DEFAULT_STORAGE = "sqlite:///sweeps.db"
STORAGE_ENV = "VAE_SWEEP_STORAGE"
# Long enough for a busy writer (heartbeats, trial updates of other workers) to finish.
SQLITE_TIMEOUT_S = 60
# Outside SQLite the artifacts and checkpoints have no file to sit beside: the working dir.
_NON_SQLITE_ARTIFACTS = "vae-sweep-artifacts"
_NON_SQLITE_CHECKPOINTS = "vae-sweep-checkpoints"
_EXPECTED = "expected sqlite:///path.db, journal:///path.log, postgresql://... or mysql://..."
JOURNAL = "journal://"
# How every journal record starts (Optuna's json.dumps with compact separators, ours too).
_JOURNAL_START = b'{"op_code":'
_SQLITE_HEADER = b"SQLite format 3\x00"
# A URL without a driver gets the first of these that is installed (SQLAlchemy's own
# default first, so a machine with psycopg 3 keeps it).
DRIVERS = {"postgresql": ("psycopg", "psycopg2"), "mysql": ("mysqldb", "pymysql"),
           "mariadb": ("mysqldb", "pymysql")}
_MODULES = {"psycopg": "psycopg", "psycopg2": "psycopg2", "mysqldb": "MySQLdb",
            "pymysql": "pymysql"}
# The extra of pyproject.toml that installs a driver for each backend, and that driver.
EXTRAS = {"postgresql": ("postgresql", "psycopg2"), "mysql": ("mysql", "pymysql"),
          "mariadb": ("mysql", "pymysql")}


def resolve_storage_url(arg: str | None) -> str:
    """The storage URL to use: ``arg``, else $VAE_SWEEP_STORAGE, else DEFAULT_STORAGE."""
    return arg or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def open_storage(
    url: str,
    *,
    heartbeat_interval: int | None = 60,
    grace_period: int | None = 180,
    stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    must_exist: bool = False,
    reserve: bool = False,
) -> optuna.storages.BaseStorage:
    """An RDBStorage on ``url`` (see the module docstring); StorageError if it is unusable.

    ``heartbeat_interval=None`` turns heartbeats off (for readers: status, dashboard).
    ``stale_trial_callback`` runs for each trial Optuna fails for a stale heartbeat.
    ``must_exist``: commands that only read a study must not create an empty SQLite file.
    ``reserve``: keep room beside an SQLite file for the writes that stop a run when its
    disk fills up (``sweep.storage.reserve``; what workers open); DatabaseFull when there is
    none left.
    """
    import optuna
    import sqlalchemy.exc

    from sweep.storage.locks import FileLock
    from sweep.storage.retries import full_disk, full_message, retrying, transient
    from sweep.storage.sweep_storage import SweepStorage

    journal = journal_path(url)
    if journal is not None:
        return _open_journal(journal, url, must_exist=must_exist, reserve=reserve,
                             heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                             stale_trial_callback=stale_trial_callback)
    parsed = _checked(url)
    shown = _shown(url, parsed)
    engine_kwargs: dict[str, Any]
    lock_file = kept = None
    if parsed.get_backend_name() == "sqlite":
        if must_exist and not Path(str(parsed.database)).is_file():
            raise StorageError(f"{shown}: no such database file")
        lock_file = Path(f"{parsed.database}-lock")
        _prepare_sqlite(parsed, shown, FileLock.of(lock_file))
        kept = _reserve(Path(str(parsed.database)), shown) if reserve else None
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    else:  # a server may drop idle connections during a long trial: test each before use
        engine_kwargs = {"pool_pre_ping": True}
    kwargs: dict[str, Any] = {"heartbeat_stale_trial_callback": stale_trial_callback,
                              "heartbeat_interval": heartbeat_interval,
                              "grace_period": grace_period}
    # A server that is down or restarting is waited out (sweep.storage.retries.retrying:
    # one line, a bounded backoff), exactly as a running worker waits: a process started during an
    # outage must not take it for bad input. What can never work fails at once.
    try:
        return retrying(SweepStorage)(parsed.render_as_string(hide_password=False),
                                      lock_file=lock_file, reserve=kept,
                                      engine_kwargs=engine_kwargs, **kwargs)
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError,
            DatabaseFull) as err:
        if isinstance(err, DatabaseFull) or full_disk(err):  # waiting or retyping cannot help
            # The room goes back to the disk (its owner's), and the other processes on this
            # file stop too.
            if kept is not None:
                kept.release()
            cause = err.__cause__ if isinstance(err, DatabaseFull) else err  # retrying's
            raise DatabaseFull(full_message(cause or err, shown)) from err
        if transient(err):
            raise StorageUnreachable(f"{shown}: still unreachable after {outage_wait_s():.0f} s "
                                     f"(${OUTAGE_ENV}): {_reason(err)}") from None
        raise StorageError(f"{shown}: cannot open storage: {_reason(err)}") from None


def journal_path(url: str) -> Path | None:
    """The journal file ``url`` names (see the module docstring), None for another URL;
    StorageError for ``journal://`` with no path."""
    if url.startswith(JOURNAL):
        if not url[len(JOURNAL):]:
            raise StorageError(f"{url}: a journal storage needs a file path ({_EXPECTED})")
        return Path(url[len(JOURNAL):]).expanduser()
    plain = Path(url).expanduser()
    if url and "://" not in url and plain.is_file() and _head(plain) != _SQLITE_HEADER:
        return plain
    return None


def _head(path: Path, size: int = len(_SQLITE_HEADER)) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(size)
    except OSError:
        return b""


def _open_journal(path: Path, url: str, *, must_exist: bool, reserve: bool,
                  **heartbeats: Any) -> optuna.storages.BaseStorage:
    """A SweepJournalStorage on ``path`` (see open_storage); StorageError if it is unusable,
    before anything is written."""
    from sweep.storage.journal import SweepJournalStorage
    from sweep.storage.retries import full_disk, full_message

    shown = _shown(url)
    if path.is_dir():
        raise StorageError(f"{shown}: is a directory (expected a journal file)")
    if must_exist and not path.is_file():
        raise StorageError(f"{shown}: no such journal file")
    head = _head(path)
    if head == _SQLITE_HEADER:
        raise StorageError(f"{shown}: an SQLite file, not a journal (sqlite:///{path})")
    # A file that is only the start of its first record: that record is being written.
    if head and not (head.startswith(_JOURNAL_START) or _JOURNAL_START.startswith(head)):
        raise StorageError(f"{shown}: not an Optuna journal file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError(f"{shown}: cannot create directory {path.parent} "
                           f"({err.strerror or err})") from None
    kept = _reserve(path, shown) if reserve else None
    try:
        return SweepJournalStorage(path, shown=shown, reserve=kept, **heartbeats)
    except DatabaseFull:
        if kept is not None:
            kept.release()
        raise
    except OSError as err:
        if full_disk(err):
            raise DatabaseFull(full_message(err, shown)) from None
        raise StorageError(f"{shown}: cannot open journal file {path} "
                           f"({err.strerror or err})") from None
    except Exception as err:  # a record that does not replay: not a journal Optuna wrote
        raise StorageError(f"{shown}: not an Optuna journal file ({type(err).__name__}: "
                           f"{str(err)[:200]})") from None


def _reserve(database: Path, shown: str) -> Reserve | None:
    """The database's reserve, armed (None where none can be kept); DatabaseFull when the
    disk has no room for it."""
    from sweep.storage.retries import full_message

    kept = Reserve(database)
    try:
        return kept if kept.arm() else None
    except NoRoom as err:
        raise DatabaseFull(full_message(err.strerror or str(err), shown)) from None


def _reason(err: BaseException) -> str:
    """The first line of the SQLAlchemy error in ``err`` (it names the driver's error)."""
    import sqlalchemy.exc

    while not isinstance(err, sqlalchemy.exc.SQLAlchemyError) and err.__cause__ is not None:
        err = err.__cause__
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def check_url(url: str) -> URL | Path:
    """``url`` parsed (a journal: its path), with its driver importable; StorageError
    otherwise. Writes nothing: commands call it first, before any slow import."""
    return journal_path(url) or _checked(url)


def _checked(url: str) -> URL:
    """A database URL parsed, with its driver importable (see check_url)."""
    parsed = with_driver(_parse(url))
    try:  # the dialect loads its DB-API module only when the engine is made: check it now
        parsed.get_dialect().import_dbapi()
    except ImportError as err:
        extra, driver = EXTRAS.get(parsed.get_backend_name(), (None, None))
        named = parsed.get_driver_name() if "+" in parsed.drivername else None
        how = (f"; install it: pip install -e '.[{extra}]'" if extra and named in (None, driver)
               else "")
        raise StorageError(f"{_shown(url, parsed)}: its database driver is not installed "
                           f"({err}){how}") from None
    return parsed


def with_driver(parsed: URL) -> URL:
    """``parsed`` with an installed driver when it names none (see the module docstring)."""
    backend = parsed.get_backend_name()
    if "+" in parsed.drivername or backend not in DRIVERS:
        return parsed
    for driver in DRIVERS[backend]:
        if importlib.util.find_spec(_MODULES[driver]) is not None:
            return parsed.set(drivername=f"{backend}+{driver}")
    return parsed  # none installed: check_url names the missing driver


def pinned(url: str) -> str:
    """``url`` with a relative SQLite or journal path made absolute, so that a handle kept
    open (in a notebook), or a job started elsewhere, reads the same file, and the artifacts
    beside it, from another directory."""
    journal = journal_path(url)
    if journal is not None:
        return url if journal.is_absolute() else f"{JOURNAL}{journal.resolve()}"
    db = _sqlite_path(url)
    if db is None or db.is_absolute():
        return url
    return f"sqlite:///{db.resolve()}"


def storage_file(url: str) -> Path | None:
    """The file the storage is (SQLite, a journal), beside which its artifacts and
    checkpoints go by default; None for a server."""
    return journal_path(url) or _sqlite_path(url)


def artifact_dir(url: str) -> Path:
    """The FileSystemArtifactStore's directory: ``<db dir>/<db stem>-artifacts`` for SQLite
    or a journal, else ``./vae-sweep-artifacts``. Not created here (the store does not
    create it either)."""
    db = storage_file(url)
    return db.parent / f"{db.stem}-artifacts" if db else Path(_NON_SQLITE_ARTIFACTS)


def checkpoint_dir(url: str, study_name: str) -> Path:
    """Checkpoints of ``study_name``'s trials: ``<db dir>/<db stem>-checkpoints/<study>``
    for SQLite or a journal, else ``./vae-sweep-checkpoints/<study>``. Not created here.

    A study name that is not a plain file name (``/``, ``..``, spaces...) is made one, with
    a hash of the real name appended so that two such studies never share a directory.
    """
    db = storage_file(url)
    root = db.parent / f"{db.stem}-checkpoints" if db else Path(_NON_SQLITE_CHECKPOINTS)
    return root / safe_name(study_name)


def _parse(url: str) -> URL:
    """The URL parsed, with a dialect SQLAlchemy knows (else StorageError)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        raise StorageError(f"{_shown(url)}: not a storage URL ({_EXPECTED})") from None
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        raise StorageError(f"{_shown(url, parsed)}: unsupported scheme "
                           f"{parsed.drivername!r} ({_EXPECTED})") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        # An in-memory database is private to one connection: no worker could share it.
        raise StorageError(f"{url}: an SQLite storage needs a file path ({_EXPECTED})")
    return parsed


def shown(url: str) -> str:
    """``url`` for messages, with any password hidden (``user:***@host``)."""
    try:
        return _shown(url, _parse(url))
    except StorageError:
        return _shown(url)


def _shown(url: str, parsed: URL | None = None) -> str:
    """``url`` for messages, with any password hidden."""
    if parsed is not None and parsed.password:
        return parsed.render_as_string(hide_password=True)
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _sqlite_path(url: str) -> Path | None:
    parsed = _parse(url)
    return Path(str(parsed.database)) if parsed.get_backend_name() == "sqlite" else None


def _prepare_sqlite(parsed: URL, shown: str, lock: Any) -> None:
    """Create the file's directory and switch the file to WAL (a no-op once it is). The
    switch takes SQLite's exclusive lock, which its busy timeout does not wait for: processes
    creating the file at once take turns under ``lock`` (the creation lock beside it). An
    existing file is switched without it, so a reader leaves no lock file behind."""
    path = Path(str(parsed.database))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError(f"{shown}: cannot create directory {path.parent} "
                           f"({err.strerror or err})") from None
    new = not path.exists() or path.stat().st_size == 0
    try:
        con = sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S)
        try:
            mode = str(con.execute("PRAGMA journal_mode").fetchone()[0])
            if mode.lower() != "wal":
                with lock.held() if new else contextlib.nullcontext():
                    mode = str(con.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error as err:  # a directory, a read-only place, not an SQLite file...
        if "disk is full" in str(err).lower():  # no room for the WAL: not the user's input
            from sweep.storage.retries import full_message

            raise DatabaseFull(full_message(err, shown)) from None
        raise StorageError(f"{shown}: cannot open SQLite file {path} ({err})") from None
    if mode.lower() != "wal":  # e.g. on a network file system, which has no shared memory
        warnings.warn(f"{shown}: SQLite kept journal mode {mode!r} instead of WAL; "
                      "concurrent workers may hit 'database is locked'", stacklevel=3)


def open_study(storage_arg: str | None, name: str | None
               ) -> tuple[optuna.Study, optuna.storages.BaseStorage, str]:
    """Study ``name`` (or the storage's only study) for reading, its storage and URL: what
    ``status``, ``report`` and ``export`` read. UsageError naming what is missing."""
    import optuna

    url = resolve_storage_url(storage_arg)
    storage = open_storage(url, heartbeat_interval=None, must_exist=True)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage,
                                                                  include_best_trial=False)]
    if name is None:
        if len(names) != 1:
            raise ParamError("study_name", f"is needed: {len(names)} studies in {shown(url)} "
                                      f"({', '.join(names) or 'none'})")
        name = names[0]
    if name not in names:
        raise UsageError(f"no study {name!r} in {shown(url)}")
    return optuna.load_study(study_name=name, storage=storage), storage, url
