"""Evaluation metrics that compare across trials whatever their loss choices.

All are computed over the whole validation split (fixed, see ``models.data.SPLIT_SEED``), in
units fixed by the data, not by the trial's likelihood, reductions or KL weight. D is pixels
per image, N validation images, x_hat(z) a likelihood's ``mean`` of the decoder output:

- ``mse``: squared error per pixel of the reconstruction x_hat(z) of one posterior sample
  z ~ q(z|x) (the ELBO's one-sample estimate), pixels in [0, 1]: the distortion of the
  rate-distortion view (Alemi et al. 2018, "Fixing a Broken ELBO", sec. 2);
- ``rate``: KL(q(z|x) || N(0, I)) in nats per image, summed over latent dims;
- ``neg_elbo``: rate + the yardstick reconstruction NLL (``yardstick_nll``) in nats per image:
  every trial's predicted image scored by one Gaussian rule, whatever its own likelihood;
  that rule's variance is ``mse``, so neg_elbo = rate + D/2 (ln(2 pi mse) + 1): the two
  coordinates of the rate-distortion plane give the yardstick;
- ``nats_per_dim``: ``neg_elbo / D``, for any data: the yardstick of continuous (float) data,
  whose values are fed as they are (no 8-bit levels to count);
- ``bits_per_dim``: ``neg_elbo`` in bits per pixel of the 8-bit data (``bits_per_dim``), for
  8-bit data only (``eight_bit``): nats_per_dim / ln 2 + log2(255);
- ``neg_elbo_own``, ``bits_per_dim_own``: the same with the trial's own likelihood's NLL
  (``Likelihood.own_nll``; bits for 8-bit data only); not comparable across likelihoods
  (Bernoulli is not a density on [0, 1], MSE is not a density at all), which is why the
  yardstick exists;
- ``active_units``: Burda et al. 2015, sec. 5.2: dims u with Cov_x(E_q[z_u | x]) > threshold;
- ``mutual_info``: I(x; z) under the aggregate posterior of the split (``mutual_info``);
- ``kl_per_dim``: the rate split by latent dim (nats per image), and ``collapsed``: no active unit.
"""

from __future__ import annotations

import math

import torch

from models.likelihoods import Likelihood, Params
from models.losses import LOG_2PI, gaussian_nll_at_optimum, kl_per_dim, reparameterize

# Pixels are stored as k / 255, k = 0..255: one 8-bit level is a bin of width 1/255.
LEVELS = 255
BITS_OFFSET = math.log2(LEVELS)  # 7.994 bits: -log2 of the bin width 1/255

# The mutual information's number of posterior draws (at most one per image while the split
# has that many images), the seed of their private generator (so the estimate is a
# deterministic function of the posteriors and evaluating does not move the training RNG),
# and the total rate of the latent dims it may leave out (see ``mutual_info``).
MI_SAMPLES = 5000
MI_SEED = 0
MI_DROP_NATS = 1e-3


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> int:
    """Burda et al. 2015: number of dims whose posterior mean varies across x by > threshold."""
    if mu.shape[0] < 2:
        return 0
    return int((mu.var(0, correction=0) > threshold).sum())


def yardstick_nll(sse: float, images: int, pixels: int) -> float:
    """The one reconstruction rule every trial is scored by, nats per image.

    Each pixel x of the split is scored under N(x_hat, s^2): x_hat the mean of the trial's
    p(x|z) for a posterior sample z (the ELBO's one-sample estimate), s^2 one variance shared
    by all pixels and trials' rule alike, at its maximum-likelihood value, the mean squared
    error over the split (the sigma-VAE "optimal sigma", Rybkin et al. 2021, eq. 5):

        s^2 = sse / (N D),    NLL = D/2 * (log(2 pi s^2) + 1)  per image.

    The variance is fitted on the validation split it scores, not on the training split: it
    is one scalar fitted on N D residuals (15 million at CIFAR-10's default), so the optimism
    of fitting it is half a nat per split (one parameter, Wilks/AIC), 1e-4 nats per image;
    a training-split fit would need a second pass over nine times as many images at every
    validation, or a running value from weights that moved during the epoch. It depends on
    nothing but x_hat, so trials that predict the same images get the same score, whatever
    likelihood, sigma mode or decoder activation they trained with. s^2 is floored at the
    quantisation variance ``losses.MIN_VARIANCE``.
    """
    return gaussian_nll_at_optimum(sse / (images * pixels), pixels)


