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


def _sigmoid(t):
    return 1 / (1 + math.exp(-t))


H = 1 / 510  # half a level of pixels scaled by 1/255

# Three sub-pixels of a 1 x 1 x 3 image: level 0 (edge), level 100, level 255 (edge).
LEVELS = torch.tensor([[[[0.0, 100 / 255, 1.0]]]])


def _by_hand(x, mean, scale):
    """P(level) of the discretised logistic, PixelCNN++'s edge cases, with math.exp."""
    if x == 0:
        return _sigmoid((x + H - mean) / scale)
    if x == 1:
        return 1 - _sigmoid((x - H - mean) / scale)
    return _sigmoid((x + H - mean) / scale) - _sigmoid((x - H - mean) / scale)


def test_discretized_logistic_nll_is_minus_log_of_the_cdf_difference():
    means, scales = [0.1, 0.4, 0.9], [0.05, 0.02, 0.1]
    out = torch.tensor([[[means], [[math.log(s) for s in scales]]]])  # (1, 2, 1, 3)
    got = lik(likelihood="discretized_logistic", decoder_activation="none").nll(LEVELS, out, {})
    want = [-math.log(_by_hand(x, m, s)) for x, m, s in zip(LEVELS.flatten().tolist(), means,
                                                             scales, strict=True)]
    assert got.flatten().tolist() == pytest.approx(want, rel=1e-5)


def test_discretized_mixture_nll_weighs_its_components_by_softmax():
    # Two components per sub-pixel: groups logits (2), locations (2), log-scales (2).
    logits, means, scales = [[0.3, -1.0, 2.0], [0.0, 0.5, -2.0]], \
        [[0.05, 0.3, 0.7], [0.2, 0.45, 0.99]], [[0.1, 0.05, 0.2], [0.02, 0.3, 0.01]]
    out = torch.tensor([[[row] for row in
                         [*logits, *means, *[[math.log(s) for s in r] for r in scales]]]])
    model = lik(likelihood="discretized_logistic_mixture", mixture_components=2,
                decoder_activation="none")
    assert model.outputs_per_channel() == 6 and tuple(out.shape) == (1, 6, 1, 3)
    want = []
    for i, x in enumerate(LEVELS.flatten().tolist()):
        w = [math.exp(logits[m][i]) for m in range(2)]
        want.append(-math.log(sum(w[m] / sum(w) * _by_hand(x, means[m][i], scales[m][i])
                                  for m in range(2))))
    assert model.nll(LEVELS, out, {}).flatten().tolist() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("log_scale", [-9.0, -5.5, -2.0, 0.0, 3.0])
def test_discretized_probabilities_of_the_256_levels_sum_to_one(log_scale):
    torch.manual_seed(0)
    levels = (torch.arange(256, dtype=torch.float64) / 255).view(256, 1, 1, 1)
    m = 3
    out = torch.cat([torch.randn(1, m, 1, 4), torch.rand(1, m, 1, 4) * 1.4 - 0.2,
                     torch.full((1, m, 1, 4), log_scale)], 1).double().expand(256, -1, -1, -1)
    for model in (lik(likelihood="discretized_logistic", decoder_activation="none"),
                  lik(likelihood="discretized_logistic_mixture", mixture_components=m,
                      decoder_activation="none")):
        # each of the 4 sub-pixels of (1, 1, 4) images takes every level once
        used = out[:, [m, 2 * m]] if model.outputs_per_channel() == 2 else out
        p = (-model.nll(levels.expand(256, 1, 1, 4), used, {})).exp()
        assert p.sum(0).tolist() == pytest.approx([1.0] * 4, abs=1e-12)


def test_discretized_mean_is_the_clamped_logistics_mean_and_bits_have_no_offset():
    from models.discretized import logistic_mean
    from models.metrics import Evaluation

    mean, scale = torch.tensor([-0.3, 0.2, 0.5, 1.4], dtype=torch.float64), 0.1
    levels = torch.arange(256, dtype=torch.float64)[:, None] / 255
    model = lik(likelihood="discretized_logistic", decoder_activation="none")
    out = torch.stack([mean, torch.full_like(mean, math.log(scale))])[None, :, None]
    p = (-model.nll(levels.view(256, 1, 1, 1).expand(256, 1, 1, 4),
                    out.expand(256, -1, -1, -1), {})).exp()
    exact = (p * levels).sum(0)  # sum_k k/255 P(k)
    assert model.mean(out).flatten().tolist() == pytest.approx(exact.tolist(),
                                                               abs=1 / (48 * 255**2 * scale))
    assert float(logistic_mean(torch.tensor(0.3), torch.tensor(-30.0))) == pytest.approx(0.3)
    # bits_per_dim_own: -log2 P per sub-pixel (plus the rate), no log2(255) added
    x = torch.rand(5, 1, 1, 4).mul(255).round().div(255)
    out = torch.randn(5, 2, 1, 4)
    ev = Evaluation(model, {}, 0.01)
    ev.update(x, out, torch.zeros(5, 2), torch.zeros(5, 2))  # rate 0
    bits = ev.compute(with_mutual_info=False)["bits_per_dim_own"]
    assert bits == pytest.approx(float(model.nll(x, out, {}).sum()) / (20 * math.log(2)))
    assert float(model.log_prob(x, out, {}).sum()) == pytest.approx(
        -float(model.nll(x, out, {}).sum()) + 20 * math.log(255), rel=1e-6)


