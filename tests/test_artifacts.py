"""Per-trial artifacts: upscaled labelled pictures, a curves picture, the weights, and the
same order in every trial, read the way optuna-dashboard reads it."""

from __future__ import annotations

import json

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta
from optuna_dashboard.artifact._backend import list_trial_artifacts
from PIL import Image

from models.config import Config
from models.module import VAE
from sweep.answer.trial_artifacts import N_IMAGES, ORDER, SCALE, upload_trial_artifacts
from sweep.answer.weights import load_model


def test_two_trials_list_their_artifacts_in_the_same_order(tmp_path, tiny, images):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db")
    store = FileSystemArtifactStore(str(tmp_path))
    module = VAE(Config.from_dict(dict(tiny)).to_dict(), tuple(images.shape[1:]), 10)
    history = [{"epoch": e, "step": e, "mse": 0.05, "rate": 1.0 + e, "active_units": e,
                "kl_weight": 0.5} for e in range(3)]
    metrics = {"mse": 0.05, "active_units": 2, "kl_per_dim": [0.5] * 16}
    # Optuna's random ids would list five files in the same order by chance once in 120
    # trials, so five agreeing is no accident.
    trials = []
    for i in range(5):
        trial = study.ask()
        upload_trial_artifacts(trial, store, module, images, metrics, history, weights=i == 0,
                               document={"trial": trial.number, "metrics": metrics,
                                         "history": history})
        trials.append(trial)
    storage = study._storage
    listed = [[a["filename"] for a in list_trial_artifacts(
        storage.get_study_system_attrs(study._study_id),
        storage.get_trial_system_attrs(t._trial_id), storage.get_trial(t._trial_id))]
        for t in trials]
    assert listed[0] == list(ORDER)
    assert all(names == list(ORDER[:-1]) for names in listed[1:])

    frozen = storage.get_trial(trials[0]._trial_id)
    metas = {m.filename: m for m in get_all_artifact_meta(frozen, storage=storage)}
    for name in ("reconstructions.png", "samples.png", "curves.png"):
        download_artifact(artifact_store=store, artifact_id=metas[name].artifact_id,
                          file_path=str(tmp_path / name))
        with Image.open(tmp_path / name) as im:
            im.load()
            if name != "curves.png":  # upscaled: every image SCALE times its size, at least
                assert im.size[0] >= N_IMAGES * images.shape[3] * SCALE
    download_artifact(artifact_store=store, artifact_id=metas["trial.json"].artifact_id,
                      file_path=str(tmp_path / "trial.json"))
    assert json.loads((tmp_path / "trial.json").read_text()) == {
        "trial": 0, "metrics": metrics, "history": history}
    download_artifact(artifact_store=store, artifact_id=metas["weights.pt"].artifact_id,
                      file_path=str(tmp_path / "w.pt"))
    loaded = load_model(tmp_path / "w.pt")
    x = images[:4].float() / 255
    module.eval()
    assert torch.equal(loaded.reconstruct(x), module.reconstruct(x))


def test_a_write_cut_short_by_a_full_disk_leaves_no_partial_file(tmp_path):
    import pytest

    from sweep.answer.trial_artifacts import upload_in_order

    class FillsUp(FileSystemArtifactStore):
        """Takes one file, then writes half of the next and runs out of space."""

        def write(self, artifact_id, content_body):
            if any(self._base_path.iterdir()):
                (self._base_path / artifact_id).write_bytes(content_body.read()[:10])
                raise OSError(28, "No space left on device")
            super().write(artifact_id, content_body)

    (tmp_path / "store").mkdir()
    store = FillsUp(str(tmp_path / "store"))
    for name in ("samples.png", "curves.png"):
        (tmp_path / name).write_bytes(b"x" * 100)
    trial = optuna.create_study().ask()
    with pytest.raises(OSError, match="No space"):
        upload_in_order(trial, store, [tmp_path / "samples.png", tmp_path / "curves.png"])
    kept = list((tmp_path / "store").iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == b"x" * 100  # the whole one only
