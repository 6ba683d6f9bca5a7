"""Loss terms against closed form and Monte-Carlo estimates."""

import math

import pytest
import torch

from models import losses


def test_kl_closed_form_known_value():
    # KL(N(1, 1) || N(0, 1)) = 0.5 nats per dim, so 10 dims give 5 nats.
    mu, logvar = torch.ones(1, 10), torch.zeros(1, 10)
    assert losses.kl_per_dim(mu, logvar).sum().item() == pytest.approx(5.0)


def test_kl_zero_at_prior_and_closed_form_for_variance():
    assert losses.kl_per_dim(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max() == 0
    var = 4.0
    expected = 0.5 * (var - 1 - math.log(var))
    kl = losses.kl_per_dim(torch.zeros(1, 1), torch.full((1, 1), math.log(var)))
    assert kl.item() == pytest.approx(expected)


def test_kl_matches_monte_carlo():
    gen = torch.Generator().manual_seed(0)
    mu = torch.tensor([[0.7, -1.2, 0.1]])
    logvar = torch.tensor([[-0.5, 0.3, -2.0]])
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    z = mu + (0.5 * logvar).exp() * torch.randn(200_000, 3, generator=gen)
    mc = (q.log_prob(z) - p.log_prob(z)).mean(0)
    assert torch.allclose(losses.kl_per_dim(mu, logvar)[0], mc, atol=0.02)


def test_free_bits_clamps_each_dim_from_below():
    kl = torch.tensor([[0.0, 0.5, 2.0], [0.2, 0.5, 4.0]])
    clamped = losses.free_bits(kl, 1.0)
    assert clamped.tolist() == pytest.approx([1.0, 1.0, 3.0])
    assert losses.free_bits(kl, 0.0).tolist() == pytest.approx([0.1, 0.5, 3.0])


def test_free_bits_stops_gradient_below_threshold():
    kl = torch.tensor([[0.1, 3.0]], requires_grad=True)
    losses.free_bits(kl, 1.0).sum().backward()
    assert kl.grad.tolist() == [[0.0, 1.0]]


def test_reductions_scale_the_loss_as_documented():
    pixels = torch.full((4, 12), 0.5)  # 12 pixels, recon sum = 6, mean = 0.5 per image
    kl = torch.full((4, 8), 0.25)  # 8 dims, kl sum = 2, mean = 0.25 per image
    out = {
        (r, k): losses.vae_loss(pixels, kl, weight=2.0, recon_reduction=r, kl_reduction=k)
        for r in ("sum", "mean") for k in ("sum", "mean")
    }
    assert out["sum", "sum"]["loss"].item() == pytest.approx(6 + 2 * 2)
    assert out["mean", "sum"]["loss"].item() == pytest.approx(0.5 + 2 * 2)
    assert out["mean", "mean"]["loss"].item() == pytest.approx(0.5 + 2 * 0.25)
    assert out["sum", "mean"]["elbo_loss"].item() == pytest.approx(6 + 0.25)
    # sum over pixels is exactly D times the mean
    assert out["sum", "sum"]["recon"] == pytest.approx(12 * out["mean", "sum"]["recon"])


def test_vae_loss_applies_free_bits_only_to_the_optimised_loss():
    pixels = torch.zeros(2, 4)
    kl = torch.full((2, 3), 0.1)
    terms = losses.vae_loss(pixels, kl, weight=1.0, recon_reduction="sum",
                            kl_reduction="sum", free_bits_nats=0.5)
    assert terms["loss"].item() == pytest.approx(1.5)
    assert terms["kl"].item() == pytest.approx(0.3)


def test_gaussian_nll_matches_torch_distribution():
    x, mean = torch.rand(3, 5), torch.rand(3, 5)
    log_sigma = torch.tensor(-1.3)
    ref = -torch.distributions.Normal(mean, log_sigma.exp()).log_prob(x)
    assert torch.allclose(losses.gaussian_nll(x, mean, log_sigma), ref, atol=1e-5)


def test_optimal_sigma_is_the_mse_and_minimises_the_nll():
    x, mean = torch.rand(8, 20), torch.rand(8, 20)
    best = losses.optimal_log_sigma(x, mean)
    assert (2 * best).exp().item() == pytest.approx((x - mean).pow(2).mean().item(), rel=1e-5)
    nll = [losses.gaussian_nll(x, mean, best + d).sum() for d in (-0.1, 0.0, 0.1)]
    assert nll[1] < nll[0] and nll[1] < nll[2]


def test_gaussian_nll_at_optimum_is_the_summed_density_at_the_optimal_sigma():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 50, generator=gen, dtype=torch.float64)
    mean = torch.rand(6, 50, generator=gen, dtype=torch.float64)
    mse = (x - mean).pow(2).mean().item()
    log_sigma = torch.tensor(0.5 * math.log(mse), dtype=torch.float64)
    direct = losses.gaussian_nll(x, mean, log_sigma).sum(1).mean().item()
    assert losses.gaussian_nll_at_optimum(mse, 50) == pytest.approx(direct, rel=1e-9)
    assert losses.gaussian_nll_at_optimum(0.01, 4) == pytest.approx(
        2 * (math.log(2 * math.pi * 0.01) + 1))
    # a perfect reconstruction is floored at the quantisation variance, not -inf
    floor = 2 * (math.log(2 * math.pi / (12 * 255**2)) + 1)
    assert losses.gaussian_nll_at_optimum(0.0, 4) == pytest.approx(floor)


def test_reparameterize_draws_from_the_posterior():
    mu = torch.tensor([[1.0, -2.0, 0.0]]).expand(100_000, 3)
    logvar = torch.tensor([[0.0, math.log(4.0), math.log(0.01)]]).expand(100_000, 3)
    z = losses.reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    assert z.mean(0).tolist() == pytest.approx([1.0, -2.0, 0.0], abs=0.02)
    assert z.var(0).tolist() == pytest.approx([1.0, 4.0, 0.01], rel=0.02)
    # a private generator gives the same draw again and leaves the global RNG alone
    torch.manual_seed(1)
    before = torch.random.get_rng_state()
    again = losses.reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    assert torch.equal(z, again)
    assert torch.equal(torch.random.get_rng_state(), before)
