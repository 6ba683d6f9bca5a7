"""``TensorBatches``: an airbench-style loader of float batches sliced from a tensor that
stays on the training device."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def as_inputs(images: torch.Tensor) -> torch.Tensor:
    """Examples as a network reads them: uint8 (8-bit data) as floats in [0, 1], float data
    as it is (the same tensor: a caller that edits it must copy)."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


class TensorBatches:
    """Float batches sliced from a tensor that stays on its device: uint8 (8-bit data) as
    floats in [0, 1], float32 (continuous data) as it is.

    Shuffling draws one ``randperm`` per epoch from the global RNG of the tensor's device,
    so ``seed_everything`` makes the order reproducible. Only uint8 lives in memory for
    8-bit data; the float conversion happens per batch, on the device.
    """

    def __init__(self, images: torch.Tensor, batch_size: int, shuffle: bool,
                 drop_last: bool) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.images = images
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last

    def __len__(self) -> int:
        n, bs = len(self.images), self.batch_size
        return n // bs if self.drop_last else -(-n // bs)

    def __iter__(self) -> Iterator[torch.Tensor]:
        bs, images = self.batch_size, self.images
        perm = torch.randperm(len(images), device=images.device) if self.shuffle else None
        for i in range(len(self)):
            # Unshuffled batches are views; shuffled ones one gather each, all on the device.
            rows = slice(i * bs, (i + 1) * bs)
            batch = images[rows] if perm is None else images[perm[rows]]
            if batch.dtype == torch.uint8:
                yield as_inputs(batch)
            else:  # a copy of a view: a network that edits its input in place edits no data
                yield batch.clone() if perm is None else batch
