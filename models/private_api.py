"""Every private torch, torchvision and Lightning name vae-sweep uses, each with its reason
(Optuna's are in ``sweep.optuna_private``, above this layer).

A minor release may change any of them: pyproject bounds torch, torchvision and Lightning to
the versions the suite ran on, and tests/test_private_names.py fails when a module uses a
private name that neither registry lists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PRIVATE: dict[str, str] = {
    "torch.ops.image": "torchvision's C++ image decoders, called directly by "
                       "models.data.decode: the Python wrappers warn on every call "
                       "(torchvision 0.29 points to TorchCodec), slower than a 32x32 decode",
    "_save_checkpoint": "Lightning's ModelCheckpoint writes through it; "
                        "sweep.runner.objective overrides it to skip the final epoch's file "
                        "and to keep a failed write from failing the trial (no public hook "
                        "runs around the write itself)",
}


def image_ops() -> tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]] | None:
    """torchvision's ``decode_image`` and ``decode_jpeg`` C++ ops, taking (bytes as a uint8
    tensor, mode, apply_exif_orientation); None where a release renamed or dropped them."""
    import torch

    try:
        return torch.ops.image.decode_image, torch.ops.image.decode_jpeg
    except (AttributeError, RuntimeError):
        return None
