"""Test NLL as papers report it: the importance-weighted bound on log p(x) (IWAE, Burda,
Grosse, Salakhutdinov 2015, eq. 8) under a trained VAE's own likelihood.

For an image x and K draws z_k ~ q(z|x) (the encoder's Gaussian),

    log p(x) >= L_K(x) = log 1/K sum_k w_k,   log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x),

p(z) = N(0, I). E L_1 is the ELBO at beta = 1; E L_K rises with K and tends to log p(x) (their
Theorem 1), so a test bits/dim from L_K sits below the ELBO's and above the true figure.
log p(x|z) is ``Likelihood.log_prob``: nats per image, a density of x in [0, 1]^D, with the
likelihood's learned scalars and the parameters it fits over the split (``fitted``: the
optimal shared variance of ``mse`` and of the Gaussian's ``optimal`` mode, from a first,
one-sample ELBO pass that also gives the ELBO figure); bits/dim as ``models.metrics``.

Memory is bounded by ``decodes``, the decoder passes held at once (images times draws);
draws come from a private generator, so a figure is a deterministic function of the weights,
the images, K and the seed, and evaluating leaves the global RNG where it was.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from models.data.batches import as_inputs
from models.losses import LOG_2PI, reparameterize
from models.metrics import Evaluation, bits_per_dim

if TYPE_CHECKING:
    from models.module import VAE

DECODES = 512  # decoder passes at once: (images per batch) x (draws per chunk)


def log_weights(model: VAE, x: torch.Tensor, samples: int, params: Mapping[str, torch.Tensor],
                generator: torch.Generator | None = None, decodes: int = DECODES
                ) -> torch.Tensor:
    """log w_k for each image of ``x`` and each of ``samples`` draws: (B, K), nats.

    ``model`` gives ``encoder``, ``decode`` and ``likelihood``; ``params`` the likelihood's
    scalars (learned and fitted). Draws are taken in chunks of ``decodes // B`` (at least 1).
    """
    mu, logvar = model.encoder(x)
    b = x.shape[0]
    chunk = max(1, decodes // b)
    columns = []
    for lo in range(0, samples, chunk):
        k = min(chunk, samples - lo)
        z = reparameterize(mu.expand(k, *mu.shape), logvar.expand(k, *logvar.shape),
                           generator=generator)  # (k, B, d)
        log_q = -0.5 * ((z - mu).pow(2) * (-logvar).exp() + logvar + LOG_2PI).sum(-1)
        log_prior = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
        out = model.decode(z.reshape(k * b, -1))
        repeated = x.expand(k, *x.shape).reshape(k * b, *x.shape[1:])
        log_lik = model.likelihood.log_prob(repeated, out, params).view(k, b)
        columns.append((log_lik + log_prior - log_q).T)
    return torch.cat(columns, dim=1)


def iw_bound(model: VAE, x: torch.Tensor, samples: int, params: Mapping[str, torch.Tensor],
             generator: torch.Generator | None = None, decodes: int = DECODES) -> torch.Tensor:
    """L_K(x) = logmeanexp_k log w_k for each image of ``x``: (B,), nats per image, a lower
    bound on log p(x) in expectation (Burda et al. 2015, eq. 8); K = ``samples``."""
    weights = log_weights(model, x, samples, params, generator, decodes)
    return torch.logsumexp(weights, dim=1) - math.log(samples)


def _batches(images: torch.Tensor, size: int) -> list[torch.Tensor]:
    return [as_inputs(images[lo:lo + size]) for lo in range(0, len(images), size)]


@torch.no_grad()
def heldout_nll(model: VAE, images: torch.Tensor, samples: int, seed: int = 0,
             decodes: int = DECODES) -> dict[str, Any]:
    """The ELBO and the K-sample bound over all of ``images`` (uint8, or floats for
    continuous data), per dim: ``bits_per_dim_elbo`` and ``bits_per_dim_iw`` for 8-bit data
    (``nats_per_dim_*`` otherwise), with ``iw_samples`` (K), ``images`` and ``seconds``.
    ``model``'s weights are left in ``models.module.conv_layout``'s memory format."""
    from models.module import conv_layout

    start = time.perf_counter()
    # NHWC on the CPU, as training lays the weights out: a quarter less time here
    model.eval().to(memory_format=conv_layout(images.device))
    lik = model.likelihood
    gen = torch.Generator(device=images.device).manual_seed(seed)
    batches = _batches(images, max(1, min(decodes, 128)))
    first = Evaluation(lik, model.likelihood_scalars(), model.cfg.au_threshold, model.eight_bit)
    for x in batches:  # the one-sample ELBO, as the validation step computes it
        mu, logvar = model.encoder(x)
        first.update(x, model.decode(reparameterize(mu, logvar, generator=gen)), mu, logvar)
    neg_elbo = first.compute(with_mutual_info=False)["neg_elbo_own"]
    assert isinstance(neg_elbo, float)
    pixels = images[0].numel()
    own = {k[len("own_"):]: float(v) for k, v in first.sums.items() if k.startswith("own_")}
    params = {**model.likelihood_scalars(),
              **{k: torch.tensor(v) for k, v in lik.fitted(own, len(images), pixels).items()}}
    total = sum(float(iw_bound(model, x, samples, params, gen, decodes).sum()) for x in batches)
    neg_iw = -total / len(images)
    if model.eight_bit:
        figures = {"bits_per_dim_iw": bits_per_dim(neg_iw, pixels),
                   "bits_per_dim_elbo": bits_per_dim(neg_elbo, pixels)}
    else:
        figures = {"nats_per_dim_iw": neg_iw / pixels, "nats_per_dim_elbo": neg_elbo / pixels}
    return {**figures, "iw_samples": samples, "images": len(images),
            "seconds": time.perf_counter() - start}
