"""``resnet``: a residual convolutional encoder and decoder, for any C x H x W image size.

The same skeleton as ``conv`` (``stages`` stride-2 3x3 convs of ``width``, ``2 width``, ...
channels, mirrored by transposed convs that land exactly on the encoder's sizes, so odd
sizes round-trip), with ``blocks`` residual blocks after each downsampling conv of the
encoder and before each upsampling conv of the decoder. A block is VQ-VAE's (van den Oord
et al. 2017, "Neural Discrete Representation Learning", sec. 4.1: act, 3x3 conv, act, 1x1
conv, added to x) through a bottleneck of a quarter of the channels (its Sonnet example's
32 of 128), which costs 2.5 c^2 multiply-adds per pixel where two full 3x3 convs would cost
18 c^2. So the defaults (4 stages of 1 block at
width 32, 2.0 M parameters against conv's 1.6 M) train a CIFAR-10 batch in less than twice
``conv``'s time: 1.54x its median train step (Adam, Gaussian likelihood, batch 40 of
3x32x32, one CPU thread, NHWC; the two networks' steps interleaved, 100 each, load 1.7-3.7
on 2 cores; conv 102 ms, resnet 158 ms; blocks=2 costs 2.16x).

The last conv of every block starts at zero (the zero-initialised residual branch of Goyal
et al. 2017, "Accurate, Large Minibatch SGD", and Fixup, Zhang et al. 2019): at
initialisation each block is the identity and the network computes what ``conv`` does (but
for a LeakyReLU after the decoder's first layer), so the deeper stack trains stably without
normalisation layers (batch statistics would tie a posterior to the
other examples of its batch). ``build`` is its entry in the registry (``models.networks``).
"""

from __future__ import annotations

import torch
from torch import nn

from models.networks.conv import MAX_CHANNELS, channels, down, flat_features, spatial_sizes, up

# Knob bounds: far above any VAE they are meant for, low enough that a typo (blocks=1000000)
# is refused by name instead of allocating gigabytes of layers.
MAX_STAGES = 16
MAX_BLOCKS = 64
BOTTLENECK = 4  # a block's hidden channels: its channels divided by this (at least 1)


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2)


class ResBlock(nn.Module):
    """x (B, c, H, W) -> x + 1x1(act(3x3(act(x)))), the same shape."""

    def __init__(self, c: int) -> None:
        super().__init__()
        hidden = max(1, c // BOTTLENECK)
        last = nn.Conv2d(hidden, c, 1, bias=False)  # zero at init (docstring); no bias, as Fixup
        nn.init.zeros_(last.weight)
        self.branch = nn.Sequential(_act(), nn.Conv2d(c, hidden, 3, padding=1), _act(), last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.branch(x)
        return out


class Encoder(nn.Module):
    """x (B, C, H, W) in [0, 1] -> (mu, logvar), each (B, latent_dim)."""

    def __init__(self, shape: tuple[int, int, int], stages: int, blocks: int, width: int,
                 latent_dim: int) -> None:
        super().__init__()
        chans = [shape[0], *channels(stages, width)]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:], strict=True):
            layers += [down(c_in, c_out), *(ResBlock(c_out) for _ in range(blocks)), _act()]
        self.convs = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(flat_features(shape, stages, width), 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.convs(x)).chunk(2, dim=1)
        return mu, logvar


class Decoder(nn.Module):
    """z (B, latent_dim) -> raw output (B, C, H, W): the VAE applies ``decoder_activation``."""

    def __init__(self, shape: tuple[int, int, int], stages: int, blocks: int, width: int,
                 latent_dim: int) -> None:
        super().__init__()
        chans = channels(stages, width)[::-1] + [shape[0]]
        sizes = spatial_sizes(shape[1], shape[2], stages)[::-1]
        self.start = (chans[0], *sizes[0])
        self.fc = nn.Linear(latent_dim, chans[0] * sizes[0][0] * sizes[0][1])
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(chans[:-1], chans[1:], strict=True)):
            layers += [*(ResBlock(c_in) for _ in range(blocks)), _act(),
                       up(c_in, c_out, sizes[i], sizes[i + 1])]
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.deconvs(self.fc(z).view(-1, *self.start))
        return out


def build(shape: tuple[int, ...], latent_dim: int, stages: int = 4, blocks: int = 1,
          width: int = 32) -> tuple[nn.Module, nn.Module]:
    """The registry's ``resnet``: ``stages`` stride-2 convs of ``width``, ``2 width``, ...
    channels (capped at MAX_CHANNELS), each followed by ``blocks`` residual blocks, and
    their mirror image."""
    if len(shape) != 3:
        raise ValueError(f"resnet needs images (C, H, W), got data of shape {tuple(shape)}; "
                         "use model=mlp for vectors")
    for name, value, most in (("stages", stages, MAX_STAGES), ("blocks", blocks, MAX_BLOCKS),
                              ("width", width, MAX_CHANNELS)):
        if not 1 <= value <= most:
            raise ValueError(f"resnet needs 1 <= {name} <= {most}, got {value}")
    image = (int(shape[0]), int(shape[1]), int(shape[2]))
    return (Encoder(image, stages, blocks, width, latent_dim),
            Decoder(image, stages, blocks, width, latent_dim))
