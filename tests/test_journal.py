"""A journal file as a study's storage (sweep.storage.journal): appends that never leave half
a line, a full disk given the reserve's room once, heartbeats on the file system's clock, a
replay rebuilt after a signal, and the file as Optuna's CLI and optuna-dashboard open it.
The contract every storage keeps runs on it in tests/test_storage.py and
tests/test_optuna_contract.py."""

from __future__ import annotations

import errno
import io
import json
import os
import time
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import optuna_dashboard
import pytest
from optuna.trial import TrialState

from sweep import optuna_private
from sweep.errors import DatabaseFull
from sweep.storage import journal as journal_module
from sweep.storage.database import open_storage, pinned
from sweep.storage.journal import SweepJournalStorage


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "study.log"


def lines(path: Path) -> list[dict]:
    text = path.read_bytes()
    assert text.endswith(b"\n")
    return [json.loads(line) for line in text.splitlines()]


def test_a_signal_after_a_whole_record_was_written_keeps_it(path, monkeypatch):
    """Python runs the handler once the write returned: the record is whole, and another
    process may have read it already (cutting it would shift every offset it keeps)."""
    storage = open_storage(f"journal://{path}", heartbeat_interval=None)
    study = optuna.create_study(study_name="s", storage=storage)
    real = os.write

    def whole_then_signal(fd: int, data: bytes) -> int:
        real(fd, data)
        raise KeyboardInterrupt
    monkeypatch.setattr(journal_module.os, "write", whole_then_signal)
    with pytest.raises(KeyboardInterrupt):
        study.set_user_attr("k", "written")
    monkeypatch.setattr(journal_module.os, "write", real)
    study.set_user_attr("j", "after")
    again = optuna.load_study(study_name="s", storage=open_storage(str(path)))
    assert again.user_attrs == {"k": "written", "j": "after"} and len(lines(path)) == 3


