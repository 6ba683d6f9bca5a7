"""Reconstruction likelihoods p(x|z): one class each, found by name in ``LIKELIHOODS``.

A likelihood reads the decoder output ``out`` (B, C, H, W) and gives

- ``nll``: the training term per pixel, shape (B, D), nats (squared error for ``mse``);
- ``mean``: the image it predicts, the mean of p(x|z) in pixel units ([0, 1] data): what
  reconstructions, samples and the cross-trial yardstick of ``models.metrics`` use;
- ``score`` / ``own_nll``: its own validation NLL at beta = 1 (the metric ``neg_elbo_own``),
  from per-batch sums, so likelihoods that fit something over the whole split can;
- ``initial_params``: learned scalars it adds to the model (the VAE holds them).

Adding a likelihood is one ``@register``-ed subclass here plus its test: config validation
(``Config.likelihood``), the module, the metrics and sweep's default search space all read
``LIKELIHOODS`` and need no edit.

No top-level torch import, on purpose: ``models.config`` imports this file for the names it
validates, and the CLI imports the config before torch so that bad input exits in a tenth of
a second. Methods import torch modules locally; by the time they run torch is loaded.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    import torch

Params = Mapping[str, "torch.Tensor"]


class Config(Protocol):
    """The fields of ``models.config.Config`` a likelihood reads: a protocol, not that class,
    since ``models.config`` imports this module (for the names it validates)."""

    @property
    def likelihood(self) -> str: ...
    @property
    def sigma_mode(self) -> str: ...
    @property
    def decoder_activation(self) -> str: ...

LIKELIHOODS: dict[str, type[Likelihood]] = {}


def register(cls: type[Likelihood]) -> type[Likelihood]:
    """Class decorator: make ``cls`` selectable as ``likelihood = cls.name``."""
    if not cls.name or cls.name in LIKELIHOODS:
        raise ValueError(f"likelihood name {cls.name!r} is empty or taken")
    LIKELIHOODS[cls.name] = cls
    return cls


def build(cfg: Config) -> Likelihood:
    """The likelihood ``cfg.likelihood`` names, configured by ``cfg``."""
    return LIKELIHOODS[cfg.likelihood](cfg)


class Likelihood(abc.ABC):
    """One observation model p(x|z) of the decoder output; see the module docstring."""

    name: ClassVar[str] = ""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def initial_params(self) -> dict[str, float]:
        """Learned scalars by name, with their initial values (none by default)."""
        return {}

    @abc.abstractmethod
    def nll(self, x: torch.Tensor, out: torch.Tensor, params: Params) -> torch.Tensor:
        """Training term per pixel, (B, D) with pixels flattened, for targets ``x``."""

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """The decoder output as the image it predicts (identity unless overridden)."""
        return out

    def score(self, x: torch.Tensor, out: torch.Tensor, params: Params
              ) -> dict[str, torch.Tensor]:
        """Per-batch sums (0-dim tensors) that ``own_nll`` turns into nats per image."""
        return {"nll": self.nll(x, out, params).sum()}

    def own_nll(self, sums: Mapping[str, float], images: int, pixels: int) -> float:
        """This likelihood's reconstruction NLL over the scored split, nats per image."""
        return sums["nll"] / images


def _squared_error(x: torch.Tensor, out: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"sse": (x - out).pow(2).sum()}


def _nll_at_optimal_variance(sums: Mapping[str, float], images: int, pixels: int) -> float:
    from models.losses import gaussian_nll_at_optimum

    return gaussian_nll_at_optimum(sums["sse"] / (images * pixels), pixels)


@register
class MSE(Likelihood):
    """Squared error (x - out)^2 per pixel: the seed question's loss, not a normalised density.

    Its own score reads it as the Gaussian it is proportional to, with one variance at its
    closed-form optimum over the split (Rybkin et al. 2021, eq. 5): that is the yardstick.
    """

    name = "mse"

    def nll(self, x: torch.Tensor, out: torch.Tensor, params: Params) -> torch.Tensor:
        return (x.flatten(1) - out.flatten(1)).pow(2)

    def score(self, x: torch.Tensor, out: torch.Tensor, params: Params
              ) -> dict[str, torch.Tensor]:
        return _squared_error(x, out)

    def own_nll(self, sums: Mapping[str, float], images: int, pixels: int) -> float:
        return _nll_at_optimal_variance(sums, images, pixels)


@register
class Gaussian(Likelihood):
    """-log N(x; out, sigma^2) per pixel, nats, one sigma shared by all pixels (sigma-VAE).

    Rybkin et al. 2021: ``sigma_mode = learned`` trains log sigma (starting at 0), ``optimal``
    sets sigma^2 to the batch MSE (their eq. 5) at every step; scored with the learned sigma,
    or at the optimal variance over the whole split.
    """

    name = "gaussian"

    @property
    def learned(self) -> bool:
        return self.cfg.sigma_mode == "learned"

    def initial_params(self) -> dict[str, float]:
        return {"log_sigma": 0.0} if self.learned else {}

    def nll(self, x: torch.Tensor, out: torch.Tensor, params: Params) -> torch.Tensor:
        from models.losses import gaussian_nll, optimal_log_sigma

        x, out = x.flatten(1), out.flatten(1)
        log_sigma = params["log_sigma"] if self.learned else optimal_log_sigma(x, out)
        return gaussian_nll(x, out, log_sigma)

    def score(self, x: torch.Tensor, out: torch.Tensor, params: Params
              ) -> dict[str, torch.Tensor]:
        return super().score(x, out, params) if self.learned else _squared_error(x, out)

    def own_nll(self, sums: Mapping[str, float], images: int, pixels: int) -> float:
        if self.learned:
            return super().own_nll(sums, images, pixels)
        return _nll_at_optimal_variance(sums, images, pixels)


@register
class Bernoulli(Likelihood):
    """Binary cross-entropy -[x log p + (1 - x) log(1 - p)] per pixel, nats, x in [0, 1].

    With ``decoder_activation = none`` the output is read as logits, p = sigmoid(out), and the
    loss is computed from the logits (stable); with a sigmoid decoder p = out, clamped to
    [1e-6, 1 - 1e-6] so that a saturated pixel costs at most 13.8 nats. Written out rather
    than ``F.binary_cross_entropy``, which raises on a NaN probability (a device-side assert
    on CUDA): a diverged run's NaN flows into the loss, as under every other likelihood, and
    is named as divergence (``sweep.runner.callbacks.CollapseStop``).
    """

    name = "bernoulli"

    @property
    def logits(self) -> bool:
        return self.cfg.decoder_activation == "none"

    def nll(self, x: torch.Tensor, out: torch.Tensor, params: Params) -> torch.Tensor:
        import torch.nn.functional as F

        x, out = x.flatten(1), out.flatten(1)
        if self.logits:
            return F.binary_cross_entropy_with_logits(out, x, reduction="none")
        p = out.clamp(1e-6, 1 - 1e-6)
        return -(x * p.log() + (1 - x) * (-p).log1p())

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return out.sigmoid() if self.logits else out
