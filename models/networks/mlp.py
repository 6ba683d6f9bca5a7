"""``mlp``: a fully connected encoder and decoder, for vector data (D,) or any other shape.

Each example is flattened to D = prod(shape) numbers, passed through ``layers`` hidden layers
of ``hidden`` units (LeakyReLU, as ``conv``) and a linear head; the decoder mirrors it and
unflattens its output to ``shape``, so the same network runs on tabular rows (D,), time
series and images (C, H, W) alike. ``layers=0`` is the linear VAE whose optimum is
probabilistic PCA, whose latent dimensions collapse exactly for the data's directions of
variance below the observation noise (Lucas et al. 2019, "Don't Blame the ELBO! A Linear
VAE Perspective on Posterior Collapse", sec. 4): the closed-form case of the question
vae-sweep asks. ``build`` is its entry in
the network registry (``models.networks``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Knob bounds: far above any VAE they are meant for (LIMITS["latent_dim"] in models.config
# is of this size too), low enough that a typo (hidden=10000000) is refused by name instead
# of allocating gigabytes of weights.
MAX_HIDDEN = 16384
MAX_LAYERS = 64


def _stack(d_in: int, hidden: int, layers: int, d_out: int) -> nn.Sequential:
    """``layers`` Linear + LeakyReLU of ``hidden`` units from ``d_in``, then Linear to
    ``d_out`` (no activation after it)."""
    widths = [d_in, *([hidden] * layers)]
    mods: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        mods += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
    return nn.Sequential(*mods, nn.Linear(widths[-1], d_out))


class Encoder(nn.Module):
    """x (B, *shape) -> (mu, logvar), each (B, latent_dim)."""

    def __init__(self, shape: tuple[int, ...], hidden: int, layers: int,
                 latent_dim: int) -> None:
        super().__init__()
        self.net = _stack(math.prod(shape), hidden, layers, 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # flatten copies a channels_last image into (C, H, W) order: the order unflatten reads
        mu, logvar = self.net(x.flatten(1)).chunk(2, dim=1)
        return mu, logvar


class Decoder(nn.Module):
    """z (B, latent_dim) -> raw output (B, *shape): the VAE applies ``decoder_activation``."""

    def __init__(self, shape: tuple[int, ...], hidden: int, layers: int,
                 latent_dim: int) -> None:
        super().__init__()
        self.shape = shape
        self.net = _stack(latent_dim, hidden, layers, math.prod(shape))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(z).unflatten(1, self.shape)
        return out


def build(shape: tuple[int, ...], latent_dim: int, hidden: int = 512, layers: int = 2
          ) -> tuple[nn.Module, nn.Module]:
    """The registry's ``mlp``: ``layers`` hidden layers of ``hidden`` units each way
    (``layers=0``: linear encoder and decoder)."""
    if len(shape) < 1 or any(int(n) < 1 for n in shape):
        raise ValueError(f"mlp needs a non-empty shape of sizes >= 1, got {tuple(shape)}")
    if not 1 <= hidden <= MAX_HIDDEN:
        raise ValueError(f"mlp needs 1 <= hidden <= {MAX_HIDDEN}, got {hidden}")
    if not 0 <= layers <= MAX_LAYERS:
        raise ValueError(f"mlp needs 0 <= layers <= {MAX_LAYERS}, got {layers}")
    dims = tuple(int(n) for n in shape)
    return Encoder(dims, hidden, layers, latent_dim), Decoder(dims, hidden, layers, latent_dim)
