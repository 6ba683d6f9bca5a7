"""Encoder and decoder shapes for every image size the data can give."""

import pytest
import torch

from models.networks import Decoder, Encoder


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (3, 17, 23), (1, 8, 8)])
@pytest.mark.parametrize("depth", [1, 4])
def test_decoder_returns_the_input_shape(shape, depth):
    enc = Encoder(shape, depth, 4, 6)
    dec = Decoder(shape, depth, 4, 6, "sigmoid")
    mu, logvar = enc(torch.rand(2, *shape))
    assert mu.shape == logvar.shape == (2, 6)
    out = dec(mu)
    assert out.shape == (2, *shape)
    assert 0 <= out.min() and out.max() <= 1


def test_no_activation_leaves_output_unbounded():
    torch.manual_seed(0)
    dec = Decoder((1, 8, 8), 2, 4, 3, "none")
    with torch.no_grad():  # a large last-layer bias must come through unsquashed
        dec.deconvs[-1].bias.fill_(5.0)
        out = dec(torch.randn(4, 3))
    assert out.min() > 1.0 and out.max() > 4.0
    sig = Decoder((1, 8, 8), 2, 4, 3, "sigmoid")
    sig.load_state_dict(dec.state_dict())
    z = torch.randn(4, 3)
    with torch.no_grad():  # the same weights with a sigmoid: exactly the squashed output
        torch.testing.assert_close(sig(z), dec(z).sigmoid())