def bits_per_dim(nats_per_image: float, pixels: int) -> float:
    """A density's NLL per image (nats, pixels scaled to [0, 1]) as bits per 8-bit sub-pixel.

    A density p on x = k / 255 gives level k the probability p(x) / 255 (bin width 1/255), so
    -log2 P(k) = -log2 p(x) + log2(255): nats / (D ln 2) + 7.994 (not 8, which is the offset
    for pixels scaled by 1/256; the discretisation argument of Theis et al. 2016).
    """
    return nats_per_image / (pixels * math.log(2)) + BITS_OFFSET


def log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log q(z_i | x_j) for every pair: (Nz, Nx), nats, via matrix products (no (Nz, Nx, d))."""
    return _pairs(z, _components(mu, logvar))


def _components(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """The x side of log q(z|x_j) = -1/2 [z^2 . 1/v_j - 2 z . mu_j/v_j + c_j], as the
    (2d + 1, Nx) matrix that ``_pairs``' features [z^2, z, 1] multiply: one matmul, no
    elementwise pass over the (Nz, Nx) result."""
    inv_var = (-logvar).exp()
    offset = (mu.pow(2) * inv_var).sum(1) + logvar.sum(1) + mu.shape[1] * LOG_2PI
    return -0.5 * torch.cat([inv_var, -2 * mu * inv_var, offset[:, None]], 1).T.contiguous()


def _pairs(z: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    return torch.cat([z.pow(2), z, torch.ones_like(z[:, :1])], 1) @ components


def mutual_info(mu: torch.Tensor, logvar: torch.Tensor, samples: int = MI_SAMPLES,
                seed: int = MI_SEED, chunk: int = 512) -> float:
    """I(x; z) between an image of the split and its code, nats (He et al. 2019, eq. 4).

    With x uniform over the N images and the aggregate posterior q(z) = 1/N sum_j q(z|x_j),

        I = E_x E_{z ~ q(z|x)} [log q(z|x) - log q(z)],

    estimated from ``samples`` pairs (x_i, z_i): x_i runs through a fixed-seed permutation of
    the images (each used equally often: every image once at N = ``samples``), z_i from
    ``reparameterize`` with a generator seeded by ``seed``, so a call is deterministic. As in
    He et al.'s ``calc_mi`` the own image x_i is one of the N components of q(z). Unlike it,
    log q(z_i|x_i) is the sampled value, not the analytic -entropy: the same expectation, but
    the d-dimensional noise of z_i cancels between the two terms, so a collapsed encoder
    (q(z|x) equal for all x) scores exactly 0, where one draw of the old form read 0.34 nats.

    Latent dims are left out, smallest rate first, while their summed rate stays within
    ``MI_DROP_NATS``: for a factorised posterior I(x; z) - I(x; z_kept) = I(x; z_out | z_kept)
    <= I(x; z_out) <= their rate E_x KL(q(z_out|x) || N(0, I)), so this moves the estimate by
    at most 1e-3 nats, and a collapsed model costs nothing.

    Ceiling: q(z) >= q(z|x_i) / N, so every term and the estimate are <= log N (8.52 nats
    at N = 5000): an encoder that tells the images apart reads log N, not its true I.
    Spread at N = 5000, d = 256, SD over seeds (5 to 8 each): 0.02 to 0.03 nats with 8
    informative dims (I = 5.5), 0.03 to 0.046 with all 256 weakly informative (I = 5, the
    worst case found), 0 when collapsed or saturated at log N; tests/test_metrics.py checks
    < 0.05. Cost: samples x N x (2 d_kept + 1) multiply-adds in float64 (the expansion
    cancels too much in float32 for sharp posteriors), chunked. Measured on one idle CPU
    core at N = 5000: 0.04 s collapsed, 0.35 s with 8 to 32 dims kept, 0.8 to 1.1 s with
    all 256 kept; 3 ms on an H100.
    """
    mu, logvar = mu.double(), logvar.double()
    n = mu.shape[0]
    rates = kl_per_dim(mu, logvar).mean(0)
    ranked = rates.argsort()
    dropped = int((rates[ranked].cumsum(0) <= MI_DROP_NATS).sum())
    if dropped == mu.shape[1]:
        return 0.0
    kept = ranked[dropped:]
    mu, logvar = mu[:, kept], logvar[:, kept]
    gen = torch.Generator(device=mu.device).manual_seed(seed)
    order = torch.randperm(n, generator=gen, device=mu.device)
    idx = order.repeat(math.ceil(samples / n))[:samples]
    z = reparameterize(mu[idx], logvar[idx], generator=gen)
    components = _components(mu, logvar)
    total = torch.zeros((), dtype=torch.float64, device=mu.device)
    for lo in range(0, samples, chunk):
        pairs = _pairs(z[lo:lo + chunk], components)  # log q(z_i | x_j): (chunk, N)
        own = pairs.gather(1, idx[lo:lo + chunk, None]).squeeze(1)  # log q(z_i | x_i)
        total += (own - _logsumexp(pairs)).sum()
    return float(total / samples) + math.log(n)


def _logsumexp(rows: torch.Tensor) -> torch.Tensor:
    """logsumexp over dim 1, with terms more than 60 nats below a row's maximum counted as
    exp(-60): at most N e^-60 < 1e-22 nats too high, and without the slow path of CPU exp for
    results that underflow (3 to 6 times slower; posteriors sharper than the prior produce
    mostly such terms)."""
    top = rows.amax(1, keepdim=True)
    return top.squeeze(1) + (rows - top).clamp_(min=-60.0).exp_().sum(1).log_()


class Evaluation:
    """Accumulates one pass over the validation split, then ``compute()``s every metric.

    Sums stay on the device as float64 tensors (no sync per batch) until ``compute``.
    ``eight_bit``: the data is 8-bit (scaled by 1/255), so bits/dim is defined; continuous
    data gets the yardstick per dimension in nats only.
    """

    def __init__(self, likelihood: Likelihood, params: Params, threshold: float,
                 eight_bit: bool = True) -> None:
        self.likelihood, self.params, self.threshold = likelihood, params, threshold
        self.eight_bit = eight_bit
        self.mus: list[torch.Tensor] = []
        self.logvars: list[torch.Tensor] = []
        self.images = 0
        self.pixels = 0
        self.sums: dict[str, torch.Tensor] = {}

    def _add(self, key: str, value: torch.Tensor) -> None:
        value = value.detach().double()
        self.sums[key] = self.sums[key] + value if key in self.sums else value

    @torch.no_grad()
    def update(self, x: torch.Tensor, out: torch.Tensor, mu: torch.Tensor,
               logvar: torch.Tensor) -> None:
        """``out``: the raw decoder output for a posterior sample (what the likelihood
        reads). One decode a batch: a second one, from the posterior mean, would cost a
        third of the validation's time on the CPU for a distortion the ELBO does not use."""
        self.mus.append(mu.float())
        self.logvars.append(logvar.float())
        self.images += x.shape[0]
        self.pixels = x[0].numel()
        self._add("sse", (self.likelihood.mean(out) - x).pow(2).sum())
        for key, value in self.likelihood.score(x, out, self.params).items():
            self._add(f"own_{key}", value)

    def compute(self, with_mutual_info: bool = True
                ) -> dict[str, float | int | bool | list[float]]:
        """Every metric of the pass; ``mutual_info`` only ``with_mutual_info`` (it costs more
        than all the others together on the CPU: 0.35 to 1.1 s at N = 5000)."""
        mu, logvar = torch.cat(self.mus), torch.cat(self.logvars)
        sums = {k: float(v) for k, v in self.sums.items()}
        own = {k[len("own_"):]: v for k, v in sums.items() if k.startswith("own_")}
        per_dim = kl_per_dim(mu, logvar).mean(0)
        rate = float(per_dim.sum())
        neg_elbo = rate + yardstick_nll(sums["sse"], self.images, self.pixels)
        neg_elbo_own = rate + self.likelihood.own_nll(own, self.images, self.pixels)
        au = active_units(mu, self.threshold)
        bits = self.eight_bit
        out: dict[str, float | int | bool | list[float]] = {
            "mse": sums["sse"] / (self.images * self.pixels),
            "rate": rate,
            "neg_elbo": neg_elbo,
            "nats_per_dim": neg_elbo / self.pixels,
            **({"bits_per_dim": bits_per_dim(neg_elbo, self.pixels)} if bits else {}),
            "neg_elbo_own": neg_elbo_own,
            **({"bits_per_dim_own": bits_per_dim(neg_elbo_own, self.pixels)} if bits else {}),
            "active_units": au,
            "collapsed": au == 0,
            "kl_per_dim": [float(v) for v in per_dim],
        }
        if with_mutual_info:
            out["mutual_info"] = mutual_info(mu, logvar)
        return out
