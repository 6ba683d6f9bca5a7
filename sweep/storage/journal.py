"""A study in one file on a shared file system, with no server: ``journal:///PATH``, Optuna's
JournalStorage over a JournalFileBackend (optuna-dashboard reads the file as it is:
``optuna-dashboard PATH``). SQLite cannot be shared by the machines of a cluster: its
locks are not honoured on NFS or Lustre, and WAL needs memory shared between its readers.

``SweepJournalStorage`` adds to Optuna's JournalStorage what SweepStorage adds to
RDBStorage, so every command and every worker runs on it unchanged:

- **Atomic claims** need nothing more. The journal is a log appended under a lock file
  (Optuna's ``JournalFileSymlinkLock``: ``PATH.lock``, made with a ``symlink``, atomic on
  NFS) and replayed in order by every process: of two processes that set one WAITING trial
  RUNNING, the replay gives it to the first, and ``set_trial_state_values`` tells the second
  that it lost.
- **The study lock** (``study_lock``): a ``LeaseLock`` on ``PATH.<study>.lock``
  (``sweep.storage.locks``), a lock file made with ``O_EXCL``, for the same reason.
- **Heartbeats**, which Optuna's JournalStorage lacks: a trial's beat is the mtime of
  ``PATH-heartbeats/<trial id>``; a RUNNING trial whose beat is older than the grace period
  is stale. Both times are the file system's (a probe file touched, then read), so machines
  whose clocks disagree never fail each other's live trials; a process that was itself held
  up for longer than the grace period (the file system gone a while: every beat stopped
  with it) judges no trial until it has looked once more. Trials that never beat are
  ``unclaimed_running``.
- **Whole lines.** Optuna appends its records in one write: a full disk, or a signal landing
  inside that write, would leave half a line, and every reader fails on the line after it.
  An append that fails loses its torn last line, never a whole one (readers may have read
  it: each keeps the offset after every line it read), and a torn tail left by a process
  killed inside its write is cut off by the next append, under the same lock.
- **A full disk**, as beside SQLite (``sweep.storage.reserve``): ``PATH-reserve`` keeps
  room, the first append that finds the disk full empties it and is written there, and
  ``check_room`` tells every worker to record its trial and stop.

Outages are not waited out here as they are for a server: a file system that goes away
blocks each call until it is back (an NFS hard mount) or fails it with an I/O error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import FrozenTrial, TrialState

from sweep import optuna_private
from sweep.errors import DatabaseFull
from sweep.storage.locks import LeaseLock
from sweep.storage.names import safe_name
from sweep.storage.reserve import Reserve
from sweep.storage.retries import full_message

_FULL = (errno.ENOSPC, errno.EDQUOT)


class WholeLineBackend(JournalFileBackend):
    """Optuna's file backend whose appends never leave half a line, and whose full disk
    uses the reserve's room once (see the module docstring)."""

    def __init__(self, path: str, reserve: Reserve | None, shown: str) -> None:
        self.lock = JournalFileSymlinkLock(path)  # Optuna's default, as its dashboard takes
        super().__init__(path, lock_obj=self.lock)
        self.path, self.reserve, self.shown = path, reserve, shown

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        import json

        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode()
        while True:
            try:
                self._append(data)
                return
            except OSError as err:
                if err.errno not in _FULL:
                    raise
                if self.reserve is not None and self.reserve.release():
                    continue  # once, in the room the reserve gave back
                raise DatabaseFull(full_message(err, self.shown)) from err

    def _append(self, data: bytes) -> None:
        self.lock.acquire()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
            try:
                _whole(fd)
                try:
                    done = 0
                    while done < len(data):
                        done += os.write(fd, data[done:])
                    os.fsync(fd)
                except BaseException:
                    # Only a torn last line goes: a whole one may have been read already
                    # (a signal lands after the write returns, before ``done`` counts it),
                    # and every reader keeps the offset after each line it read.
                    with contextlib.suppress(OSError):
                        _whole(fd)
                    raise
            finally:
                os.close(fd)
        finally:
            self.lock.release()


