"""The bench's ``own_model`` row: a network of the user's through vae-sweep against the same
network in a bare loop, so the cost of the registry, the shape check, Lightning and the
metrics around someone else's ``nn.Module`` is measured, not assumed.

``build`` is a stand-in for a user's file (the README's ``my_vae.py``, a small conv encoder
and decoder with one knob): vae-sweep reaches it by its import path, as it reaches any
builder; ``python -m sweep bench --model my_vae.py:build`` measures the user's own instead.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from models.config import Config
from models.train import fit

SPEC = "sweep.bench.own_model:build"


class Encoder(nn.Module):
    def __init__(self, c: int, h: int, w: int, latent_dim: int, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(c, channels, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 4, 2, 1), nn.ReLU(), nn.Flatten(),
            nn.Linear(2 * channels * (h // 4) * (w // 4), 2 * latent_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(x).chunk(2, dim=1)
        return mu, logvar


def build(shape: tuple[int, ...], latent_dim: int, channels: int = 32
          ) -> tuple[nn.Module, nn.Module]:
    """The README's network: images whose sides are multiples of 4."""
    c, h, w = shape
    decoder = nn.Sequential(
        nn.Linear(latent_dim, 2 * channels * (h // 4) * (w // 4)), nn.ReLU(),
        nn.Unflatten(1, (2 * channels, h // 4, w // 4)),
        nn.ConvTranspose2d(2 * channels, channels, 4, 2, 1), nn.ReLU(),
        nn.ConvTranspose2d(channels, c, 4, 2, 1))
    return Encoder(c, h, w, latent_dim, channels), decoder


def own_model_rows(cfg: Config, images: torch.Tensor, steps: int, repeats: int,
                   device: torch.device, model: str,
                   bare_loop: Callable[[Config, torch.Tensor, int, torch.device], float],
                   say: Callable[[str], None]) -> dict[str, Any]:
    """Images/s of ``model`` in ``bare_loop`` (``limit``) and through ``models.train.fit``
    (``project``), run back to back ``repeats`` times; the ratio is the median of the
    per-repeat ratios, so a shared machine's drifts cancel."""
    own = cfg.replace(model=model)
    accelerator = "cuda" if device.type == "cuda" else "cpu"
    bare_loop(own, images, 3, device)  # untimed: first-use costs land in no repeat
    fit(own.replace(max_steps=3), images=images, accelerator=accelerator)
    limit: list[float] = []
    project: list[float] = []
    for k in range(repeats):
        limit.append(bare_loop(own, images, steps, device))
        result = fit(own.replace(max_steps=steps), images=images, accelerator=accelerator)
        project.append(result.metrics["images_per_sec"])
        say(f"own model {k + 1}/{repeats}: limit {limit[-1]:.0f}, project "
            f"{project[-1]:.0f} images/s")
    return {"model": model, "limit": round(statistics.median(limit), 1),
            "project": round(statistics.median(project), 1),
            "project_over_limit": round(statistics.median(
                p / b for p, b in zip(project, limit, strict=True)), 3),
            "repeats": {"limit": [round(v, 1) for v in limit],
                        "project": [round(v, 1) for v in project]}}
