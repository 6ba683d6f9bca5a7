"""The VAE as one LightningModule; every variant is picked by a field of ``Config``.

Training and validation share ``_common_step``, which logs the beta-weighted ``loss`` that
is optimised beside the beta = 1 ``elbo`` loss. Validation also feeds ``metrics.Evaluation``,
whose metrics are logged per epoch and kept in ``last_metrics`` and ``history`` (saved in
checkpoints, so a resumed run keeps its curve).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from models import losses, schedules
from models.config import Config
from models.metrics import Evaluation
from models.networks import Decoder, Encoder

# Training steps between logged values (the Trainer's log_every_n_steps is set to match).
LOG_EVERY_N_STEPS = 10


class VAE(pl.LightningModule):
    def __init__(self, config: dict[str, Any], image_shape: tuple[int, int, int],
                 total_steps: int) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = cfg = Config.from_dict(config)
        self.image_shape = tuple(image_shape)
        self.total_steps = total_steps
        self.encoder = Encoder(image_shape, cfg.depth, cfg.width, cfg.latent_dim)
        self.decoder = Decoder(image_shape, cfg.depth, cfg.width, cfg.latent_dim,
                               cfg.decoder_activation)
        learned = cfg.likelihood == "gaussian" and cfg.sigma_mode == "learned"
        self.log_sigma = nn.Parameter(torch.zeros(())) if learned else None
        # Bernoulli without a sigmoid on the decoder reads its output as logits.
        self.logits = cfg.likelihood == "bernoulli" and cfg.decoder_activation == "none"
        self.evaluation: Evaluation | None = None
        self.last_metrics: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []

    def kl_weight(self) -> float:
        c = self.cfg
        return schedules.kl_weight(self.global_step, schedule=c.kl_schedule, ceiling=c.kl_weight,
                                   warmup_steps=c.kl_warmup_steps, total_steps=self.total_steps,
                                   cycles=c.kl_cycles, ratio=c.kl_ratio)

    def warmup_end(self) -> int:
        c = self.cfg
        return schedules.warmup_end(schedule=c.kl_schedule, warmup_steps=c.kl_warmup_steps,
                                    total_steps=self.total_steps, cycles=c.kl_cycles,
                                    ratio=c.kl_ratio)

    def to_image(self, out: torch.Tensor) -> torch.Tensor:
        """Decoder output as an image in pixel space."""
        return out.sigmoid() if self.logits else out

    def _log_sigma(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor | None:
        if self.cfg.likelihood != "gaussian":
            return None
        if self.log_sigma is not None:
            return self.log_sigma
        return losses.optimal_log_sigma(x, out)

    def _common_step(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        mu, logvar = self.encoder(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        out = self.decoder(z)
        log_sigma = self._log_sigma(x, out)
        pixels = losses.recon_nll(x, out, self.cfg.likelihood, log_sigma, self.logits)
        weight = self.kl_weight()
        terms = losses.vae_loss(pixels, losses.kl_per_dim(mu, logvar), weight=weight,
                                recon_reduction=self.cfg.recon_reduction,
                                kl_reduction=self.cfg.kl_reduction,
                                free_bits_nats=self.cfg.free_bits)
        on_step = stage == "train"
        # Training steps are logged only on the steps the logger writes (Lightning writes
        # after step k when k + 1 is a multiple of log_every_n_steps): every self.log call
        # costs Lightning about half a millisecond of bookkeeping, 5 % of a CPU step for five.
        if not on_step or (self.global_step + 1) % LOG_EVERY_N_STEPS == 0:
            self.log_dict({f"{stage}/loss": terms["loss"], f"{stage}/elbo": terms["elbo_loss"],
                           f"{stage}/recon": terms["recon"], f"{stage}/kl": terms["kl"],
                           **({"train/kl_weight": weight} if on_step else {})},
                          on_step=on_step, on_epoch=not on_step, prog_bar=on_step,
                          batch_size=x.shape[0])
        if not on_step and self.evaluation is not None:
            self.evaluation.update(x, self.to_image(self.decoder(mu)), out, mu, logvar,
                                   log_sigma, self.logits)
        return terms["loss"]

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "train")

    def on_validation_epoch_start(self) -> None:
        self.evaluation = Evaluation(self.cfg.likelihood, self.cfg.sigma_mode,
                                     self.cfg.au_threshold)

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self._common_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        assert self.evaluation is not None
        metrics = self.evaluation.compute()
        self.evaluation = None
        self.last_metrics = metrics
        self.log_dict({f"val/{k}": float(v) for k, v in metrics.items()
                       if not isinstance(v, list)})
        if not self.trainer.sanity_checking:
            self.history.append({"epoch": self.current_epoch, "step": self.global_step,
                                 "kl_weight": self.kl_weight(),
                                 **{k: v for k, v in metrics.items() if k != "kl_per_dim"}})

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.cfg.lr)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["vae_history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = list(checkpoint.get("vae_history", []))

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """n images decoded from the prior N(0, I), pixels in [0, 1]."""
        z = torch.randn(n, self.cfg.latent_dim, device=self.device)
        return self.to_image(self.decoder(z)).clamp(0, 1)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstructions of x from the posterior mean, pixels in [0, 1]."""
        return self.to_image(self.decoder(self.encoder(x)[0])).clamp(0, 1)
