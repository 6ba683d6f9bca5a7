"""The VAE's loss terms as pure tensor functions: KL, free bits, reconstruction likelihoods.

Every function documents its unit. "Per image" values are nats for one image, summed over
its latent dims or pixels; reductions to means are done explicitly by ``reduce``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)


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

    sigma^2 = MSE over the batch, so log sigma = 0.5 * log(MSE). A scalar tensor; clamped so
    that a perfect reconstruction cannot send the density to infinity.
    """
    return 0.5 * (x - mean).pow(2).mean().clamp(min=1e-6).log()


def recon_nll(x: torch.Tensor, out: torch.Tensor, likelihood: str,
              log_sigma: torch.Tensor | None = None, logits: bool = False) -> torch.Tensor:
    """Per-pixel reconstruction term, shape (B, D) with pixels flattened.

    - ``mse``: squared error (x - out)^2 (the seed's loss; not a normalised density);
    - ``gaussian``: -log N(x; out, sigma^2) in nats, sigma from ``log_sigma`` (learned or
      ``optimal_log_sigma``);
    - ``bernoulli``: binary cross-entropy in nats; ``out`` are logits when ``logits``.
    """
    x, out = x.flatten(1), out.flatten(1)
    if likelihood == "mse":
        return (x - out).pow(2)
    if likelihood == "gaussian":
        if log_sigma is None:
            raise ValueError("gaussian likelihood needs log_sigma")
        return gaussian_nll(x, out, log_sigma)
    if likelihood == "bernoulli":
        if logits:
            return F.binary_cross_entropy_with_logits(out, x, reduction="none")
        return F.binary_cross_entropy(out.clamp(1e-6, 1 - 1e-6), x, reduction="none")
    raise ValueError(f"unknown likelihood {likelihood!r}")


def vae_loss(recon_pixels: torch.Tensor, kl: torch.Tensor, *, weight: float,
             recon_reduction: str, kl_reduction: str, free_bits_nats: float = 0.0
             ) -> dict[str, torch.Tensor]:
    """The training objective: reduce(recon) + weight * reduce(KL), averaged over the batch.

    ``recon_pixels`` (B, D) from ``recon_nll``, ``kl`` (B, d) from ``kl_per_dim``.
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
