"""The VAE as one LightningModule; every variant is picked by a field of ``Config``.

The networks are anyone's ``nn.Module``s: ``VAE`` takes an encoder and a decoder, or builds
them with ``cfg.model``'s builder (``models.networks``); the loss, likelihood, schedules and
metrics are this module's, the same for every network.

``step_terms(model, x, step)`` is the one computation of a batch's loss terms: the module's
``_common_step`` and ``python -m sweep bench``'s bare loop both call it. ``_common_step``
logs the beta-weighted ``loss`` that is optimised beside the beta = 1 ``elbo`` loss.
Validation also feeds ``metrics.Evaluation``, whose metrics are logged per epoch and kept in
``last_metrics`` and ``history`` (saved in checkpoints, so a resumed run keeps its curve).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from models import likelihoods, losses, networks, schedules
from models.config import Config, ConfigError
from models.metrics import Evaluation

# Training steps between logged values (the Trainer's log_every_n_steps is set to match).
LOG_EVERY_N_STEPS = 10


def conv_layout(device: torch.device) -> torch.memory_format:
    """The conv weights' memory layout on ``device`` unless a run asks otherwise: NHWC
    (channels_last) on the CPU, where oneDNN's NHWC kernels trained the default CIFAR-10
    model 7 % faster and validated it 16 % faster (one thread, batches of 40 and 128);
    NCHW elsewhere (``python -m sweep bench`` measures NHWC on a GPU as a variant). The
    layout changes only the order of float sums: results agree to rounding."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


@dataclasses.dataclass(frozen=True)
class StepTerms:
    """One batch's loss terms (see ``losses.vae_loss``) and what they were computed from."""

    loss: torch.Tensor  # the beta-weighted objective that is optimised
    recon: torch.Tensor  # reduced reconstruction term, batch mean
    kl: torch.Tensor  # reduced KL term, batch mean, no free bits
    elbo_loss: torch.Tensor  # recon + kl: the objective at beta = 1
    weight: float  # the KL weight (beta) at this step
    mu: torch.Tensor  # posterior means (B, d)
    logvar: torch.Tensor  # posterior log-variances (B, d)
    out: torch.Tensor  # decoder output (after its activation) for one posterior sample


def step_terms(model: VAE, x: torch.Tensor, step: int) -> StepTerms:
    """Encode ``x``, decode one posterior sample and compute ``model.cfg``'s loss at ``step``.

    The KL weight is ``model.cfg``'s schedule at ``step`` over ``model.total_steps``; the
    reconstruction term is the configured likelihood's per-pixel NLL; reductions and free
    bits as configured. Gradients flow: the caller backpropagates ``loss``.
    """
    cfg = model.cfg
    mu, logvar = model.encoder(x)
    out = model.decode(losses.reparameterize(mu, logvar))
    weight = model.kl_weight(step)
    terms = losses.vae_loss(model.likelihood.nll(x, out, model.likelihood_scalars()),
                            losses.kl_per_dim(mu, logvar), weight=weight,
                            recon_reduction=cfg.recon_reduction,
                            kl_reduction=cfg.kl_reduction, free_bits_nats=cfg.free_bits)
    return StepTerms(terms["loss"], terms["recon"], terms["kl"], terms["elbo_loss"], weight,
                     mu, logvar, out)


