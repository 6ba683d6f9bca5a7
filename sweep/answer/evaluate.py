"""A trial's model back from the study, and its metrics on images no trial saw.

``model_for`` loads the trial's ``weights.pt`` artifact, or, when the study kept none
(``start --no-weights``, or a PRUNED trial), retrains the trial's config and says so (or,
with ``retrain=False``, raises ``NoWeights``). ``evaluate`` scores a model on any images
through the module's own validation step (``trainer.validate``), so held-out numbers are
the very metrics of ``models.metrics``: the split of a ``--test-data`` spec (e.g.
``folder:data/test``, the CIFAR-10 copy's test set) stands beside the literature's test bits/dim.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import optuna
import pytorch_lightning as pl
import torch
from optuna.artifacts import download_artifact, get_all_artifact_meta
from optuna.trial import FrozenTrial

from models.config import Config
from models.data import TensorBatches, load_images
from models.module import VAE
from sweep.answer.recommend import trial_config
from sweep.answer.weights import load_model
from sweep.errors import NoWeights, ParamError
from sweep.optuna_private import ArtifactStore

log = logging.getLogger(__name__)


def artifact_store(url: str, study: optuna.Study) -> ArtifactStore:
    """The artifact store the study's workers write to: the one its settings name
    (``start --artifacts``), else the folder beside the SQLite file (as ``dashboard`` reads)."""
    from sweep.storage import settings as study_settings
    from sweep.storage.stores import open_stores

    return open_stores(study_settings.load(study).artifacts, url, study.study_name).artifacts


def download_weights(trial: FrozenTrial, storage: optuna.storages.BaseStorage,
                     store: ArtifactStore, dest: Path) -> bool:
    """Write the trial's ``weights.pt`` artifact to ``dest``; False when it has none."""
    metas = [m for m in get_all_artifact_meta(trial, storage=storage)
             if m.filename == "weights.pt"]
    if not metas:
        return False
    try:
        download_artifact(artifact_store=store, artifact_id=metas[-1].artifact_id,
                          file_path=str(dest))
    except Exception as err:  # a store that lost the file: the caller retrains
        log.warning("trial %d: its weights artifact cannot be read (%s)", trial.number, err)
        return False
    return True


def model_for(trial: FrozenTrial, storage: optuna.storages.BaseStorage, store: ArtifactStore,
              progress: bool = True, retrain: bool = True) -> tuple[VAE, str]:
    """The trial's trained VAE and where it came from ("saved weights" or "retrained");
    ``retrain=False``: NoWeights instead of a retraining."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.pt"
        if download_weights(trial, storage, store, path):
            return load_model(path), "saved weights"
    from models.train import fit
    from sweep.logs import quiet_logs

    cfg = trial_config(trial)
    if not retrain:
        raise NoWeights(f"trial {trial.number} ({trial.state.name}) kept no weights: its model "
                        f"must be trained again ({cfg.max_epochs} epoch(s)); pass retrain=True "
                        "to do so")
    log.warning("trial %d has no saved weights (%s); retraining its config (%d epoch(s))",
                trial.number, trial.state.name, cfg.max_epochs)
    from sweep.scoped import environ_kept

    before = torch.get_num_threads()
    threads = trial.user_attrs.get("threads")
    if isinstance(threads, int) and threads >= 1:  # the trial's count: the trial's weights
        torch.set_num_threads(threads)
    try:
        with quiet_logs(), environ_kept():
            module = fit(cfg, progress=progress).module
    finally:
        torch.set_num_threads(before)
    return module.eval(), "retrained"


def heldout_images(spec: str, data_dir: str = "data") -> torch.Tensor:
    """The held-out images of dataset spec ``spec`` (``--test-data``): a torchvision
    dataset's test split, synthetic images of another seed, a folder as it is; bad specs
    raise BAD_INPUT."""
    cfg = Config(dataset=spec, data_dir=data_dir)
    return load_images(cfg, held_out=True)


def evaluate(module: VAE, images: torch.Tensor, batch_size: int | None = None,
             seed: int | None = None) -> dict[str, Any]:
    """``module``'s validation metrics on all of ``images`` (as ``load_images`` gives them:
    uint8, or float32 for continuous data; (N, C, H, W) or (N, D))."""
    if tuple(images.shape[1:]) != tuple(module.image_shape):
        raise ParamError("test_data", f"has images of shape {tuple(images.shape[1:])}, the model "
                         f"was trained on {tuple(module.image_shape)}")
    if (images.dtype == torch.uint8) != module.eight_bit:
        kinds = {True: "8-bit (uint8) data", False: "continuous (float) data"}
        raise ParamError("test_data", f"holds {kinds[images.dtype == torch.uint8]}, the model "
                                      f"was trained on {kinds[module.eight_bit]}")
    pl.seed_everything(module.cfg.seed if seed is None else seed, verbose=False)
    trainer = pl.Trainer(accelerator="auto", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    batches = TensorBatches(images, batch_size or module.cfg.batch_size, shuffle=False,
                            drop_last=False)
    trainer.validate(module, dataloaders=batches, verbose=False)
    return {k: v for k, v in module.last_metrics.items() if k != "kl_per_dim"}
