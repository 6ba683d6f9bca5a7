"""Evaluation metrics that compare across trials whatever their loss choices.

All are computed over the whole validation split, in units fixed by the data, not by the
trial's reductions or KL weight:

- ``mse``: squared error per pixel of the reconstruction from the posterior mean, pixels in [0, 1];
- ``rate``: KL(q(z|x) || N(0, I)) in nats per image, summed over latent dims;
- ``neg_elbo``: rate + reconstruction NLL in nats per image at beta = 1 under the trial's
  likelihood (``mse`` is scored as a Gaussian with one variance at its closed-form optimum,
  the validation MSE of the sampled reconstruction), and
  ``bits_per_dim = neg_elbo / (D ln 2) + 8`` (the 8-bit discretisation offset);
- ``active_units``: Burda et al. 2015, sec. 5.2: dims u with Cov_x(E_q[z_u | x]) > threshold;
- ``mutual_info``: He et al. 2019 (lagging inference networks), I(x; z) with the aggregate
  posterior formed from the evaluation set;
- ``kl_per_dim``: the rate split by latent dim (nats per image), and ``collapsed``: no active unit.
"""

from __future__ import annotations

import math

import torch

from models.losses import LOG_2PI, gaussian_nll, kl_per_dim


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> int:
    """Burda et al. 2015: number of dims whose posterior mean varies across x by > threshold."""
    if mu.shape[0] < 2:
        return 0
    return int((mu.var(0, correction=0) > threshold).sum())


def log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log q(z_i | x_j) for every pair: (Nz, Nx), nats, via matrix products (no (Nz, Nx, d))."""
    inv_var = (-logvar).exp()
    quad = (z.pow(2) @ inv_var.T - 2 * z @ (mu * inv_var).T
            + (mu.pow(2) * inv_var).sum(1))
    return -0.5 * (quad + logvar.sum(1) + z.shape[1] * LOG_2PI)


def mutual_info(mu: torch.Tensor, logvar: torch.Tensor, chunk: int = 1024) -> float:
    """He et al. 2019, eq. 4 (their ``calc_mi``): E_x[-H(q(z|x))] - E_q(z)[log q(z)], nats.

    One z is drawn from each q(z|x_i); log q(z) = logsumexp_j log q(z|x_j) - log N.
    """
    mu, logvar = mu.double(), logvar.double()
    n, d = mu.shape
    neg_entropy = (-0.5 * d * (LOG_2PI + 1) - 0.5 * logvar.sum(1)).mean()
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    log_qz = torch.cat([log_density(z[i:i + chunk], mu, logvar).logsumexp(1)
                        for i in range(0, n, chunk)]) - math.log(n)
    return float(neg_entropy - log_qz.mean())


class Evaluation:
    """Accumulates one pass over the validation split, then ``compute()``s every metric."""

    def __init__(self, likelihood: str, sigma_mode: str, threshold: float) -> None:
        self.likelihood, self.sigma_mode, self.threshold = likelihood, sigma_mode, threshold
        self.mus: list[torch.Tensor] = []
        self.logvars: list[torch.Tensor] = []
        self.images = 0
        self.pixels = 0
        self.sse_mean = 0.0
        self.sse_sample = 0.0
        self.nll = 0.0

    @torch.no_grad()
    def update(self, x: torch.Tensor, mean_recon: torch.Tensor, sample_recon: torch.Tensor,
               mu: torch.Tensor, logvar: torch.Tensor, log_sigma: torch.Tensor | None,
               logits: bool) -> None:
        """``mean_recon`` decodes the posterior mean, ``sample_recon`` a posterior sample;
        both are images in [0, 1] except ``sample_recon`` is logits when ``logits``."""
        self.mus.append(mu.float())
        self.logvars.append(logvar.float())
        self.images += x.shape[0]
        self.pixels = x[0].numel()
        self.sse_mean += float((mean_recon - x).pow(2).sum())
        if self.likelihood == "bernoulli":
            probs = sample_recon.sigmoid() if logits else sample_recon
            self.sse_sample += float((probs - x).pow(2).sum())
            p = probs.clamp(1e-6, 1 - 1e-6)
            self.nll += float(-(x * p.log() + (1 - x) * (1 - p).log()).sum())
        else:
            self.sse_sample += float((sample_recon - x).pow(2).sum())
            if self.likelihood == "gaussian" and self.sigma_mode == "learned":
                assert log_sigma is not None
                self.nll += float(gaussian_nll(x, sample_recon, log_sigma).sum())

    def recon_nll_per_image(self) -> float:
        """Reconstruction NLL in nats per image at beta = 1 (see the module docstring)."""
        if self.likelihood == "bernoulli" or (
                self.likelihood == "gaussian" and self.sigma_mode == "learned"):
            return self.nll / self.images
        var = max(self.sse_sample / (self.images * self.pixels), 1e-12)
        return 0.5 * self.pixels * (math.log(2 * math.pi * var) + 1.0)

    def compute(self) -> dict[str, float | int | bool | list[float]]:
        mu, logvar = torch.cat(self.mus), torch.cat(self.logvars)
        per_dim = kl_per_dim(mu, logvar).mean(0)
        rate = float(per_dim.sum())
        neg_elbo = rate + self.recon_nll_per_image()
        au = active_units(mu, self.threshold)
        return {
            "mse": self.sse_mean / (self.images * self.pixels),
            "rate": rate,
            "neg_elbo": neg_elbo,
            "bits_per_dim": neg_elbo / (self.pixels * math.log(2)) + 8.0,
            "active_units": au,
            "mutual_info": mutual_info(mu, logvar),
            "collapsed": au == 0,
            "kl_per_dim": [float(v) for v in per_dim],
        }
