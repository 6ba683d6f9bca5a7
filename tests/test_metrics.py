"""Metrics on posteriors built so that their true values are known."""

import math
import statistics

import pytest
import torch

from models import metrics
from models.config import Config
from models.likelihoods import build


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


def test_mutual_info_of_a_collapsed_encoder_is_zero():
    n, d = 2000, 256
    # q(z|x) = N(0, I) for every x: exactly 0, not the 0.34 nats one draw of the old form read
    assert metrics.mutual_info(torch.zeros(n, d), torch.zeros(n, d)) == pytest.approx(0, abs=1e-9)
    # near-zero rate like the seed question's collapsed model (3e-5 nats): its dims are left out
    gen = torch.Generator().manual_seed(0)
    mu, logvar = 3e-4 * torch.randn(n, d, generator=gen), 1e-4 * torch.randn(n, d, generator=gen)
    assert float(metrics.kl_per_dim(mu, logvar).mean(0).sum()) < 1e-4
    assert metrics.mutual_info(mu, logvar) == 0.0
    # rates of 3e-3 and 0.03 nats, above what may be left out, so estimated: near 0 and
    # unbiased against the closed form d/2 log(1 + s^2) of mu ~ N(0, s^2), posterior N(mu, 1)
    for s, tolerance in ((0.005, 0.01), (0.015, 0.05)):
        mu = s * torch.randn(n, d, generator=gen)
        assert float(metrics.kl_per_dim(mu, torch.zeros(n, d)).mean(0).sum()) > metrics.MI_DROP_NATS
        estimate = metrics.mutual_info(mu, torch.zeros(n, d))
        assert abs(estimate) < tolerance
        assert estimate == pytest.approx(0.5 * d * math.log(1 + s**2), abs=0.003)


def test_mutual_info_reaches_its_ceiling_log_n_for_separated_posteriors():
    n = 1000
    mu = torch.arange(n, dtype=torch.float32)[:, None]  # one unit apart ...
    logvar = torch.full((n, 1), math.log(1e-4))  # ... with SD 0.01: every z names its x
    assert metrics.mutual_info(mu, logvar) == pytest.approx(math.log(n), abs=0.01)
    gen = torch.Generator().manual_seed(1)
    wide = metrics.mutual_info(3 * torch.randn(n, 4, generator=gen), torch.full((n, 4), -4.0))
    assert wide <= math.log(n) + 1e-9  # the true I, 2 log(1 + 9 e^4) = 12.4, is above it


def test_mutual_info_matches_the_gaussian_closed_form():
    # mu ~ N(0, s^2) per dim, posterior variance v: I = d/2 log(1 + s^2 / v) as N grows;
    # here log 4 = 1.386 nats, far below log N, where the estimator's bias is small.
    n, d, s2, v = 4000, 2, 3.0, 1.0
    gen = torch.Generator().manual_seed(2)
    mu = math.sqrt(s2) * torch.randn(n, d, generator=gen)
    estimate = metrics.mutual_info(mu, torch.full((n, d), math.log(v)))
    assert estimate == pytest.approx(0.5 * d * math.log(1 + s2 / v), abs=0.05)


def test_mutual_info_spread_at_the_default_validation_size():
    # N = 5000 images, d = 256 dims, 8 of them informative (I = 4 log 4 = 5.5 nats, where the
    # spread is largest), the rest jittering around the prior.
    n, d, k = 5000, 256, 8
    gen = torch.Generator().manual_seed(3)
    mu = 0.003 * torch.randn(n, d, generator=gen)
    mu[:, :k] = math.sqrt(3.0) * torch.randn(n, k, generator=gen)
    logvar = torch.zeros(n, d)
    values = [metrics.mutual_info(mu, logvar, seed=seed) for seed in range(6)]
    assert statistics.stdev(values) < 0.05
    assert metrics.mutual_info(mu, logvar) == metrics.mutual_info(mu, logvar)  # deterministic


def _evaluation(likelihood, out=None, params=None, **overrides):
    lik = build(Config(likelihood=likelihood, **overrides))
    ev = metrics.Evaluation(lik, params or {}, 0.01)
    x = torch.full((4, 1, 2, 2), 0.5)
    out = torch.full((4, 1, 2, 2), 0.6) if out is None else out
    mu = torch.ones(4, 3)
    ev.update(x, out, mu, torch.zeros(4, 3))
    return ev.compute()


def test_evaluation_units_and_the_yardstick_in_closed_form():
    m = _evaluation("mse")
    assert m["mse"] == pytest.approx(0.01)
    assert m["rate"] == pytest.approx(1.5)  # 3 dims at 0.5 nats
    nll = 0.5 * 4 * (math.log(2 * math.pi * 0.01) + 1)  # D/2 (log(2 pi s^2) + 1), s^2 = 0.01
    assert m["neg_elbo"] == pytest.approx(1.5 + nll)
    assert m["bits_per_dim"] == pytest.approx((1.5 + nll) / (4 * math.log(2)) + math.log2(255))
    assert m["neg_elbo_own"] == pytest.approx(m["neg_elbo"])  # mse's own rule is the yardstick
    assert m["active_units"] == 0 and m["collapsed"] is True
    assert m["kl_per_dim"] == pytest.approx([0.5, 0.5, 0.5])


