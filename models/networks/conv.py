"""``conv``, the default network: the seed question's 4-layer convolutional encoder and decoder,
for any C x H x W image size.

Each of the ``depth`` encoder layers is a stride-2 3x3 conv (H -> ceil(H/2)); the decoder
mirrors it with transposed convs whose output padding is chosen so that every layer lands
exactly on the encoder's size, so 32x32, 28x28 and odd sizes all round-trip. ``build`` is its
entry in the network registry (``models.networks``); its knobs are ``depth`` and ``width``.
"""

from __future__ import annotations

import torch
from torch import nn

MAX_CHANNELS = 512


def channels(depth: int, width: int) -> list[int]:
    """Channels after each encoder layer: width, 2*width, ... (capped)."""
    return [min(width * 2**i, MAX_CHANNELS) for i in range(depth)]


def spatial_sizes(height: int, width: int, depth: int) -> list[tuple[int, int]]:
    """(H, W) before each encoder layer and after the last: depth + 1 entries."""
    sizes = [(height, width)]
    for _ in range(depth):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def down(c_in: int, c_out: int) -> nn.Conv2d:
    """A 3x3 stride-2 convolution: each side halved, rounding up."""
    return nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)


def up(c_in: int, c_out: int, size_in: tuple[int, int],
       size_out: tuple[int, int]) -> nn.ConvTranspose2d:
    """``down`` transposed, its output padding chosen to land exactly on ``size_out`` (the
    encoder's size at that depth, odd sides included)."""
    pad = (size_out[0] - (2 * size_in[0] - 1), size_out[1] - (2 * size_in[1] - 1))
    return nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=pad)


def flat_features(shape: tuple[int, int, int], depth: int, width: int) -> int:
    """Features of the deepest feature map, flattened: the encoder head's input."""
    h, w = spatial_sizes(shape[1], shape[2], depth)[-1]
    return channels(depth, width)[-1] * h * w


class Encoder(nn.Module):
    """x (B, C, H, W) in [0, 1] -> (mu, logvar), each (B, latent_dim)."""

    def __init__(self, shape: tuple[int, int, int], depth: int, width: int, latent_dim: int):
        super().__init__()
        chans = [shape[0], *channels(depth, width)]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:], strict=True):
            layers += [down(c_in, c_out), nn.LeakyReLU(0.2)]
        self.convs = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(flat_features(shape, depth, width), 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.convs(x)).chunk(2, dim=1)
        return mu, logvar


class Decoder(nn.Module):
    """z (B, latent_dim) -> raw output (B, C, H, W): the VAE applies ``decoder_activation``."""

    def __init__(self, shape: tuple[int, int, int], depth: int, width: int, latent_dim: int):
        super().__init__()
        chans = channels(depth, width)[::-1] + [shape[0]]
        sizes = spatial_sizes(shape[1], shape[2], depth)[::-1]
        self.start = (chans[0], *sizes[0])
        self.fc = nn.Linear(latent_dim, chans[0] * sizes[0][0] * sizes[0][1])
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(chans[:-1], chans[1:], strict=True)):
            layers.append(up(c_in, c_out, sizes[i], sizes[i + 1]))
            if i < depth - 1:
                layers.append(nn.LeakyReLU(0.2))
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.deconvs(self.fc(z).view(-1, *self.start))
        return out


def build(shape: tuple[int, ...], latent_dim: int, depth: int = 4, width: int = 32
          ) -> tuple[nn.Module, nn.Module]:
    """The registry's ``conv``: ``depth`` stride-2 conv layers of ``width``, ``2 width``, ...
    channels (capped at MAX_CHANNELS), and their mirror image."""
    if len(shape) != 3:
        raise ValueError(f"conv needs images (C, H, W), got data of shape {tuple(shape)}; "
                         "use model=mlp for vectors")
    if depth < 1 or width < 1:
        raise ValueError(f"conv needs depth >= 1 and width >= 1, got {depth} and {width}")
    image = (int(shape[0]), int(shape[1]), int(shape[2]))
    return Encoder(image, depth, width, latent_dim), Decoder(image, depth, width, latent_dim)
