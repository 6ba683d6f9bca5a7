"""The network registry and its contract: builders by name, knobs checked against their
signature, wrong shapes named; conv's shapes for every image size the data can give; the
other built-ins (resnet, mlp) meet the same contract and train."""

import re
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from models import networks, train
from models.config import Config, ConfigError
from models.module import VAE, step_terms
from models.networks.conv import Decoder, Encoder
from models.networks.resnet import ResBlock


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (3, 17, 23), (1, 8, 8)])
@pytest.mark.parametrize("depth", [1, 4])
def test_conv_decoder_returns_the_input_shape(shape, depth):
    enc = Encoder(shape, depth, 4, 6)
    dec = Decoder(shape, depth, 4, 6)
    mu, logvar = enc(torch.rand(2, *shape))
    assert mu.shape == logvar.shape == (2, 6)
    assert dec(mu).shape == (2, *shape)


def test_the_vae_applies_the_decoder_activation():
    """The network's output is raw; ``decoder_activation`` squashes it (or not)."""
    torch.manual_seed(0)
    shape = (1, 8, 8)
    cfg = Config(knobs={"depth": 2, "width": 4}, latent_dim=3)
    raw = VAE(cfg.replace(decoder_activation="none").to_dict(), shape, 10)
    sig = VAE(cfg.to_dict(), shape, 10)
    sig.load_state_dict(raw.state_dict())
    with torch.no_grad():  # a large last-layer bias must come through unsquashed
        raw.decoder.deconvs[-1].bias.fill_(5.0)
        sig.decoder.deconvs[-1].bias.fill_(5.0)
        z = torch.randn(4, 3)
        out = raw.decode(z)
        assert out.min() > 1.0 and out.max() > 4.0
        torch.testing.assert_close(sig.decode(z), out.sigmoid())


def write(tmp_path, body, name="my_vae.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


GOOD = """
    from torch import nn

    def build(shape, latent_dim, hidden=16, scale=1.0):
        d = 1
        for n in shape:
            d *= n
        enc = nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(),
                            nn.Linear(hidden, 2 * latent_dim))

        class Enc(nn.Module):
            def __init__(self):
                super().__init__()
                self.net = enc

            def forward(self, x):
                return self.net(x).chunk(2, dim=1)

        dec = nn.Sequential(nn.Linear(latent_dim, d), nn.Unflatten(1, tuple(shape)))
        return Enc(), dec
"""


def test_a_builder_by_file_path_builds_and_passes_the_forward_check(tmp_path):
    path = write(tmp_path, GOOD)
    cfg = Config(model=f"{path}:build", latent_dim=4, knobs={"hidden": 8})
    enc, dec = networks.build(cfg, (3, 4, 4))
    assert enc.net[1].out_features == 8
    networks.check_forward(cfg, enc, dec, torch.rand(2, 3, 4, 4))
    assert networks.resolve_knobs(cfg.model, cfg.knob_values) == {"hidden": 8, "scale": 1.0}
    assert networks.source_sha256(cfg.model) == __import__("hashlib").sha256(
        path.read_bytes()).hexdigest()


def test_builtin_names_are_builders_like_any_other():
    assert networks.import_path("conv") == "models.networks.conv:build"
    assert networks.knob_defaults(networks.load_builder("conv")) == {"depth": 4, "width": 32}
    assert networks.spec_of(networks.load_builder("conv")) == "conv"


@pytest.mark.parametrize("knobs,key,words", [
    ({"hiden": 8}, "model.hiden", "unknown knob"),
    ({"hidden": "wide"}, "model.hidden", "expected int"),
])
def test_bad_knobs_are_named(tmp_path, knobs, key, words):
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError) as err:
        networks.resolve_knobs(f"{path}:build", knobs)
    assert err.value.key == key and words in str(err.value)


def test_a_required_knob_is_named(tmp_path):
    path = write(tmp_path, "def build(shape, latent_dim, channels):\n    pass\n")
    with pytest.raises(ConfigError, match="model.channels: .* needs it"):
        networks.resolve_knobs(f"{path}:build", {})


