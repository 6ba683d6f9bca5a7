"""The train/validation split: a permutation from a fixed seed, so every trial of a sweep
is scored on the same images, and its result per device, kept for the next trial."""

from __future__ import annotations

import weakref

import torch

from models.config import ConfigError

# The train/validation split's seed, fixed, not cfg.seed: trials with different
# cfg.seed are scored on the same validation images (cfg.seed drives only the training
# shuffle, the initialisation and the posterior samples).
SPLIT_SEED = 20240918


def split(images: torch.Tensor, val_fraction: float, seed: int = SPLIT_SEED
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) by a random permutation from ``seed``; val gets max(1, round(N * f)).

    The default ``SPLIT_SEED`` is what every run uses, whatever its ``cfg.seed``.
    """
    n = len(images)
    n_val = max(1, round(n * val_fraction))
    if n - n_val < 1:
        raise ConfigError("val_fraction", f"{val_fraction} of {n} images leaves none to train")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(images.device)
    return images[perm[n_val:]], images[perm[:n_val]]


class _Splits:
    """The last images tensor's splits, per (val_fraction, device): a worker runs trial
    after trial on one tensor, and splitting it (a gather of every image: 1.5 s for
    CIFAR-10's 150 MB on 2 loaded cores) and moving it to the device are the same each
    time. The images are held by a weak reference: a dataset no one holds is let go."""

    def __init__(self) -> None:
        self.images: weakref.ref[torch.Tensor] | None = None
        self.splits: dict[tuple[float, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def get(self, images: torch.Tensor, val_fraction: float, device: torch.device
            ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.images is None or self.images() is not images:
            self.images, self.splits = weakref.ref(images), {}
        key = (val_fraction, torch.device(device))
        if key not in self.splits:
            done = next((v for (f, _), v in self.splits.items() if f == val_fraction), None)
            train, val = done or split(images, val_fraction)
            self.splits[key] = (train.to(key[1]), val.to(key[1]))
        return self.splits[key]


_SPLITS = _Splits()


def device_split(images: torch.Tensor, val_fraction: float, device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``split(images, val_fraction)`` on ``device``, computed once per images tensor (see
    ``_Splits``). The tensors are shared between callers: read, never written."""
    return _SPLITS.get(images, val_fraction, device)
