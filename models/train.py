"""Train one configuration: the single code path shared by ``sweep train`` and every trial.

``fit(cfg)`` seeds everything, builds the data module and the VAE, runs a Lightning Trainer
and returns the validation metrics of the last epoch, the per-epoch history and the
training throughput. Callers add their own callbacks (pruning, checkpoints) and may pass
already-loaded images so a worker decodes its data once for many trials.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch

from models import networks
from models.config import Config
from models.data import ImageDataModule
from models.module import LOG_EVERY_N_STEPS, VAE


class Throughput(pl.Callback):
    """Training images per second: the clock runs from an epoch's first batch to its end
    and stops while validation runs (Lightning validates inside the training epoch)."""

    def __init__(self) -> None:
        self.images = 0
        self.seconds = 0.0
        self._t0: float | None = None
        self._paused = False
        self.start_epoch = 0
        self.epochs = 0

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.start_epoch = trainer.current_epoch  # > 0 when resumed from a checkpoint

    def _now(self, module: pl.LightningModule) -> float:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)  # count the queued GPU work too
        return time.perf_counter()

    def _start(self, module: pl.LightningModule) -> None:
        self._t0 = self._now(module)

    def _stop(self, module: pl.LightningModule) -> None:
        if self._t0 is not None:
            self.seconds += self._now(module) - self._t0
            self._t0 = None

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if batch_idx == 0:
            self._start(module)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        # A tensor from TensorBatches, or (images, labels) from a torchvision DataLoader.
        self.images += (batch[0] if isinstance(batch, (list, tuple)) else batch).shape[0]

    def on_validation_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._paused = self._t0 is not None
        self._stop(module)

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self._paused:  # validation in the middle of an epoch: the epoch goes on
            self._start(module)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._stop(module)
        self.epochs += 1

    @property
    def images_per_sec(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


@dataclasses.dataclass
class FitResult:
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    module: VAE
    datamodule: ImageDataModule
    trainer: pl.Trainer


def total_steps(cfg: Config, steps_per_epoch: int) -> int:
    """Optimiser steps the run will take: what the cyclical schedule spreads its cycles over."""
    by_epochs = cfg.max_epochs * steps_per_epoch
    return min(by_epochs, cfg.max_steps) if cfg.max_steps > 0 else by_epochs


def fit(cfg: Config, *, images: torch.Tensor | None = None,
        callbacks: Sequence[pl.Callback] = (), ckpt_path: str | None = None,
        root_dir: str | None = None, logger: Any = False, progress: bool = False,
        accelerator: str = "auto", precision: str = "32-true",
        channels_last: bool | None = None, mutual_info_every_epoch: bool = True) -> FitResult:
    """Train ``cfg`` and return its metrics (see ``models.metrics``) and history.

    ``precision`` is Lightning's (``"bf16-mixed"``: bf16 autocast, float32 weights) and
    ``channels_last`` stores the conv weights NHWC, so cuDNN or oneDNN runs its NHWC kernels
    (the first conv's output follows the weights' layout; None: ``models.module.conv_layout``,
    NHWC on the CPU only). Both are how a run is executed, not what it is: they are
    arguments here, not Config fields, and ``python -m sweep bench`` checks that the metrics
    stay within tolerance of the float32 default. Without ``mutual_info_every_epoch`` the epochs
    before the last validate without the mutual information (their history entries lack
    it; the returned metrics have it).
    """
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = ImageDataModule(cfg, images)
    dm.setup("fit")
    steps = total_steps(cfg, len(dm.train_dataloader()))
    model = VAE(cfg.to_dict(), dm.image_shape, steps, eight_bit=dm.eight_bit)
    # The network is anyone's: its shapes are checked on two examples before the Trainer
    # starts, so a wrong one is named (module, shape, expected) instead of failing in a loss.
    networks.check_forward(cfg, model.encoder, model.decoder,
                           next(iter(dm.val_dataloader()))[:2])
    model.mutual_info_every_epoch = mutual_info_every_epoch
    model.channels_last = channels_last
    throughput = Throughput()
    has_checkpoint = any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks)
    trainer = pl.Trainer(
        max_epochs=cfg.max_epochs, max_steps=cfg.max_steps, accelerator=accelerator,
        devices=1, callbacks=[throughput, *callbacks], logger=logger,
        enable_checkpointing=has_checkpoint, enable_progress_bar=progress,
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=root_dir,
        log_every_n_steps=LOG_EVERY_N_STEPS, precision=precision,  # type: ignore[arg-type]
    )
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    except SystemExit:
        # Lightning answers Ctrl-C with a graceful stop and sys.exit(1). Give callers the
        # KeyboardInterrupt back: a sweep records the trial as interrupted and says so.
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    if not model.history or model.history[-1]["step"] != trainer.global_step:
        # max_steps ended the run mid-epoch: score the final weights like an epoch end.
        trainer.validate(model, datamodule=dm, verbose=False)
    metrics = {**model.last_metrics, "images_per_sec": throughput.images_per_sec,
               "epochs": len(model.history), "start_epoch": throughput.start_epoch,
               "epochs_trained": throughput.epochs, "steps": trainer.global_step,
               "device": str(trainer.strategy.root_device)}  # the module is back on CPU now
    return FitResult(metrics, model.history, model, dm, trainer)
