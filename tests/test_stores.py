"""The study's store: folder paths and s3:// URLs as settings keep them, a folder store's
layout, and an S3 store (moto's in-process S3) taking images and carrying a checkpoint from
one machine's scratch folder to another's."""

import io

import optuna
import pytest
from optuna.artifacts import download_artifact, get_all_artifact_meta
from optuna.trial import TrialState

from sweep import optuna_private
from sweep.errors import ParamError
from sweep.runner.objective import Objective
from sweep.runner.requeue import Requeue
from sweep.space import parse_space
from sweep.storage.stores import FirstFound, normalize, open_stores


def space_of(tiny: dict, epochs: int):
    return parse_space({"objectives": ["mse", "rate"], "search": {}, "pruner": "none",
                        "fixed": {**tiny, "max_epochs": epochs, "kl_schedule": "linear",
                                  "kl_warmup_steps": 100_000}})


def test_normalize_keeps_absolute_folders_and_s3_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert normalize("store") == str(tmp_path / "store")
    assert normalize(f"file://{tmp_path}/x/") == str(tmp_path / "x")
    assert normalize("s3://bucket/a/b/") == "s3://bucket/a/b"
    assert normalize("s3://bucket") == "s3://bucket"
    (tmp_path / "f").write_text("")
    for bad in ("s3://", "http://host/x", "", "f"):
        with pytest.raises(ParamError, match="^artifacts "):
            normalize(bad)


@pytest.mark.parametrize("url", ["s3://AKIAKEY:SeCrEt@bucket/p", "s3://SeCrEt@bucket"])
def test_credentials_in_an_s3_url_are_refused_without_echoing_them(url):
    """The URL goes into the study's settings, which every reader of the database sees."""
    with pytest.raises(ParamError) as err:
        normalize(url)
    assert "AWS_ACCESS_KEY_ID" in str(err.value) and "s3://***@bucket" in str(err.value)
    assert "SeCrEt" not in str(err.value) and "AKIAKEY" not in str(err.value)


def test_a_folder_store_keeps_images_and_checkpoints_apart(tmp_path):
    stores = open_stores(str(tmp_path / "shared"), "postgresql://h/db", "a/b")
    assert stores.artifact_folder == tmp_path / "shared" / "artifacts"
    assert stores.artifact_folder.is_dir()
    ckpt = stores.checkpoints.local_dir(3)
    assert ckpt.parent.parent == tmp_path / "shared" / "checkpoints" and ckpt.name == "trial-3"
    default = open_stores(None, f"sqlite:///{tmp_path}/s.db", "x")
    assert default.artifact_folder == tmp_path / "s-artifacts"


def test_first_found_reads_from_whichever_store_has_the_artifact(tmp_path):
    a = open_stores(str(tmp_path / "a"), "sqlite:///x.db", "s").artifacts
    b = open_stores(str(tmp_path / "b"), "sqlite:///x.db", "s").artifacts
    b.write("id-1", io.BytesIO(b"png"))
    assert FirstFound([a, b]).open_reader("id-1").read() == b"png"


def test_an_s3_store_takes_images_and_moves_a_checkpoint_between_machines(
        tmp_path, tiny, images, monkeypatch):
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    for key, value in {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with moto.mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="sweeps")
        url = "sqlite:///unused.db"

        def machine(name: str):
            stores = open_stores("s3://sweeps/team", url, "study", client=client)
            stores.checkpoints.scratch = tmp_path / name  # type: ignore[attr-defined]
            return stores

        study = optuna.create_study(directions=["minimize", "minimize"])
        space = space_of(tiny, 2)
        one = machine("one")
        epochs = []

        def stop_at_second_epoch():
            epochs.append(1)
            if len(epochs) == 2:
                raise KeyboardInterrupt

        trial = study.ask()
        with pytest.raises(KeyboardInterrupt):
            Objective(space, images, one.artifacts, one.checkpoints,
                      on_epoch=stop_at_second_epoch)(trial)
        keys = [o["Key"] for o in client.list_objects_v2(Bucket="sweeps")["Contents"]]
        assert keys == ["team/checkpoints/study/trial-0/last.ckpt"]
        Requeue("test")(study, study.tell(trial, state=TrialState.FAIL))

        two = machine("two")  # another machine: nothing in its scratch folder
        rerun = study.ask()
        study.tell(rerun, Objective(space, images, two.artifacts, two.checkpoints)(rerun))
        done = study.trials[1]
        assert done.state == TrialState.COMPLETE and done.user_attrs["start_epoch"] == 1
        # Named relative to the store (no machine's folders in a shared database).
        assert done.user_attrs["resumed_from"] == "trial-0/last.ckpt"
        metas = get_all_artifact_meta(done, storage=optuna_private.study_storage(study))
        assert {m.filename for m in metas} >= {"reconstructions.png", "samples.png"}
        png = next(m for m in metas if m.filename == "reconstructions.png")
        download_artifact(artifact_store=two.artifacts, artifact_id=png.artifact_id,
                          file_path=str(tmp_path / "r.png"))
        assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
        keys = {o["Key"] for o in client.list_objects_v2(Bucket="sweeps")["Contents"]}
        assert f"team/artifacts/{png.artifact_id}" in keys
        assert not any("checkpoints" in k for k in keys)  # removed once the trial finished