def test_an_append_cut_short_is_cut_back_whole(path, monkeypatch):
    storage = open_storage(f"journal://{path}", heartbeat_interval=None)
    study = optuna.create_study(study_name="s", storage=storage)
    before = path.read_bytes()
    real = os.write

    def half_then_signal(fd: int, data: bytes) -> int:
        real(fd, data[: len(data) // 2])
        raise KeyboardInterrupt  # a signal inside the write
    monkeypatch.setattr(journal_module.os, "write", half_then_signal)
    with pytest.raises(KeyboardInterrupt):
        study.set_user_attr("k", "lost")
    assert path.read_bytes() == before
    monkeypatch.setattr(journal_module.os, "write", real)
    study.set_user_attr("k", "kept")
    again = optuna.load_study(study_name="s", storage=open_storage(str(path)))
    assert again.user_attrs == {"k": "kept"} and len(lines(path)) == 2


def test_a_torn_tail_left_by_a_killed_writer_is_cut_by_the_next_append(path):
    storage = open_storage(f"journal://{path}", heartbeat_interval=None)
    study = optuna.create_study(study_name="s", storage=storage)
    with path.open("ab") as f:
        f.write(b'{"op_code":2,"worker_id":"dead","study_id":0,"user_a')  # SIGKILL here
    study.set_user_attr("k", 1)
    assert [r["op_code"] for r in lines(path)] == [0, 2]
    assert optuna.load_study(study_name="s", storage=open_storage(str(path))).user_attrs == {
        "k": 1}


def test_a_full_disk_is_given_the_reserves_room_once_then_stops_every_worker(path, monkeypatch):
    storage = open_storage(f"journal://{path}", heartbeat_interval=5, reserve=True)
    assert isinstance(storage, SweepJournalStorage) and storage.reserve is not None
    study = optuna.create_study(study_name="s", storage=storage)
    reserve = Path(f"{path}-reserve")
    assert reserve.stat().st_size > 0
    real, full = os.write, [1]

    def write(fd: int, data: bytes) -> int:
        if full[0]:
            full[0] -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)
    monkeypatch.setattr(journal_module.os, "write", write)
    study.set_user_attr("in the room", True)  # the reserve emptied, the write done there
    assert reserve.stat().st_size == 0
    with pytest.raises(DatabaseFull) as caught:
        storage.check_room()  # every worker sharing the file stops at its next step
    full[0] = 1
    with pytest.raises(DatabaseFull) as caught:
        study.set_user_attr("no room left", True)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "No space left" in message
    assert optuna.load_study(study_name="s", storage=open_storage(str(path))).user_attrs == {
        "in the room": True}
    monkeypatch.setattr(journal_module.os, "write", real)  # space freed: a resume arms it again
    open_storage(f"journal://{path}", heartbeat_interval=5, reserve=True)
    assert reserve.stat().st_size > 0


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed")  # ask(), as workers do
def test_stale_trials_go_by_the_file_systems_clock_and_not_after_a_hold_up(path):
    storage = open_storage(f"journal://{path}", heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name="s", storage=storage)
    beating, silent = study.ask(), study.ask()
    ids = optuna_private.trial_id(beating), optuna_private.trial_id(silent)
    assert isinstance(storage, SweepJournalStorage)
    assert sorted(storage.unclaimed_running(0)) == sorted(ids)  # neither beat yet
    for trial_id in ids:
        storage.record_heartbeat(trial_id)
    optuna.storages.fail_stale_trials(study)
    assert storage.unclaimed_running(0) == []
    beat = storage.beats / str(ids[1])
    old = os.stat(beat).st_mtime - 3  # 3 s before the file system's now: past the grace
    os.utime(beat, (old, old))
    storage.last_look = time.monotonic() - 100  # this process was held up: no judgement yet
    optuna.storages.fail_stale_trials(study)
    assert [t.state for t in study.trials] == [TrialState.RUNNING, TrialState.RUNNING]
    optuna.storages.fail_stale_trials(study)
    assert [t.state for t in study.trials] == [TrialState.RUNNING, TrialState.FAIL]
    assert study.trials[1].user_attrs["fail_reason"].startswith("no heartbeat for over 2 s")
    assert not beat.exists()  # a finished trial's beat goes


def test_a_replay_left_half_done_by_a_signal_is_rebuilt(path):
    storage = open_storage(f"journal://{path}", heartbeat_interval=None)
    study = optuna.create_study(study_name="s", storage=storage)
    mine = study.ask()
    other = optuna.load_study(study_name="s",
                             storage=open_storage(str(path), heartbeat_interval=None))
    other.ask()
    other.set_user_attr("seen", True)
    assert isinstance(storage, SweepJournalStorage)
    # The signal landed after a record was counted and before it was applied.
    storage._replay_result.log_number_read += 1
    assert len(study.get_trials()) == 1
    storage.fresh_connections()
    assert len(study.get_trials()) == 2 and study.user_attrs == {"seen": True}
    study.tell(mine, 1.0)  # still this process's own trial: its records land on it
    assert other.trials[0].state == TrialState.COMPLETE


def test_the_file_opens_as_optunas_cli_and_optuna_dashboard_take_it(path, tmp_path, monkeypatch):
    storage = open_storage(f"journal://{path}", heartbeat_interval=None)
    optuna.create_study(study_name="s", storage=storage).optimize(lambda t: 1.0, n_trials=2)
    assert isinstance(open_storage(str(path)), SweepJournalStorage)  # a plain path, as Optuna's
    monkeypatch.chdir(tmp_path)
    assert pinned("journal://study.log") == f"journal://{path}"
    app = optuna_dashboard.wsgi(str(path))  # the dashboard's own guess: a journal file
    environ: dict = {"PATH_INFO": "/api/studies", "REQUEST_METHOD": "GET",
                     "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    body = b"".join(app(environ, lambda status, headers, exc=None: None))
    [summary] = json.loads(body)["study_summaries"]
    assert summary["study_name"] == "s"


def test_the_plain_dashboard_command_serves_a_journal_studys_images(tmp_path, capsys):
    from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta
    from test_copy import PNG, a_study, get

    from sweep.cli import main

    url = a_study(tmp_path, backend="journal")
    assert main(["dashboard", "--storage", url, "--print-command"]) == 0
    command = capsys.readouterr().out.strip().splitlines()[-1].split()  # after its comment
    assert command[:2] == ["optuna-dashboard", str(tmp_path / "src.log")]
    store = FileSystemArtifactStore(command[command.index("--artifact-dir") + 1])
    app = optuna_dashboard.wsgi(command[1], artifact_store=store)  # as the command opens it
    storage = open_storage(url, heartbeat_interval=None)
    for n, trial in enumerate(optuna.load_study(study_name="s", storage=storage).trials):
        [meta] = get_all_artifact_meta(trial, storage=storage)
        status, body = get(app, f"/artifacts/0/{optuna_private.trial_id(trial)}/"
                                f"{meta.artifact_id}")
        assert status.startswith("200") and body == PNG + bytes([n])
