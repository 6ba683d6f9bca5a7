"""Reconstruction likelihoods p(x|z): one class each, found by name in ``LIKELIHOODS``.

A likelihood reads the decoder output ``out`` (B, C, H, W) and gives

- ``nll``: the training term per pixel, shape (B, D), nats (squared error for ``mse``);
- ``mean``: the image it predicts, the mean of p(x|z) in pixel units ([0, 1] data): what
  reconstructions, samples and the cross-trial yardstick of ``models.metrics`` use;
- ``score`` / ``own_nll``: its own validation NLL at beta = 1 (the metric ``neg_elbo_own``),
  from per-batch sums, so likelihoods that fit something over the whole split can;
- ``initial_params``: learned scalars it adds to the model (the VAE holds them);
- ``outputs_per_channel``: decoder output channels per image channel (1; the discretised
  logistics need more), read by ``models.networks.build``; ``activate``: the decoder's raw
  output after ``decoder_activation`` (a sigmoid only where it makes sense);
- ``log_prob``: log p(x|z) per image, nats, as a density of x in [0, 1]^D at the
  parameters ``fitted`` over the scored split (the importance-weighted bound,
  ``models.iw_bound``); discrete likelihoods count a level's probability P as the density
  255 P, the convention the bits/dim of ``models.metrics`` undoes.

Adding a likelihood is one ``@register``-ed subclass here plus its test: config validation
(``Config.likelihood``), the module, the metrics and sweep's default search space all read
``LIKELIHOODS`` and need no edit.

No top-level torch import, on purpose: ``models.config`` imports this file for the names it
validates, and the CLI imports the config before torch so that bad input exits in a tenth of
a second. Methods import torch modules locally; by the time they run torch is loaded.
"""

from __future__ import annotations

import abc
import math
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
    @property
    def mixture_components(self) -> int: ...

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
    discrete: ClassVar[bool] = False  # a distribution over 8-bit levels (8-bit data only)

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def initial_params(self) -> dict[str, float]:
        """Learned scalars by name, with their initial values (none by default)."""
        return {}

    @abc.abstractmethod
    def nll(self, x: torch.Tensor, out: torch.Tensor, params: Params) -> torch.Tensor:
        """Training term per pixel, (B, D) with pixels flattened, for targets ``x``."""

    def outputs_per_channel(self) -> int:
        """Decoder output channels per channel of the image (one: the predicted image)."""
        return 1

    def activate(self, out: torch.Tensor) -> torch.Tensor:
        """The decoder's raw output after ``cfg.decoder_activation``: what ``nll`` reads."""
        return out.sigmoid() if self.cfg.decoder_activation == "sigmoid" else out

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """The decoder output as the image it predicts (identity unless overridden)."""
        return out

    def log_prob(self, x: torch.Tensor, out: torch.Tensor, params: Params) -> torch.Tensor:
        """log p(x|z) per image, (B,), nats: ``params`` holds ``fitted``'s values too."""
        return -self.nll(x, out, params).sum(1)

    def fitted(self, sums: Mapping[str, float], images: int, pixels: int) -> dict[str, float]:
        """Parameters fitted over the scored split from ``score``'s sums (none by default)."""
        return {}

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


def _optimal_log_sigma(sums: Mapping[str, float], images: int, pixels: int
                       ) -> dict[str, float]:
    from models.losses import MIN_VARIANCE

    return {"log_sigma": 0.5 * math.log(max(sums["sse"] / (images * pixels), MIN_VARIANCE))}


def _gaussian_log_prob(x: torch.Tensor, out: torch.Tensor, params: Params) -> torch.Tensor:
    from models.losses import gaussian_nll

    return -gaussian_nll(x.flatten(1), out.flatten(1), params["log_sigma"]).sum(1)


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

    def log_prob(self, x: torch.Tensor, out: torch.Tensor, params: Params) -> torch.Tensor:
        return _gaussian_log_prob(x, out, params)  # the Gaussian its own score reads it as

    def fitted(self, sums: Mapping[str, float], images: int, pixels: int) -> dict[str, float]:
        return _optimal_log_sigma(sums, images, pixels)


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

    def log_prob(self, x: torch.Tensor, out: torch.Tensor, params: Params) -> torch.Tensor:
        return _gaussian_log_prob(x, out, params)  # learned, or the split's optimum (fitted)

    def fitted(self, sums: Mapping[str, float], images: int, pixels: int) -> dict[str, float]:
        return {} if self.learned else _optimal_log_sigma(sums, images, pixels)


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


