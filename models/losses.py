"""The VAE's loss terms as pure tensor functions: sampling, KL, free bits, Gaussian densities.

Every function documents its unit. "Per image" values are nats for one image, summed over
its latent dims or pixels; reductions to means are done explicitly by ``reduce``. The
per-likelihood reconstruction terms live in ``models.likelihoods``.
"""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2 * math.pi)

# Floor on a fitted pixel variance: the variance of uniform noise over one 8-bit level of
# pixels scaled by 1/255, i.e. (1/255)^2 / 12. A density sharper than this claims more
# precision than 8-bit data holds, and a perfect reconstruction would send it to infinity.
MIN_VARIANCE = 1.0 / (12 * 255**2)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw z = mu + exp(logvar / 2) * eps, eps ~ N(0, I), from q(z|x) = N(mu, exp(logvar)).

    Kingma & Welling 2014, sec. 2.4. ``generator`` (on mu's device) makes the draw private,
    e.g. for metrics that must not move the training RNG; by default the global RNG is used.
    This is the only place in the project where a posterior sample is drawn.
    """
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    return mu + eps * (0.5 * logvar).exp()


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) for each image and latent dim, in nats, shape (B, d).

    Kingma & Welling 2014, appendix B: -0.5 * (1 + logvar - mu^2 - exp(logvar)).
    This is the only place in the project where the Gaussian KL is written.
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def free_bits(kl: torch.Tensor, nats_per_dim: float) -> torch.Tensor:
    """Kingma et al. 2016 (IAF), eq. 15: each latent dim's batch-mean KL is clamped from below.

    ``kl`` is (B, d) in nats; returns (d,): max(nats_per_dim, mean_batch KL_j) per dim j.
    With ``nats_per_dim == 0`` it is the plain batch mean, so the gradient is unchanged.
    """
    return kl.mean(0).clamp(min=nats_per_dim)


def reduce(values: torch.Tensor, how: str) -> torch.Tensor:
    """Reduce the last dim by ``sum`` or ``mean`` (the loss-reduction knobs)."""
    if how == "sum":
        return values.sum(-1)
    if how == "mean":
        return values.mean(-1)
    raise ValueError(f"unknown reduction {how!r}")


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """Per-pixel negative log-density of x under N(mean, sigma^2), nats, shape of x."""
    return 0.5 * ((x - mean) / log_sigma.exp()).pow(2) + log_sigma + 0.5 * LOG_2PI


def optimal_log_sigma(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Rybkin et al. 2021 (sigma-VAE), eq. 5: the shared sigma maximising the likelihood.

    sigma^2 = MSE over the batch, so log sigma = 0.5 * log(MSE). A scalar tensor; the MSE is
    clamped at ``MIN_VARIANCE`` so that a perfect reconstruction cannot send the density to
    infinity.
    """
    return 0.5 * (x - mean).pow(2).mean().clamp(min=MIN_VARIANCE).log()


def gaussian_nll_at_optimum(mse: float, pixels: int) -> float:
    """Negative log-density of an image under N(x_hat, s^2 I) at the optimal shared s^2 = MSE.

    Summing ``gaussian_nll`` over the D pixels with sigma^2 = MSE (Rybkin et al. 2021, eq. 5)
    gives the closed form D/2 * (log(2 pi s^2) + 1), nats per image; s^2 is floored at
    ``MIN_VARIANCE``. ``mse`` is the mean squared error per pixel over the images scored.
    """
    return 0.5 * pixels * (math.log(2 * math.pi * max(mse, MIN_VARIANCE)) + 1.0)


def vae_loss(recon_pixels: torch.Tensor, kl: torch.Tensor, *, weight: float,
             recon_reduction: str, kl_reduction: str, free_bits_nats: float = 0.0
             ) -> dict[str, torch.Tensor]:
    """The training objective: reduce(recon) + weight * reduce(KL), averaged over the batch.

    ``recon_pixels`` (B, D) from a likelihood's ``nll``, ``kl`` (B, d) from ``kl_per_dim``.
    Returns ``loss`` (the weighted objective that is optimised), ``recon`` and ``kl`` (the two
    reduced terms, batch means) and ``elbo_loss`` (the same objective at weight 1, no free
    bits: what the beta-weighted ``loss`` is compared with).
    """
    recon = reduce(recon_pixels, recon_reduction).mean()
    kl_plain = reduce(kl.mean(0), kl_reduction)
    kl_term = (reduce(free_bits(kl, free_bits_nats), kl_reduction) if free_bits_nats > 0
               else kl_plain)
    return {
        "loss": recon + weight * kl_term,
        "recon": recon,
        "kl": kl_plain,
        "elbo_loss": recon + kl_plain,
    }