def test_nats_per_dim_for_all_data_and_bits_per_dim_for_8_bit_data_only():
    m = _evaluation("mse")
    assert m["nats_per_dim"] == pytest.approx(m["neg_elbo"] / 4)  # D = 4 pixels
    assert m["bits_per_dim"] == pytest.approx(m["nats_per_dim"] / math.log(2) + math.log2(255))
    ev = metrics.Evaluation(build(Config()), {}, 0.01, eight_bit=False)
    x = torch.tensor([[3.0, -1.0], [2.0, 0.5]])  # continuous data: no [0, 1], no levels
    ev.update(x, x + 0.1, torch.zeros(2, 3), torch.zeros(2, 3))
    m = ev.compute(with_mutual_info=False)
    assert "bits_per_dim" not in m and "bits_per_dim_own" not in m
    nll = 0.5 * 2 * (math.log(2 * math.pi * 0.01) + 1)  # D/2 (log(2 pi s^2) + 1), s^2 = 0.01
    assert m["neg_elbo"] == pytest.approx(nll) and m["nats_per_dim"] == pytest.approx(nll / 2)


def test_evaluation_bernoulli_own_score_beside_the_yardstick():
    m = _evaluation("bernoulli")
    per_pixel = -(0.5 * math.log(0.6) + 0.5 * math.log(0.4))
    assert m["neg_elbo_own"] == pytest.approx(1.5 + 4 * per_pixel, rel=1e-5)
    assert m["bits_per_dim_own"] == pytest.approx(
        (1.5 + 4 * per_pixel) / (4 * math.log(2)) + math.log2(255), rel=1e-6)
    assert m["neg_elbo"] == pytest.approx(_evaluation("mse")["neg_elbo"])


def test_same_predicted_images_same_score_whatever_the_likelihood():
    gen = torch.Generator().manual_seed(4)
    probs = torch.rand(4, 1, 2, 2, generator=gen)
    runs = [_evaluation("mse", probs), _evaluation("gaussian", probs, sigma_mode="optimal"),
            _evaluation("gaussian", probs, {"log_sigma": torch.tensor(-3.0)},
                        sigma_mode="learned"),
            _evaluation("bernoulli", probs),
            _evaluation("bernoulli", probs.logit(), decoder_activation="none")]
    for m in runs[1:]:
        assert m["neg_elbo"] == pytest.approx(runs[0]["neg_elbo"], rel=1e-6)
        assert m["bits_per_dim"] == pytest.approx(runs[0]["bits_per_dim"], rel=1e-6)
    assert len({round(m["neg_elbo_own"], 3) for m in runs}) == 3  # their own units differ


def test_mse_is_the_sampled_reconstructions_and_gives_the_yardstick_with_the_rate():
    logits = torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(5))
    m = _evaluation("bernoulli", logits, decoder_activation="none")
    assert m["mse"] == pytest.approx(float((logits.sigmoid() - 0.5).pow(2).mean()), rel=1e-6)
    pixels = 4
    assert m["neg_elbo"] == pytest.approx(
        m["rate"] + pixels / 2 * (math.log(2 * math.pi * m["mse"]) + 1), rel=1e-9)


def test_bits_per_dim_offset_is_log2_255_for_pixels_scaled_by_1_over_255():
    assert metrics.BITS_OFFSET == pytest.approx(7.99435, abs=1e-5)
    assert metrics.bits_per_dim(0.0, 3072) == metrics.BITS_OFFSET
    # A Gaussian density on x = k / 255 against the exact probability of each 8-bit level
    # (its mass over the level's bin of width 1/255): the offset makes them agree.
    x = torch.arange(256, dtype=torch.float64) / 255
    sigma = 20 / 255
    mean = x + 0.3 * sigma * torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(128)
    normal = torch.distributions.Normal(mean, sigma)
    exact_bits = float(-(normal.cdf(x + 0.5 / 255) - normal.cdf(x - 0.5 / 255)).log2().mean())
    nats = float(-normal.log_prob(x).sum())
    assert metrics.bits_per_dim(nats, 256) == pytest.approx(exact_bits, abs=2e-4)
    assert abs(nats / (256 * math.log(2)) + 8 - exact_bits) > 5e-3  # the offset is not 8


def test_active_units_of_an_encoder_built_so_that_exactly_k_dims_vary():
    from models.networks.conv import Encoder

    torch.manual_seed(0)
    k, d = 3, 10
    enc = Encoder((1, 8, 8), 2, 4, d)
    with torch.no_grad():
        enc.head.weight[k:d].zero_()  # mu_u for u >= k ignores x ...
        enc.head.bias[k:d].fill_(0.7)  # ... and sits at a constant
        enc.head.weight[:k].mul_(20)  # mu_u for u < k varies well above the threshold
        mu, _ = enc(torch.rand(256, 1, 8, 8))
    assert metrics.active_units(mu) == k