def _whole(fd: int) -> int:
    """The size of the journal up to its last whole line, cutting off a torn tail (the
    caller holds the append lock: no write is under way)."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    end = size
    while end > 0:
        chunk = os.pread(fd, min(end, 65536), end - min(end, 65536))
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            end = end - len(chunk) + cut + 1
            break
        end -= len(chunk)
    if end != size:
        os.ftruncate(fd, end)
    return end


class SweepJournalStorage(JournalStorage, optuna_private.BaseHeartbeat):
    """JournalStorage with heartbeats, a study lock, whole-line appends and a full disk's
    reserve (see the module docstring). ``url`` is ``journal:///PATH``."""

    def __init__(self, path: Path, *, shown: str, reserve: Reserve | None = None,
                 heartbeat_interval: int | None = None, grace_period: int | None = None,
                 stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None,
                 ) -> None:
        self.path, self.url, self.reserve = path, f"journal://{path}", reserve
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.heartbeat_stale_trial_callback = stale_trial_callback
        self.beats = Path(f"{path}-heartbeats")
        self.last_look = -float("inf")  # when this process last judged heartbeats
        super().__init__(WholeLineBackend(str(path), reserve, shown))

    # Heartbeats (optuna.storages._heartbeat.BaseHeartbeat)

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            _touch(self.beats / str(trial_id))
        except OSError as err:  # the first beat makes a file: a full disk says so here
            if err.errno not in _FULL:
                raise
            if self.reserve is None or not self.reserve.release():
                raise DatabaseFull(full_message(err, self.url)) from err
            _touch(self.beats / str(trial_id))

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        interval = self.heartbeat_interval or 0
        grace = self.grace_period or 2 * interval
        now = _touch(self.beats / "now")
        held_up = time.monotonic() - self.last_look > grace + interval
        first = self.last_look == -float("inf")
        self.last_look = time.monotonic()
        if held_up and not first:  # every beat may have stopped with this process
            return []
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = _mtime(self.beats / str(optuna_private.trial_id(trial)))
            if beat is not None and now - beat > grace:
                stale.append(optuna_private.trial_id(trial))
        for trial_id in stale:  # said while it can be: a finished trial takes no attrs
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                self.set_trial_user_attr(
                    trial_id, "fail_reason",
                    f"no heartbeat for over {grace} s: its worker was killed, or lost the "
                    "journal's file system for longer than that")
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(
            self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self.heartbeat_stale_trial_callback

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        done = super().set_trial_state_values(trial_id, state, values)
        if done and state.is_finished():  # its beat is of no more use
            with contextlib.suppress(OSError):
                (self.beats / str(trial_id)).unlink()
        return done

    def unclaimed_running(self, study_id: int) -> list[int]:
        """RUNNING trials that never beat (see SweepStorage.unclaimed_running)."""
        return [optuna_private.trial_id(t) for t in self.get_all_trials(
            study_id, deepcopy=False, states=(TrialState.RUNNING,))
            if _mtime(self.beats / str(optuna_private.trial_id(t))) is None]

    # What SweepStorage gives its callers too

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        from sweep.storage.sweep_storage import feasible_first

        return feasible_first(self, study_id, super().get_best_trial(study_id))

    def check_room(self) -> None:
        """DatabaseFull once a process found the journal's disk full (see SweepStorage)."""
        if self.reserve is not None and self.reserve.released():
            raise DatabaseFull(full_message(
                f"its disk filled up: {self.reserve.path.name} is used", self.url))

    @contextlib.contextmanager
    def study_lock(self, study_name: str) -> Iterator[None]:
        """Held by one process of the whole study at a time, on any machine."""
        with LeaseLock.of(Path(f"{self.path}.{safe_name(study_name)}.lock")).held():
            yield

    def fresh_connections(self) -> None:
        """Replay the journal afresh: a signal that landed inside a call of this thread may
        have left the in-memory replay half-applied (see Worker._record_interruption)."""
        optuna_private.replay_afresh(self)


def _touch(path: Path) -> float:
    """Renew ``path``'s mtime (made, with its folder, when missing); the mtime as the file
    system set it, read through an open (NFS: its server's clock, not its attribute cache)."""
    try:
        os.utime(path)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
    when = _mtime(path)
    return time.time() if when is None else when


def _mtime(path: Path) -> float | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return os.fstat(fd).st_mtime
    finally:
        os.close(fd)