def test_sigmoid_decoder_bounds_only_the_locations():
    raw = torch.randn(2, 6 * 3, 4, 4)  # 2 components of 3 channels: 3 groups of 2 x 3
    model = lik(likelihood="discretized_logistic_mixture", mixture_components=2)
    got = model.activate(raw)
    assert torch.equal(got[:, :6], raw[:, :6]) and torch.equal(got[:, 12:], raw[:, 12:])
    assert torch.allclose(got[:, 6:12], raw[:, 6:12].sigmoid(), rtol=1e-6, atol=0)
    assert torch.equal(lik(likelihood="discretized_logistic",
                           decoder_activation="none").activate(raw[:, :6]), raw[:, :6])


@pytest.mark.parametrize("model", ["conv", "resnet", "mlp"])
def test_every_network_gets_the_likelihoods_output_channels(model):
    from models import networks

    for cfg, k in ((Config(model=model, latent_dim=4), 1),
                   (Config(model=model, latent_dim=4, likelihood="discretized_logistic"), 2),
                   (Config(model=model, latent_dim=4, mixture_components=3,
                           likelihood="discretized_logistic_mixture"), 9)):
        encoder, decoder = networks.build(cfg, (3, 6, 5))
        x = torch.rand(2, 3, 6, 5)
        assert tuple(decoder(encoder(x)[0]).shape) == (2, 3 * k, 6, 5)
        networks.check_forward(cfg, encoder, decoder, x)


def test_a_decoder_of_the_images_shape_is_named_for_a_discretised_likelihood():
    from models import networks
    from models.config import ConfigError

    plain = Config(model="mlp", latent_dim=4)
    encoder, decoder = networks.build(plain, (3, 2, 2))
    with pytest.raises(ConfigError, match=r"\(2, 6, 2, 2\).*discretized_logistic reads 2"):
        networks.check_forward(plain.replace(likelihood="discretized_logistic"), encoder,
                               decoder, torch.rand(2, 3, 2, 2))


def test_mixture_components_is_validated():
    from models.config import ConfigError

    assert Config().mixture_components == 5
    for bad in (0, -1, 257):
        with pytest.raises(ConfigError, match="^mixture_components: must be"):
            Config(mixture_components=bad)


@pytest.mark.parametrize("name", ["discretized_logistic", "discretized_logistic_mixture"])
def test_discretised_likelihoods_train_and_report_their_bits(tiny, images, name):
    from models.train import fit

    result = fit(Config.from_dict(dict(tiny, likelihood=name, mixture_components=2, lr=1e-2,
                                       max_epochs=2, recon_reduction="sum")), images=images)
    m, d = result.metrics, 3 * 32 * 32
    assert math.isfinite(m["bits_per_dim"])
    assert m["bits_per_dim_own"] == pytest.approx(
        m["neg_elbo_own"] / (d * math.log(2)) + math.log2(255))
    first, last = (h["bits_per_dim_own"] for h in result.history)
    assert last < first  # it learns


@pytest.mark.slow
def test_start_searches_a_discretised_likelihood_and_records_its_bits(tmp_path):
    import optuna
    from test_cli import sweep

    sweep("start", "--data", "synthetic", "--n-trials", "1", "--max-epochs", "1",
          "--no-baseline", "--no-references", "--set", "likelihood=discretized_logistic_mixture",
          "--set", "mixture_components=2", "--set", "synthetic_size=96", "--set", "width=4",
          "--set", "depth=2", "--set", "latent_dim=8", "--study", "d", cwd=tmp_path)
    study = optuna.load_study(study_name="d", storage=f"sqlite:///{tmp_path}/sweeps.db")
    (trial,) = study.get_trials()
    attrs, d = trial.user_attrs, 3 * 32 * 32
    assert trial.state.name == "COMPLETE"
    assert attrs["bits_per_dim_own"] == pytest.approx(
        attrs["neg_elbo_own"] / (d * math.log(2)) + math.log2(255))
    assert math.isfinite(attrs["bits_per_dim"])


def test_a_discretised_likelihood_refuses_continuous_data():
    from models.config import ConfigError
    from models.module import VAE

    cfg = Config(likelihood="discretized_logistic", model="mlp", latent_dim=2)
    with pytest.raises(ConfigError, match="^likelihood: discretized_logistic is a distribution"):
        VAE(cfg.to_dict(), (4,), 1, eight_bit=False)
    assert VAE(cfg.to_dict(), (4,), 1).likelihood.discrete
