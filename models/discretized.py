"""Discretised logistic distributions of 8-bit sub-pixels: pure tensor functions, nats.

A sub-pixel x = k / 255 (k = 0..255, the data scaled to [0, 1]) is the bin [x - h, x + h],
h = 1 / 510, of a logistic variable Y with location ``mean`` and scale s = exp(``log_scale``);
the two outer bins reach to -inf and +inf (PixelCNN++'s edge cases, Salimans et al. 2017,
sec. 2.1, eq. 2), so the 256 probabilities sum to exactly 1:

    P(0) = sigma((h - mean) / s),   P(255) = 1 - sigma((1 - h - mean) / s),
    P(k) = sigma((x + h - mean) / s) - sigma((x - h - mean) / s)   otherwise.

The IAF decoder of Kingma et al. 2016 (sec. 5.2) is one such logistic per sub-pixel; the
mixture is PixelCNN++'s eq. 2 with the weights, means and scales per sub-pixel (its channel
coefficients, eq. 3, are left out: given z a VAE decoder's sub-pixels are independent).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LEVELS = 255  # the largest 8-bit level: x = k / LEVELS
HALF_BIN = 0.5 / LEVELS


def logistic_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor
                      ) -> torch.Tensor:
    """log P(x) of the discretised logistic (module docstring), nats per sub-pixel, <= 0;
    ``x`` on the grid k / 255, all three broadcast together.

    The difference of the two CDFs is taken in log space, exact in both tails (no fallback
    to the density at the bin centre, as PixelCNN++'s code needs for float32):
    log(sigma(a) - sigma(b)) = log sigma(a) + log sigma(-b) + log(1 - exp(b - a)), a > b.
    """
    inv_scale = (-log_scale).exp()
    centred = x - mean
    below = F.logsigmoid((centred + HALF_BIN) * inv_scale)  # log P(Y < x + h)
    above = F.logsigmoid((HALF_BIN - centred) * inv_scale)  # log P(Y > x - h)
    # b - a = -1 / (255 s): the log of the bin's share depends on the scale alone
    inner = below + above + torch.log(-torch.expm1(-inv_scale / LEVELS))
    return torch.where(x < HALF_BIN, below, torch.where(x > 1 - HALF_BIN, above, inner))


def mixture_log_prob(x: torch.Tensor, logits: torch.Tensor, means: torch.Tensor,
                     log_scales: torch.Tensor) -> torch.Tensor:
    """log P(x) under the mixture sum_m pi_m P_m(x), pi = softmax(``logits``) over dim 1
    (Salimans et al. 2017, eq. 2): ``x`` (B, D), the parameters (B, M, D); nats, (B, D)."""
    parts = F.log_softmax(logits, dim=1) + logistic_log_prob(x[:, None], means, log_scales)
    return torch.logsumexp(parts, dim=1)


def logistic_mean(mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """E[clamp(Y, 0, 1)], the mean of the clamped logistic that the bins discretise, in
    pixel units: integral_0^1 P(Y > y) dy = s [softplus(mean / s) - softplus((mean - 1) / s)].

    The discretised mean, sum_k k/255 P(k) = 1/255 sum_{k=1}^{255} P(Y > (k - 1/2)/255), is
    this integral by the midpoint rule: they differ by at most 1/(48 * 255^2 s), a fiftieth
    of a level at s = one level (1/255) and less for broader logistics; up to half a level
    for sharper ones. The closed form costs one term where the sum costs 255 per sub-pixel.
    """
    scale = log_scale.exp()
    return scale * (F.softplus(mean / scale) - F.softplus((mean - 1) / scale))


def mixture_mean(logits: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor
                 ) -> torch.Tensor:
    """sum_m pi_m E[clamp(Y_m, 0, 1)] (see ``logistic_mean``): parameters (B, M, D) -> (B, D)."""
    return (logits.softmax(dim=1) * logistic_mean(means, log_scales)).sum(dim=1)
