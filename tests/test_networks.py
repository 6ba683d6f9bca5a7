"""The network registry and its contract: builders by name, knobs checked against their
signature, wrong shapes named; conv's shapes for every image size the data can give."""

import textwrap

import pytest
import torch
from torch import nn

from models import networks
from models.config import Config, ConfigError
from models.module import VAE
from models.networks.conv import Decoder, Encoder


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
