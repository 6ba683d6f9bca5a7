"""Per-trial artifacts: 4:3 pictures with type legible in the dashboard's 200 x 150 px cards,
the weights, and the same order in every trial, read the way optuna-dashboard reads it."""

from __future__ import annotations

import json

import optuna
import pytest
import torch
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta
from optuna_dashboard.artifact._backend import list_trial_artifacts
from PIL import Image

from models.config import Config
from models.module import VAE
from sweep import optuna_private
from sweep.answer import trial_artifacts
from sweep.answer.trial_artifacts import CARD_PX, IMAGE_PX, ORDER, upload_trial_artifacts
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
    storage = optuna_private.study_storage(study)
    listed = [[a["filename"] for a in list_trial_artifacts(
        storage.get_study_system_attrs(optuna_private.study_id(study)),
        storage.get_trial_system_attrs(optuna_private.trial_id(t)),
        storage.get_trial(optuna_private.trial_id(t)))]
        for t in trials]
    assert listed[0] == list(ORDER)
    assert all(names == list(ORDER[:-1]) for names in listed[1:])
    # The dashboard sorts a trial's cards by file name: the ids' order is the one it shows.
    assert list(ORDER) == sorted(ORDER)

    frozen = storage.get_trial(optuna_private.trial_id(trials[0]))
    metas = {m.filename: m for m in get_all_artifact_meta(frozen, storage=storage)}
    for name in (n for n in ORDER if n.endswith(".png")):
        download_artifact(artifact_store=store, artifact_id=metas[name].artifact_id,
                          file_path=str(tmp_path / name))
        with Image.open(tmp_path / name) as im:  # 4:3: fitted into a card, it fills it
            assert im.size == IMAGE_PX and IMAGE_PX[0] * CARD_PX[1] == IMAGE_PX[1] * CARD_PX[0]
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


def legible(fig) -> list[str]:
    """The texts of ``fig`` that are smaller than MIN_CARD_TEXT_PX once the picture is fitted
    into a card, or that run past its edges."""
    renderer = fig.canvas.get_renderer()
    scale = CARD_PX[0] / IMAGE_PX[0]
    bad = []
    for text in fig.texts:
        box = text.get_window_extent(renderer)
        card_px = text.get_fontsize() * trial_artifacts.DPI / 72 * scale
        inside = box.x0 >= 0 and box.y0 >= 0 and box.x1 <= IMAGE_PX[0] and box.y1 <= IMAGE_PX[1]
        if card_px < trial_artifacts.MIN_CARD_TEXT_PX or not inside:
            bad.append(f"{text.get_text()!r}: {card_px:.1f} px, inside: {inside}")
    return bad


@pytest.mark.parametrize("au", [0, 256])
def test_the_pictures_read_in_a_card(au):
    x = torch.rand(16, 3, 32, 32)
    figures = {
        "at_a_glance": trial_artifacts.glance_figure(  # the longest words a study writes
            "posterior collapse" if au == 0 else f"{au} active units",
            ["trial 123, 7.823 bits/dim", "reference: cyclical annealing"],
            [("input", x[:4]), ("recon.", x[:4]), ("sample", x[:4])], alarm=au == 0),
        "reconstructions": trial_artifacts.reconstructions_figure(
            x, x, "trial 123: reconstructions", f"mse 0.04581, {au} active units"),
        "samples": trial_artifacts.samples_figure(x[:12], "trial 123: samples, z ~ N(0, I)")}
    for name, fig in figures.items():
        assert tuple(fig.get_size_inches() * fig.dpi) == IMAGE_PX, name
        assert legible(fig) == [], name


def test_a_collapsed_trial_says_so_in_red_at_a_glance(tmp_path, tiny, images):
    study = optuna.create_study()
    store = FileSystemArtifactStore(str(tmp_path))
    module = VAE(Config.from_dict(dict(tiny)).to_dict(), tuple(images.shape[1:]), 10)
    red = []
    for au in (0, 3):
        trial = study.ask()
        trial.set_user_attr("stage", "baseline")
        upload_trial_artifacts(trial, store, module, images,
                               {"mse": 0.05, "active_units": au, "bits_per_dim": 7.9}, [])
        (meta,) = [m for m in get_all_artifact_meta(trial) if m.filename == "at_a_glance.png"]
        path = tmp_path / f"glance-{au}.png"
        download_artifact(artifact_store=store, artifact_id=meta.artifact_id,
                          file_path=str(path))
        with Image.open(path) as im:
            headline = im.convert("RGB").crop((0, 0, IMAGE_PX[0], 60))
            red.append(sum(1 for r, g, b in headline.getdata() if r > 150 and g < 80 and b < 80))
    assert red[0] > 500 and red[1] == 0  # the collapse headline alone is red
