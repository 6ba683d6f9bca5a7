"""Data for the VAE: load a whole dataset once, split it, and batch it on device.

``load_images(cfg)`` (``sources``) turns ``cfg.dataset`` (``synthetic``, ``cifar10``,
``mnist``, ``fashion-mnist`` or ``folder:PATH``) into one uint8 tensor of shape (N, C, H, W);
``npy:PATH`` (``models.arrays``) gives uint8 or float32, (N, C, H, W) or (N, D). A folder's
files are decoded in threads (``decode``) once, then read from a cache file beside them
(``cache``). ``split`` (``splits``) cuts the images into train/validation by a fixed seed,
``TensorBatches`` (``batches``) is an airbench-style loader that slices float batches out
of a tensor already on the training device, and ``ImageDataModule`` (``datamodule``) wires
the three into Lightning. Small datasets fit in memory many times over, so there are no
worker processes, per-sample transforms or PIL in the hot path.
"""

from models.data.batches import TensorBatches
from models.data.datamodule import ImageDataModule
from models.data.sources import load_images, synthetic_images
from models.data.splits import split

__all__ = ["ImageDataModule", "TensorBatches", "load_images", "split", "synthetic_images"]
