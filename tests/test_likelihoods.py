"""Each likelihood's training term, predicted image and own score against closed form; the
registry is what the config, the module and the default search space read."""

import math

import pytest
import torch

from models import likelihoods
from models.config import CHOICES, Config
from models.likelihoods import LIKELIHOODS, build


def lik(**overrides):
    return build(Config(**overrides))


def test_registry_is_the_config_and_search_choices():
    from sweep.space import DEFAULT_SPACE

    assert list(LIKELIHOODS)[:3] == ["mse", "gaussian", "bernoulli"]  # the seed's first
    assert CHOICES["likelihood"] == tuple(LIKELIHOODS)
    assert DEFAULT_SPACE["search"]["likelihood"]["choices"] == list(LIKELIHOODS)
    assert all(build(Config(likelihood=name)).name == name for name in LIKELIHOODS)
    with pytest.raises(ValueError, match="taken"):
        likelihoods.register(likelihoods.MSE)


def test_mse_is_squared_error_per_pixel():
    x, out = torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)
    assert lik(likelihood="mse").nll(x, out, {}).tolist() == [[0.25] * 4]


def test_gaussian_learned_and_optimal_sigma():
    x, mean = torch.rand(3, 1, 1, 5), torch.rand(3, 1, 1, 5)
    learned = lik(likelihood="gaussian", sigma_mode="learned")
    assert learned.initial_params() == {"log_sigma": 0.0}
    log_sigma = torch.tensor(-1.3)
    ref = -torch.distributions.Normal(mean.flatten(1), log_sigma.exp()).log_prob(x.flatten(1))
    assert torch.allclose(learned.nll(x, mean, {"log_sigma": log_sigma}), ref, atol=1e-5)
    optimal = lik(likelihood="gaussian", sigma_mode="optimal")
    assert optimal.initial_params() == {}
    sigma = (x - mean).pow(2).mean().sqrt()
    ref = -torch.distributions.Normal(mean.flatten(1), sigma).log_prob(x.flatten(1))
    assert torch.allclose(optimal.nll(x, mean, {}), ref, atol=1e-5)


def test_bernoulli_logits_and_probabilities_agree_and_predict_the_probability():
    x = torch.rand(2, 1, 2, 3).round()
    logits = torch.randn(2, 1, 2, 3)
    on_logits = lik(likelihood="bernoulli", decoder_activation="none")
    on_probs = lik(likelihood="bernoulli", decoder_activation="sigmoid")
    p = logits.sigmoid()
    ref = -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1)
    assert torch.allclose(on_logits.nll(x, logits, {}), ref, atol=1e-5)
    assert torch.allclose(on_probs.nll(x, p, {}), ref, atol=1e-4)
    assert torch.equal(on_logits.mean(logits), p)
    assert torch.equal(on_probs.mean(p), p)


def test_own_scores_in_nats_per_image():
    x, out = torch.full((4, 1, 2, 2), 0.5), torch.full((4, 1, 2, 2), 0.6)
    at_optimum = 0.5 * 4 * (math.log(2 * math.pi * 0.01) + 1)  # s^2 = MSE = 0.01, D = 4

    def own(model, params=None):
        sums = {k: float(v) for k, v in model.score(x, out, params or {}).items()}
        return model.own_nll(sums, images=4, pixels=4)

    assert own(lik(likelihood="mse")) == pytest.approx(at_optimum)
    assert own(lik(likelihood="gaussian", sigma_mode="optimal")) == pytest.approx(at_optimum)
    log_sigma = math.log(0.2)
    per_pixel = 0.5 * (0.1 / 0.2) ** 2 + log_sigma + 0.5 * math.log(2 * math.pi)
    assert own(lik(likelihood="gaussian", sigma_mode="learned"),
               {"log_sigma": torch.tensor(log_sigma)}) == pytest.approx(4 * per_pixel, rel=1e-5)
    bce = -(0.5 * math.log(0.6) + 0.5 * math.log(0.4))
    assert own(lik(likelihood="bernoulli")) == pytest.approx(4 * bce, rel=1e-5)


def test_likelihoods_import_no_torch():
    # The CLI validates configs before it imports torch; the registry must not pull it in.
    import subprocess
    import sys

    code = "import sys, models.config; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