@pytest.mark.parametrize("body,spec_tail,words", [
    (None, "missing.py:build", "no file"),
    ("import no_such_module_here\n", "my_vae.py:build", "ModuleNotFoundError"),
    ("x = 1\n", "my_vae.py:build", "has no function 'build'"),
])
def test_a_builder_that_does_not_import_is_named(tmp_path, body, spec_tail, words):
    if body is not None:
        write(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        networks.load_builder(f"{tmp_path}/{spec_tail}")
    assert err.value.key == "model" and words in str(err.value)
    assert "\n" not in str(err.value)


def test_wrong_shapes_name_the_module_and_both_shapes(tmp_path):
    path = write(tmp_path, GOOD.replace("nn.Unflatten(1, tuple(shape))",
                                        "nn.Unflatten(1, (1, *shape))"))
    cfg = Config(model=f"{path}:build", latent_dim=4)
    enc, dec = networks.build(cfg, (3, 4, 4))
    with pytest.raises(ConfigError, match=r"the decoder returned a tensor of shape "
                                          r"\(2, 1, 3, 4, 4\); it must return .* \(2, 3, 4, 4\)"):
        networks.check_forward(cfg, enc, dec, torch.rand(2, 3, 4, 4))
    small = Config(model=f"{path}:build", latent_dim=5)
    with pytest.raises(ConfigError, match=r"the encoder returned mu of shape \(2, 4\); it "
                                          r"must be \(B, latent_dim\) = \(2, 5\)"):
        networks.check_forward(small, enc, dec, torch.rand(2, 3, 4, 4))


def test_a_builder_that_raises_or_returns_junk_is_named(tmp_path):
    path = write(tmp_path, "def build(shape, latent_dim, k=1):\n"
                           "    if k > 1:\n        raise ValueError('k too big')\n"
                           "    return 3\n")
    with pytest.raises(ConfigError, match="raised ValueError: k too big"):
        networks.build(Config(model=f"{path}:build", knobs={"k": 2}), (3, 4, 4))
    with pytest.raises(ConfigError, match="two nn.Modules; it returned int"):
        networks.build(Config(model=f"{path}:build"), (3, 4, 4))


def test_conv_on_vectors_says_to_use_mlp():
    with pytest.raises(ConfigError, match="use model=mlp"):
        networks.build(Config(), (12,))


def test_a_function_no_import_reaches_runs_in_process():
    def build(shape, latent_dim):
        return nn.Identity(), nn.Identity()

    spec = networks.spec_of(build)
    assert networks.in_process(spec) and networks.load_builder(spec) is build


# The other built-in networks: resnet (residual conv blocks, images) and mlp (any shape).
SMALL_KNOBS = {"resnet": {"stages": 2, "blocks": 1, "width": 4}, "mlp": {"hidden": 8}}


@pytest.mark.parametrize("model,shape,knobs", [
    ("resnet", (3, 32, 32), {"stages": 4, "blocks": 1, "width": 4}),
    ("resnet", (1, 28, 28), {"stages": 3, "blocks": 2, "width": 4}),
    ("resnet", (3, 17, 23), {"stages": 4, "blocks": 1, "width": 2}),  # odd sizes round-trip
    ("resnet", (2, 5, 3), {"stages": 5, "blocks": 1, "width": 4}),  # deeper than the image
    ("resnet", (1, 8, 8), {"stages": 1, "blocks": 3, "width": 4}),
    ("mlp", (12,), {"hidden": 8, "layers": 2}),
    ("mlp", (7,), {"hidden": 8, "layers": 0}),
    ("mlp", (3, 17, 23), {"hidden": 8, "layers": 1}),  # images too: flattened and back
    ("mlp", (2, 5), {"hidden": 4, "layers": 3}),
])
@pytest.mark.parametrize("latent_dim", [1, 6])
def test_builtin_networks_meet_the_contract(model, shape, knobs, latent_dim):
    cfg = Config(model=model, latent_dim=latent_dim, knobs=knobs)
    enc, dec = networks.build(cfg, shape)
    x = torch.rand(3, *shape)
    networks.check_forward(cfg, enc, dec, x)
    mu, logvar = enc(x)
    assert mu.shape == logvar.shape == (3, latent_dim)
    assert dec(torch.randn(5, latent_dim)).shape == (5, *shape)


def test_builtin_knobs_and_their_defaults():
    assert networks.resolve_knobs("resnet", {}) == {"stages": 4, "blocks": 1, "width": 32}
    assert networks.resolve_knobs("mlp", {"layers": 0}) == {"hidden": 512, "layers": 0}
    for name in ("resnet", "mlp"):
        assert networks.spec_of(networks.load_builder(name)) == name


@pytest.mark.parametrize("model,knobs,key,words", [
    ("resnet", {"depth": 3}, "model.depth", "(its knobs: stages, blocks, width)"),
    ("mlp", {"width": 3}, "model.width", "(its knobs: hidden, layers)"),
    ("resnet", {"blocks": 1.5}, "model.blocks", "expected int"),
    ("mlp", {"layers": "two"}, "model.layers", "expected int"),
])
def test_builtin_bad_knobs_are_named(model, knobs, key, words):
    with pytest.raises(ConfigError) as err:
        networks.resolve_knobs(model, knobs)
    assert err.value.key == key and words in str(err.value)


@pytest.mark.parametrize("model,knobs,words", [
    ("resnet", {"blocks": 0}, "1 <= blocks <= 64, got 0"),
    ("resnet", {"stages": 100}, "1 <= stages <= 16, got 100"),
    ("resnet", {"width": 100000}, "1 <= width <= 512, got 100000"),
    ("mlp", {"layers": -1}, "0 <= layers <= 64, got -1"),
    ("mlp", {"hidden": 10**9}, "1 <= hidden <= 16384, got 1000000000"),
])
def test_builtin_knob_ranges_are_refused_before_any_allocation(model, knobs, words):
    with pytest.raises(ConfigError, match=r"^model: .*raised ValueError: .*" + re.escape(words)):
        networks.build(Config(model=model, knobs=knobs), (3, 8, 8))


def test_resnet_on_vectors_says_to_use_mlp():
    with pytest.raises(ConfigError, match="resnet needs images .* use model=mlp"):
        networks.build(Config(model="resnet"), (12,))


def test_a_resnet_block_starts_as_the_identity_and_learns():
    """Zero-initialised residual branch: at init the block passes x through unchanged, and
    its last conv still gets a gradient (its input is not zero), so one step moves it."""
    torch.manual_seed(0)
    block = ResBlock(8)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(block(x), x, rtol=0, atol=0)
    block(x).pow(2).sum().backward()
    assert block.branch[-1].weight.grad.abs().sum() > 0


def test_mlp_without_hidden_layers_is_affine():
    """layers=0: the linear VAE (Lucas et al. 2019): encoder and decoder are affine maps."""
    torch.manual_seed(0)
    enc, dec = networks.build(Config(model="mlp", latent_dim=3, knobs={"layers": 0}), (6,))
    x, y, a = torch.randn(1, 6), torch.randn(1, 6), 0.3
    for got, want in zip(enc(a * x + (1 - a) * y),
                         (a * m + (1 - a) * n for m, n in zip(enc(x), enc(y), strict=True)),
                         strict=True):
        torch.testing.assert_close(got, want)
    z, w = torch.randn(1, 3), torch.randn(1, 3)
    torch.testing.assert_close(dec(a * z + (1 - a) * w), a * dec(z) + (1 - a) * dec(w))


def elbo_loss(module, x):
    torch.manual_seed(1)  # the same posterior samples for both models compared
    with torch.no_grad():
        return float(step_terms(module, x, 0).elbo_loss)


@pytest.mark.parametrize("model", ["resnet", "mlp"])
def test_builtin_networks_train_through_fit(tiny, images, model):
    plain = {k: v for k, v in tiny.items() if not k.startswith("model.")}  # conv's knobs
    cfg = Config(**plain, knobs=SMALL_KNOBS[model], model=model, max_steps=8)
    result = train.fit(cfg, images=images)
    assert result.metrics["steps"] == 8
    assert np.isfinite(result.metrics["bits_per_dim"])
    x = images[:16].float() / 255  # the data module's scaling of 8-bit images
    assert result.module.reconstruct(x).shape == x.shape
    torch.manual_seed(cfg.seed)  # fit's initialisation: the same network before training
    fresh = VAE(cfg.to_dict(), tuple(x.shape[1:]), 8)
    assert elbo_loss(result.module, x) < elbo_loss(fresh, x)


def test_mlp_trains_on_float_vectors():
    """Continuous (N, D) data, an unbounded decoder: the VAE and an optimiser step directly
    (no data module is involved)."""
    torch.manual_seed(0)
    x = torch.randn(64, 10) @ torch.randn(10, 10)  # correlated Gaussian rows
    cfg = Config(model="mlp", latent_dim=4, decoder_activation="none", likelihood="gaussian",
                 knobs={"hidden": 16, "layers": 1})
    vae = VAE(cfg.to_dict(), (10,), 20)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
    before = elbo_loss(vae, x)
    for step in range(20):
        opt.zero_grad()
        terms = step_terms(vae, x, step)
        terms.loss.backward()
        opt.step()
    assert terms.out.shape == x.shape and terms.mu.shape == (64, 4)
    assert elbo_loss(vae, x) < before
