"""A trained VAE's weights as one file: its state_dict with the config that built it.

``torch.save`` of plain tensors, strings and numbers, so ``torch.load(..., weights_only=True)``
reads it without running pickled code. ``load_model`` rebuilds the ``models.module.VAE``::

    from sweep.answer.weights import load_model
    vae = load_model("best/weights.pt")      # eval mode, on CPU
    x_hat = vae.reconstruct(x)               # x: (N, C, H, W) floats in [0, 1], or as
                                             # the npy: data it was trained on
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from models.module import VAE

FORMAT = "vae-sweep-weights/1"


def save_weights(module: VAE, path: str | Path) -> None:
    data: dict[str, Any] = {
        "format": FORMAT,
        "config": module.cfg.to_dict(),
        "image_shape": list(module.image_shape),
        "total_steps": int(module.total_steps),
        "eight_bit": bool(module.eight_bit),
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
    }
    torch.save(data, path)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> VAE:
    """The VAE saved at ``path`` (by ``save_weights``), in eval mode."""
    data = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a vae-sweep weights file")
    # Files from before continuous data were all of 8-bit data.
    module = VAE(data["config"], tuple(data["image_shape"]), data["total_steps"],
                 eight_bit=data.get("eight_bit", True))
    module.load_state_dict(data["state_dict"])
    return module.eval()
