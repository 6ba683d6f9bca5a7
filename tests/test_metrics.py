"""Metrics on posteriors built so that their true values are known."""

import math

import pytest
import torch

from models import metrics


def test_active_units_counts_exactly_the_dims_that_vary():
    gen = torch.Generator().manual_seed(0)
    n, d, k = 500, 16, 5
    mu = torch.zeros(n, d)
    mu[:, :k] = torch.randn(n, k, generator=gen)  # variance ~1 >> 0.01
    mu[:, k:] = 0.01 * torch.randn(n, d - k, generator=gen)  # variance ~1e-4
    assert metrics.active_units(mu) == k
    assert metrics.active_units(mu, threshold=2.0) == 0


def test_log_density_matches_torch():
    mu, logvar, z = torch.randn(4, 3), torch.randn(4, 3), torch.randn(5, 3)
    ref = torch.distributions.Normal(mu[None], (0.5 * logvar[None]).exp()).log_prob(
        z[:, None]).sum(-1)
    assert torch.allclose(metrics.log_density(z, mu, logvar), ref, atol=1e-4)


def test_mutual_info_zero_when_posterior_ignores_x_and_high_when_it_does_not():
    torch.manual_seed(0)
    n = 2000
    same = metrics.mutual_info(torch.zeros(n, 4), torch.zeros(n, 4))
    assert abs(same) < 0.05
    informative = metrics.mutual_info(3 * torch.randn(n, 4), torch.full((n, 4), -4.0))
    # bounded by log N; here I = 4 * 0.5 * log(1 + 9 / e^-4) is above it, so close to log N
    assert informative > 0.8 * math.log(n)


def _evaluation(likelihood, sigma_mode="optimal"):
    ev = metrics.Evaluation(likelihood, sigma_mode, 0.01)
    x = torch.full((4, 1, 2, 2), 0.5)
    recon = torch.full((4, 1, 2, 2), 0.6)
    mu = torch.ones(4, 3)
    ev.update(x, recon, recon, mu, torch.zeros(4, 3), None, False)
    return ev.compute()


def test_evaluation_units_for_mse_likelihood():
    m = _evaluation("mse")
    assert m["mse"] == pytest.approx(0.01)
    assert m["rate"] == pytest.approx(1.5)  # 3 dims at 0.5 nats
    nll = 0.5 * 4 * (math.log(2 * math.pi * 0.01) + 1)
    assert m["neg_elbo"] == pytest.approx(1.5 + nll)
    assert m["bits_per_dim"] == pytest.approx((1.5 + nll) / (4 * math.log(2)) + 8)
    assert m["active_units"] == 0 and m["collapsed"] is True
    assert m["kl_per_dim"] == pytest.approx([0.5, 0.5, 0.5])


def test_evaluation_bernoulli_nll():
    m = _evaluation("bernoulli")
    per_pixel = -(0.5 * math.log(0.6) + 0.5 * math.log(0.4))
    assert m["neg_elbo"] == pytest.approx(1.5 + 4 * per_pixel, rel=1e-5)


def test_active_units_of_an_encoder_built_so_that_exactly_k_dims_vary():
    from models.networks import Encoder

    torch.manual_seed(0)
    k, d = 3, 10
    enc = Encoder((1, 8, 8), 2, 4, d)
    with torch.no_grad():
        enc.head.weight[k:d].zero_()  # mu_u for u >= k ignores x ...
        enc.head.bias[k:d].fill_(0.7)  # ... and sits at a constant
        enc.head.weight[:k].mul_(20)  # mu_u for u < k varies well above the threshold
        mu, _ = enc(torch.rand(256, 1, 8, 8))
    assert metrics.active_units(mu) == k