class VAE(pl.LightningModule):
    """``encoder`` x -> (mu, logvar) and ``decoder`` z -> raw output, trained as ``config``
    says; without them, ``config``'s network is built for examples of ``image_shape`` (a
    given decoder outputs ``networks.decoder_shape``: more channels for the discretised
    likelihoods).
    ``eight_bit``: the data is 8-bit, scaled to [0, 1] (bits/dim, clamped pictures); False
    for continuous data (``models.arrays``: nats/dim, outputs as decoded)."""

    def __init__(self, config: dict[str, Any], image_shape: tuple[int, ...],
                 total_steps: int, encoder: nn.Module | None = None,
                 decoder: nn.Module | None = None, eight_bit: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["encoder", "decoder"])
        self.cfg = cfg = Config.from_dict(config)
        self.image_shape = tuple(image_shape)
        self.total_steps = total_steps
        self.eight_bit = eight_bit
        if encoder is None or decoder is None:
            encoder, decoder = networks.build(cfg, self.image_shape)
        self.encoder, self.decoder = encoder, decoder
        self.likelihood = likelihoods.build(cfg)
        if self.likelihood.discrete and not eight_bit:
            raise ConfigError("likelihood", f"{cfg.likelihood} is a distribution over 8-bit "
                                            "levels; continuous data needs another")
        self.likelihood_params = nn.ParameterDict({
            name: nn.Parameter(torch.tensor(value))
            for name, value in self.likelihood.initial_params().items()})
        self.evaluation: Evaluation | None = None
        # False: the mutual information only at the run's final validation (the answer
        # reads it there; an epoch before reads the others, which cost far less).
        self.mutual_info_every_epoch = True
        # None: ``conv_layout`` of the device the trainer runs on; True/False: NHWC or not.
        self.channels_last: bool | None = None
        self.last_metrics: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []

    def setup(self, stage: str) -> None:
        # Before the trainer moves the module and builds its optimizer (fit, validate alike).
        if self.channels_last is None:
            self.to(memory_format=conv_layout(self.trainer.strategy.root_device))
        else:
            self.to(memory_format=torch.channels_last if self.channels_last
                    else torch.contiguous_format)

    def kl_weight(self, step: int | None = None) -> float:
        """The KL weight at ``step`` (default: the trainer's global step)."""
        c = self.cfg
        step = self.global_step if step is None else step
        return schedules.kl_weight(step, schedule=c.kl_schedule, ceiling=c.kl_weight,
                                   warmup_steps=c.kl_warmup_steps, total_steps=self.total_steps,
                                   cycles=c.kl_cycles, ratio=c.kl_ratio)

    def warmup_end(self) -> int:
        c = self.cfg
        return schedules.warmup_end(schedule=c.kl_schedule, warmup_steps=c.kl_warmup_steps,
                                    total_steps=self.total_steps, cycles=c.kl_cycles,
                                    ratio=c.kl_ratio)

    def likelihood_scalars(self) -> dict[str, torch.Tensor]:
        """The likelihood's learned scalars by name (the Parameters themselves, not copies)."""
        return dict(self.likelihood_params.items())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's output for codes ``z`` after ``decoder_activation`` (as the
        likelihood applies it): what the likelihood reads."""
        return self.likelihood.activate(self.decoder(z))

    def to_image(self, out: torch.Tensor) -> torch.Tensor:
        """Decoder output as an image in pixel space (the likelihood's mean)."""
        return self.likelihood.mean(out)

    def _common_step(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        terms = step_terms(self, x, self.global_step)
        on_step = stage == "train"
        # Training steps are logged only on the steps the logger writes (Lightning writes
        # after step k when k + 1 is a multiple of log_every_n_steps): every self.log call
        # costs Lightning about half a millisecond of bookkeeping, 5 % of a CPU step for five.
        if not on_step or (self.global_step + 1) % LOG_EVERY_N_STEPS == 0:
            self.log_dict({f"{stage}/loss": terms.loss, f"{stage}/elbo": terms.elbo_loss,
                           f"{stage}/recon": terms.recon, f"{stage}/kl": terms.kl,
                           **({"train/kl_weight": terms.weight} if on_step else {})},
                          on_step=on_step, on_epoch=not on_step, prog_bar=on_step,
                          batch_size=x.shape[0])
        if not on_step and self.evaluation is not None:
            self.evaluation.update(x, terms.out, terms.mu, terms.logvar)
        return terms.loss

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "train")

    def on_validation_epoch_start(self) -> None:
        self.evaluation = Evaluation(self.likelihood, self.likelihood_scalars(),
                                     self.cfg.au_threshold, self.eight_bit)

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self._common_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        assert self.evaluation is not None
        metrics = self.evaluation.compute(
            with_mutual_info=self.mutual_info_every_epoch or self.final_validation())
        self.evaluation = None
        self.last_metrics = metrics
        self.log_dict({f"val/{k}": float(v) for k, v in metrics.items()
                       if not isinstance(v, list)})
        if not self.trainer.sanity_checking:
            self.history.append({"epoch": self.current_epoch, "step": self.global_step,
                                 "kl_weight": self.kl_weight(),
                                 **{k: v for k, v in metrics.items() if k != "kl_per_dim"}})

    def final_validation(self) -> bool:
        """Whether the validation now running scores the run's final weights: the last
        epoch's, max_steps reached, or one outside fit (``Trainer.validate``)."""
        t = self.trainer
        if t.state.fn != "fit":
            return True
        if t.max_epochs is not None and 0 <= t.max_epochs <= t.current_epoch + 1:
            return True
        return 0 <= t.max_steps <= t.global_step

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.cfg.lr)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["vae_history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = list(checkpoint.get("vae_history", []))

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """n examples decoded from the prior N(0, I); 8-bit data: pixels in [0, 1]."""
        z = torch.randn(n, self.cfg.latent_dim, device=self.device)
        return self._in_range(self.to_image(self.decode(z)))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstructions of x from the posterior mean; 8-bit data: pixels in [0, 1]."""
        return self._in_range(self.to_image(self.decode(self.encoder(x)[0])))

    def _in_range(self, x: torch.Tensor) -> torch.Tensor:
        # Pixels live in [0, 1]; continuous data has no range to clamp to.
        return x.clamp(0, 1) if self.eight_bit else x
