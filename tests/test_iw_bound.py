"""The importance-weighted bound against a linear Gaussian VAE, whose marginal is known:
p(z) = N(0, I), p(x|z) = N(W z + b, s^2 I), so p(x) = N(b, W W^T + s^2 I) exactly, and the
posterior is Gaussian too (diagonal, for W with orthogonal columns)."""

import math

import torch
from torch import nn

from models.config import Config
from models.iw_bound import heldout_nll, iw_bound
from models.module import VAE

D, LATENT, SIGMA = 4, 2, 0.5


class LinearEncoder(nn.Module):
    """q(z|x) = N(scale * m(x), v * exp(shift)), with m(x), v the exact posterior's."""

    def __init__(self, w, b, scale, shift):
        super().__init__()
        precision = 1 + (w * w).sum(0) / SIGMA**2  # diagonal of I + W^T W / s^2
        self.w, self.b, self.scale, self.shift = w, b, scale, shift
        self.var = 1 / precision

    def forward(self, x):
        mean = (x - self.b) @ self.w * self.var / SIGMA**2
        return self.scale * mean, (self.var.log() + self.shift).expand_as(mean)


def linear_vae(scale=1.0, shift=0.0):
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(D, LATENT, generator=gen, dtype=torch.float64))
    w = q * torch.tensor([1.5, 0.7], dtype=torch.float64)  # orthogonal columns
    b = torch.randn(D, generator=gen, dtype=torch.float64) * 0.3
    decoder = nn.Linear(LATENT, D).double()
    with torch.no_grad():
        decoder.weight.copy_(w)
        decoder.bias.copy_(b)
    cfg = Config(model="mlp", latent_dim=LATENT, likelihood="gaussian", sigma_mode="learned",
                 decoder_activation="none")
    model = VAE(cfg.to_dict(), (D,), 1, LinearEncoder(w, b, scale, shift), decoder,
                eight_bit=False).double()
    with torch.no_grad():
        model.likelihood_params["log_sigma"].fill_(math.log(SIGMA))
    marginal = torch.distributions.MultivariateNormal(
        b, w @ w.T + SIGMA**2 * torch.eye(D, dtype=torch.float64))
    return model.eval(), marginal


def _bound(model, x, k, seed=1):
    with torch.no_grad():
        return iw_bound(model, x, k, model.likelihood_scalars(),
                        torch.Generator().manual_seed(seed), decodes=64)


def test_with_the_exact_posterior_every_weight_is_p_of_x():
    model, marginal = linear_vae()
    x = marginal.sample((50,))
    for k in (1, 3, 20):  # chunks of 64 // 50 = 1 draw: the chunking is exercised too
        assert torch.allclose(_bound(model, x, k), marginal.log_prob(x), atol=1e-10)


def test_bound_rises_toward_log_p_with_k_and_never_passes_it():
    model, marginal = linear_vae(scale=0.6, shift=0.7)  # a worse q: shrunk mean, wider
    torch.manual_seed(2)
    x = marginal.sample((2000,))
    log_p = float(marginal.log_prob(x).mean())
    means = [float(_bound(model, x, k).mean()) for k in (1, 4, 16, 64)]
    assert means == sorted(means) and len(set(means)) == 4
    assert all(m < log_p + 1e-3 for m in means)
    assert log_p - means[-1] < 0.25 * (log_p - means[0])
    # K = 1 is the ELBO at beta = 1 in expectation: E_q log p(x|z) - KL(q || p) in closed form
    mu, logvar = model.encoder(x)
    w, b = model.decoder.weight.detach(), model.decoder.bias.detach()
    resid = (x - mu @ w.T - b).pow(2).sum(1) + (logvar.exp() * (w * w).sum(0)).sum(1)
    expected = -0.5 * D * math.log(2 * math.pi * SIGMA**2) - resid / (2 * SIGMA**2)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
    elbo = (expected - kl).detach()
    one = _bound(model, x, 1)
    assert abs(float((one - elbo).mean())) < 4 * float((one - elbo).std()) / math.sqrt(2000)


def test_heldout_nll_is_the_bound_and_the_one_sample_elbo_per_dim():
    model, marginal = linear_vae(scale=0.6, shift=0.7)
    torch.manual_seed(3)
    x = marginal.sample((300,))
    got = heldout_nll(model, x, samples=32, seed=5)
    assert (got["iw_samples"], got["images"]) == (32, 300) and got["seconds"] > 0
    true = -float(marginal.log_prob(x).mean()) / D
    assert true - 0.01 < got["nats_per_dim_iw"] < got["nats_per_dim_elbo"]
    assert heldout_nll(model, x, samples=32, seed=5)["nats_per_dim_iw"] == got["nats_per_dim_iw"]
