"""What users write today, for ``python -m sweep bench`` to measure the project against.

The shape of optuna-examples' ``pytorch/pytorch_lightning_simple.py``: a plain Optuna study
(no pruning) whose objective suggests the params, builds a LightningModule, feeds it
``torchvision.datasets.ImageFolder(root, transform=ToTensor())`` split by ``random_split``
through ``DataLoader(batch_size, shuffle=True, pin_memory=True, num_workers=...)``, fits a
default ``pl.Trainer(logger=True, enable_checkpointing=False, ...)`` and returns the metric.
The module is the project's own VAE (same networks, same loss, same metrics), taking the
DataLoader's ``(images, labels)`` batches, so what differs is only what a user's script
does differently: decoding files per sample in DataLoader workers, and Lightning's defaults.
Params come from ``sweep.space.suggest``, the project's one place that calls suggest_*.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import pytorch_lightning as pl
import torch
import torchvision
from torch.utils.data import DataLoader, random_split
from torchvision.transforms import ToTensor

from models.config import Config
from models.module import VAE
from models.train import Throughput, total_steps
from sweep.runner.seeds import sampler_seed
from sweep.space import Space, suggest

# What such scripts set: Lightning's warning suggests more DataLoader workers, and scripts
# take a few, capped by the cores they have.
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)
NAME = "baseline"


def write_image_folder(images: torch.Tensor, root: Path) -> Path:
    """``images`` (N, C, H, W) uint8 as PNGs in ImageFolder's layout (one class folder), so
    the baseline pays the decode cost a user's files cost."""
    folder = root / "0"
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        torchvision.io.write_png(image, str(folder / f"{i:06d}.png"))
    return root


class FolderVAE(VAE):
    """The project's VAE fed ``(images, labels)`` batches, as ImageFolder yields them."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return super().training_step(batch[0], batch_idx)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        super().validation_step(batch[0], batch_idx)


def loaders(root: str | Path, cfg: Config, workers: int
            ) -> tuple[DataLoader[Any], DataLoader[Any]]:
    """Train and validation DataLoaders over ImageFolder(root), split like the example."""
    dataset = torchvision.datasets.ImageFolder(str(root), transform=ToTensor())
    n_val = max(1, round(len(dataset) * cfg.val_fraction))
    train, val = random_split(dataset, [len(dataset) - n_val, n_val],
                              generator=torch.Generator().manual_seed(cfg.seed))
    common: dict[str, Any] = {"batch_size": cfg.batch_size, "pin_memory": True,
                              "num_workers": workers, "persistent_workers": workers > 0}
    return (DataLoader(train, shuffle=True, **common),
            DataLoader(val, shuffle=False, **common))


def fit(cfg: Config, root: str | Path, workers: int = DEFAULT_WORKERS,
        callbacks: Sequence[pl.Callback] = (), accelerator: str = "auto",
        limit_val_batches: float | int = 1.0) -> tuple[FolderVAE, Throughput]:
    """One run of the script's training: the module after ``cfg.max_epochs`` (or
    ``cfg.max_steps``) and the training images/s, clocked as ``models.train.fit`` clocks."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    train, val = loaders(root, cfg, workers)
    image_shape = tuple(train.dataset[0][0].shape)
    model = FolderVAE(cfg.to_dict(), image_shape, total_steps(cfg, len(train)))
    throughput = Throughput()
    with tempfile.TemporaryDirectory(prefix="vae-baseline-") as logs:
        trainer = pl.Trainer(logger=True, enable_checkpointing=False, max_epochs=cfg.max_epochs,
                             max_steps=cfg.max_steps, accelerator=accelerator, devices=1,
                             callbacks=[throughput, *callbacks], default_root_dir=logs,
                             limit_val_batches=limit_val_batches, enable_progress_bar=False,
                             enable_model_summary=False)
        trainer.fit(model, train_dataloaders=train, val_dataloaders=val)
    return model, throughput


def objective(trial: optuna.Trial, space: Space, root: str | Path, workers: int,
              accelerator: str = "auto") -> float:
    """Suggest, build, fit, return the validation neg_elbo (nats per image)."""
    cfg = suggest(trial, space)
    model, _ = fit(cfg, root, workers, accelerator=accelerator)
    trial.set_user_attr("active_units", model.last_metrics["active_units"])
    return float(model.last_metrics["neg_elbo"])


def run_study(space: Space, root: str | Path, n_trials: int, workers: int = DEFAULT_WORKERS,
              accelerator: str = "auto") -> optuna.Study:
    """The script's ``__main__``: an in-memory study, no pruner, ``n_trials`` trials.

    Its TPE seed is the one ``sweep start``'s first worker draws for a new study, so both
    propose the same first trials and a comparison of the two measures speed, not luck.
    """
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(storage=storage, study_name=NAME, direction="minimize")
    seed = sampler_seed(Config.from_dict(space.fixed).seed, 0, storage, NAME)
    study = optuna.load_study(study_name=NAME, storage=storage,
                              pruner=optuna.pruners.NopPruner(),
                              sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(lambda t: objective(t, space, root, workers, accelerator),
                   n_trials=n_trials, catch=(RuntimeError, ValueError))
    return study
