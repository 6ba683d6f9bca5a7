"""``sweep copy``: a study copied into a new SQLite or journal file, or out of a journal,
keeps its images (the copy's dashboard serves them), and ``dashboard`` on a study whose
store holds none of its images says so in one line, naming ``--artifacts``."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import optuna_dashboard
import pytest
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact
from test_cli import free_port

from sweep import optuna_private
from sweep.cli import main
from sweep.commands.dashboard import stores_of
from sweep.errors import UsageError
from sweep.storage import settings as study_settings
from sweep.storage import trial_record
from sweep.storage.copying import copy_study, studies_without_artifacts
from sweep.storage.database import artifact_dir, open_storage

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n" + b"not really an image, but bytes to carry"


FILES = {"sqlite": "sqlite:///{tmp}/{name}.db", "journal": "journal://{tmp}/{name}.log"}


def a_study(tmp_path: Path, name: str = "s", backend: str = "sqlite") -> str:
    """A two-trial study in ``tmp_path/src.db`` (``src.log``: a journal) with one image per
    trial in its default store (beside the file) and its long values, as ``start`` leaves it."""
    url = FILES[backend].format(tmp=tmp_path, name="src")
    study = optuna.create_study(study_name=name,
                                storage=open_storage(url, heartbeat_interval=None))
    study_settings.write(study, {"goal": 2, "artifacts": None})
    folder = artifact_dir(url)
    folder.mkdir()
    for n in range(2):
        trial = study.ask()
        image = tmp_path / f"reconstructions-{n}.png"
        image.write_bytes(PNG + bytes([n]))
        upload_artifact(study_or_trial=trial, file_path=str(image),
                        artifact_store=FileSystemArtifactStore(str(folder)))
        trial_record.write(trial, {"seed": n}, [{"epoch": 0, "rate": float(n)}], [0.5, 0.5])
        study.tell(trial, float(n))
    return url


def get(app, path: str) -> tuple[str, bytes]:
    environ: dict = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc=None: status.append(s)))
    return status[0], body


@pytest.mark.parametrize("source,destination", [
    ("sqlite", "sqlite"), ("sqlite", "journal"), ("journal", "sqlite")])
def test_a_copy_into_a_new_file_serves_every_image(tmp_path, capsys, source, destination):
    source = a_study(tmp_path, backend=source)
    copy = FILES[destination].format(tmp=f"{tmp_path}/copies", name="copy")
    assert main(["copy", "--from", source, "--to", copy]) == 0
    out = capsys.readouterr().out
    assert out.startswith("copied study 's' (2 trials, 2 files) to ") and "copies" in out
    storage = open_storage(copy, heartbeat_interval=None)
    study = optuna.load_study(study_name="s", storage=storage)
    assert [t.value for t in study.trials] == [0.0, 1.0]
    assert [(trial_record.config(t), trial_record.history(t), trial_record.kl_per_dim(t))
            for t in study.trials] == [({"seed": n}, [{"epoch": 0, "rate": float(n)}],
                                        [0.5, 0.5]) for n in range(2)]
    assert study_settings.stored(study) == {"goal": 2, "artifacts": None}
    # What `dashboard` serves on the copy: its store, through optuna-dashboard's own app.
    stores = stores_of(storage, copy, None)
    assert stores[0].artifact_folder == tmp_path / "copies" / "copy-artifacts"
    app = optuna_dashboard.wsgi(storage, artifact_store=stores[0].artifacts)
    for n, trial in enumerate(study.trials):
        [meta] = get_all_artifact_meta(trial, storage=storage)
        ids = f"{optuna_private.study_id(study)}/{optuna_private.trial_id(trial)}"
        status, body = get(app, f"/artifacts/{ids}/{meta.artifact_id}")
        assert status.startswith("200") and body == PNG + bytes([n])
    assert studies_without_artifacts(storage, copy, None) == []


def test_a_copy_refuses_a_study_the_destination_has(tmp_path):
    source = a_study(tmp_path)
    copy_study(source, f"sqlite:///{tmp_path}/copy.db")
    with pytest.raises(UsageError, match="already has a study 's'"):
        copy_study(source, f"sqlite:///{tmp_path}/copy.db")


def test_dashboard_names_the_artifacts_flag_when_the_store_has_none_of_a_studys_images(
        tmp_path):
    source = a_study(tmp_path)
    bare = f"sqlite:///{tmp_path}/bare.db"  # Optuna's own copy: trials, not their files
    optuna.copy_study(from_study_name="s", from_storage=source, to_storage=bare)
    [(name, listed, where)] = studies_without_artifacts(open_storage(bare), bare, None)
    assert (name, listed) == ("s", 2) and where.endswith("bare-artifacts")
    server = subprocess.Popen(
        [sys.executable, "-m", "sweep", "dashboard", "--storage", bare, "--port",
         str(free_port())],
        cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        server.stdout.readline()  # the server says where it is: the check came before
    finally:
        server.kill()
    err = server.communicate()[1]
    lines = [line for line in err.splitlines() if "none of its" in line]
    assert len(lines) == 1, err
    assert "'s'" in lines[0] and "--artifacts" in lines[0] and "bare-artifacts" in lines[0]
    # Pointed at a store that has them (moved there, as the README says), it says nothing.
    shutil.copytree(artifact_dir(source), tmp_path / "moved" / "artifacts")
    assert studies_without_artifacts(open_storage(bare), bare, str(tmp_path / "moved")) == []
