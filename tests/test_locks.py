"""LeaseLock, the study lock of a journal on a shared file system (sweep.storage.locks):
exclusive among processes and threads, reentrant in one thread, broken once its holder is
dead and never while it lives."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

from sweep.storage.locks import LeaseLock


def _count(lock_path: str, counter: str, rounds: int) -> None:
    lock = LeaseLock.of(Path(lock_path))
    for _ in range(rounds):
        with lock.held():
            value = int(Path(counter).read_text())
            time.sleep(0.001)  # a read-modify-write that races without the lock
            Path(counter).write_text(str(value + 1))


def test_processes_take_turns(tmp_path):
    counter = tmp_path / "counter"
    counter.write_text("0")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_count, args=(str(tmp_path / "s.lock"), str(counter), 30))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert counter.read_text() == "90"
    assert not (tmp_path / "s.lock").exists()


def test_one_thread_reenters_and_another_waits(tmp_path):
    lock = LeaseLock.of(tmp_path / "s.lock")
    order: list[str] = []

    def take() -> None:
        with lock.held():
            order.append("other")

    with lock.held():
        with lock.held():  # a claim inside the study lock, as on SQLite
            other = threading.Thread(target=take)
            other.start()
            time.sleep(0.2)
            order.append("first")
    other.join(timeout=10)
    assert order == ["first", "other"]


def test_a_dead_holders_lock_is_broken_and_a_live_ones_is_not(tmp_path):
    dead = tmp_path / "dead.lock"
    dead.write_text("host:1:gone")  # left by a process killed while holding it
    start = time.monotonic()
    with LeaseLock(str(dead), renew_s=0.05, break_s=0.5).held():
        waited = time.monotonic() - start
    assert 0.5 <= waited < 5

    live = LeaseLock(str(tmp_path / "live.lock"), renew_s=0.05, break_s=0.3)
    other = LeaseLock(str(tmp_path / "live.lock"), renew_s=0.05, break_s=0.3)  # another process's
    got: list[float] = []

    def take() -> None:
        with other.held():
            got.append(time.monotonic())

    with live.held():
        waiter = threading.Thread(target=take)
        waiter.start()
        time.sleep(1.0)  # over three times the break: renewed all along
        assert got == []
        released = time.monotonic()
    waiter.join(timeout=10)
    assert got and got[0] >= released