class _Discretised(Likelihood):
    """A distribution over the 256 levels of each sub-pixel (``models.discretized``), read
    from ``outputs_per_channel`` groups of the decoder's channels: group j is channels
    j C .. (j + 1) C - 1 of an image of C channels. ``nll`` is -log P(level), nats per
    sub-pixel, so bits/dim is nats / ln 2; ``own_nll`` and ``log_prob`` state it as the
    density 255 P over [0, 1] that the other likelihoods' figures are (``bits_per_dim_own``
    adds log2(255) back: exactly -log2 P per sub-pixel). The yardstick reads ``mean``, the
    mean of the clamped logistic(s), as every likelihood's predicted image. 8-bit data only.
    """

    discrete = True

    def groups(self, out: torch.Tensor) -> torch.Tensor:
        """(B, k C, ...) -> (B, k, D): each group flattened in the image's (C, ...) order."""
        return out.reshape(out.shape[0], self.outputs_per_channel(), -1)

    @abc.abstractmethod
    def locations(self) -> slice:
        """The groups that hold the logistics' locations."""

    def activate(self, out: torch.Tensor) -> torch.Tensor:
        import torch

        if self.cfg.decoder_activation != "sigmoid":
            return out
        # Only the locations are bounded to [0, 1]: a sigmoid scale or weight would cap them.
        parts = list(out.chunk(self.outputs_per_channel(), dim=1))
        parts[self.locations()] = [p.sigmoid() for p in parts[self.locations()]]
        return torch.cat(parts, dim=1)

    def image(self, out: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        """A (B, D) tensor in the image's shape (B, C, ...)."""
        return flat.reshape(out.shape[0], out.shape[1] // self.outputs_per_channel(),
                            *out.shape[2:])

    def own_nll(self, sums: Mapping[str, float], images: int, pixels: int) -> float:
        return sums["nll"] / images - pixels * math.log(255)

    def log_prob(self, x: torch.Tensor, out: torch.Tensor, params: Params) -> torch.Tensor:
        return super().log_prob(x, out, params) + x[0].numel() * math.log(255)


@register
class DiscretizedLogistic(_Discretised):
    """One logistic per sub-pixel, location and log-scale (groups 0 and 1), discretised to the
    256 levels: the IAF paper's decoder (Kingma et al. 2016, sec. 5.2)."""

    name = "discretized_logistic"

    def outputs_per_channel(self) -> int:
        return 2

    def locations(self) -> slice:
        return slice(0, 1)

    def nll(self, x: torch.Tensor, out: torch.Tensor, params: Params) -> torch.Tensor:
        from models.discretized import logistic_log_prob

        mean, log_scale = self.groups(out).unbind(1)
        return -logistic_log_prob(x.flatten(1), mean, log_scale)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        from models.discretized import logistic_mean

        return self.image(out, logistic_mean(*self.groups(out).unbind(1)))


@register
class DiscretizedLogisticMixture(_Discretised):
    """A mixture of ``cfg.mixture_components`` (M) discretised logistics per sub-pixel:
    PixelCNN++'s (Salimans et al. 2017, eq. 2) with weights, locations and log-scales per
    sub-pixel, groups 0..M-1, M..2M-1 and 2M..3M-1 (its coefficients between the channels of
    a pixel, eq. 3, are left out: a VAE decoder's sub-pixels are independent given z)."""

    name = "discretized_logistic_mixture"

    def outputs_per_channel(self) -> int:
        return 3 * self.cfg.mixture_components

    def locations(self) -> slice:
        m = self.cfg.mixture_components
        return slice(m, 2 * m)

    def _parts(self, out: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.groups(out).chunk(3, dim=1))

    def nll(self, x: torch.Tensor, out: torch.Tensor, params: Params) -> torch.Tensor:
        from models.discretized import mixture_log_prob

        return -mixture_log_prob(x.flatten(1), *self._parts(out))

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        from models.discretized import mixture_mean

        return self.image(out, mixture_mean(*self._parts(out)))
