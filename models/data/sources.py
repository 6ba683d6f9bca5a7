"""Where the images come from: ``load_images(cfg)`` turns ``cfg.dataset`` into one tensor
of every example, decoded once: generated (``synthetic``), a torchvision dataset
(``cifar10``, ``mnist``, ``fashion-mnist``), an array file (``npy:PATH``, ``models.arrays``)
or an ImageFolder tree (``folder:PATH``: decoded by ``models.data.decode``, kept in a cache
file beside the images by ``models.data.cache``).
"""

from __future__ import annotations

import math
import os
import shutil

import torch
import torchvision

from models.arrays import PREFIX as NPY_PREFIX
from models.arrays import load_array
from models.config import Config, ConfigError
from models.data import cache
from models.data.decode import decode_all

# Fixed, not cfg.seed: every trial of a sweep must train and validate on the same images.
SYNTHETIC_SEED = 20240917
SYNTHETIC_HELD_OUT_SEED = SYNTHETIC_SEED + 1  # ``--test-data synthetic``: images no trial saw
SYNTHETIC_SIZE = 32
MAX_SHAPES = 3

# torchvision class per dataset name, looked up by name at call time (tests monkeypatch it).
TORCHVISION = {"cifar10": "CIFAR10", "mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


def load_images(cfg: Config, held_out: bool = False) -> torch.Tensor:
    """All examples of ``cfg.dataset`` as one tensor, decoded once: uint8 (N, C, H, W) images,
    or from ``npy:PATH`` uint8 8-bit data or float32 continuous data, (N, C, H, W) or (N, D).

    ``held_out``: images no trial trains or validates on, for scoring a finished model: a
    torchvision dataset's test split (``train=False``), synthetic images from another seed.
    A folder or an array file is what it names either way (point it at the test data).
    """
    spec = cfg.dataset
    if spec == "synthetic":
        return synthetic_images(cfg.synthetic_size,
                                seed=SYNTHETIC_HELD_OUT_SEED if held_out else SYNTHETIC_SEED)
    if spec in TORCHVISION:
        return _torchvision_images(spec, cfg.data_dir, train=not held_out)
    if spec.startswith(NPY_PREFIX):
        return load_array(spec)
    return _folder_images(os.path.expanduser(spec[len("folder:"):]))  # Config checked the spec


def synthetic_images(n: int, size: int = SYNTHETIC_SIZE, seed: int = SYNTHETIC_SEED
                     ) -> torch.Tensor:
    """``n`` RGB images of 1-3 coloured ellipses/rectangles on a smooth colour gradient.

    Each image is a handful of independent factors (background colours and direction;
    per shape: kind, centre, size, colour), so a VAE has real latent structure to find.
    Generated all at once: the only Python loop is over the 3 shape slots, not images.
    """
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g)

    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    ys, xs = coords.view(1, 1, size, 1), coords.view(1, 1, 1, size)

    # Background: linear blend of two colours along a random direction. |projection| of a
    # centred unit-square point is at most sqrt(1/2), so t stays within [0, 1].
    angle = rand(n, 1, 1, 1) * (2 * math.pi)
    proj = torch.cos(angle) * (xs - 0.5) + torch.sin(angle) * (ys - 0.5)
    t = 0.5 + proj / (2 * math.sqrt(0.5))
    c0, c1 = rand(n, 3, 1, 1), rand(n, 3, 1, 1)
    img = c0 + (c1 - c0) * t

    # Shapes: MAX_SHAPES slots per image, the first `count` of them drawn, later over earlier.
    count = torch.randint(1, MAX_SHAPES + 1, (n, 1), generator=g)
    active = torch.arange(MAX_SHAPES).view(1, -1) < count
    cx, cy = 0.1 + 0.8 * rand(n, MAX_SHAPES), 0.1 + 0.8 * rand(n, MAX_SHAPES)
    rx, ry = 0.08 + 0.22 * rand(n, MAX_SHAPES), 0.08 + 0.22 * rand(n, MAX_SHAPES)
    ellipse = rand(n, MAX_SHAPES) < 0.5
    colour = rand(n, MAX_SHAPES, 3)
    for k in range(MAX_SHAPES):
        dx = (xs - cx[:, k].view(n, 1, 1, 1)) / rx[:, k].view(n, 1, 1, 1)
        dy = (ys - cy[:, k].view(n, 1, 1, 1)) / ry[:, k].view(n, 1, 1, 1)
        inside = torch.where(ellipse[:, k].view(n, 1, 1, 1),
                             dx * dx + dy * dy <= 1, torch.maximum(dx.abs(), dy.abs()) <= 1)
        mask = inside & active[:, k].view(n, 1, 1, 1)
        img = torch.where(mask, colour[:, k].view(n, 3, 1, 1), img)
    return img.mul(255).round_().clamp_(0, 255).to(torch.uint8)


def _torchvision_images(name: str, data_dir: str, train: bool = True) -> torch.Tensor:
    existed = os.path.exists(data_dir)
    try:
        dataset = getattr(torchvision.datasets, TORCHVISION[name])(
            root=data_dir, train=train, download=True)
    except Exception as exc:  # offline, partial or corrupt download: all mean "not here"
        if not existed:  # bad input writes nothing: no empty or half-downloaded data dir
            shutil.rmtree(data_dir, ignore_errors=True)
        raise ConfigError("dataset", (
            f"{name} not found in {data_dir} and could not be downloaded; point the dataset "
            "at a local copy (folder:PATH), or set data_dir")) from exc
    # .data is already decoded: numpy (N, H, W, C) for CIFAR, a tensor (N, H, W) for MNIST.
    data = torch.as_tensor(dataset.data).to(torch.uint8)
    return (data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)).contiguous()


def folder_files(root: str) -> list[str]:
    """The image files of an ImageFolder tree, in ImageFolder's (sorted) order."""
    folder = torchvision.datasets.folder
    try:
        _, class_to_idx = folder.find_classes(root)
        samples = folder.make_dataset(root, class_to_idx, extensions=folder.IMG_EXTENSIONS,
                                      allow_empty=True)
    except OSError as exc:  # missing, not a directory, or no class sub-folders
        reason = exc.strerror or str(exc).splitlines()[0]
        raise ConfigError("dataset", f"folder {root} has no images ({reason})") from None
    if not samples:
        exts = "|".join(folder.IMG_EXTENSIONS)
        raise ConfigError("dataset", f"folder {root} has no images (expected "
                          f"{root}/<class>/<image> with extension {exts})")
    return [path for path, _ in samples]


def _folder_images(root: str) -> torch.Tensor:
    files = folder_files(root)
    path = cache.path(root, files)
    cached = cache.read(path, len(files))
    if cached is not None:
        return cached
    images = decode_all(files)
    cache.write(path, images, root)
    return images
