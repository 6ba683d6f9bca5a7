"""Decoding a folder's image files into one uint8 (N, 3, H, W) tensor, in a few threads:
torchvision's C++ decoders, a PNG integrity check before them, and PIL for the formats they
lack (or a corrupt file, which PIL names)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision.io import ImageReadMode

from models.config import ConfigError
from models.private_api import image_ops

DECODE_BLOCK = 1024  # images a decoding thread stacks at a time (bounds the extra memory)

# Encoded image bytes to a uint8 (3, H, W) tensor (not a network's decoder: models.networks).
ImageDecoder = Callable[[bytes], torch.Tensor]


def _image_decoder() -> ImageDecoder:
    """torchvision's RGB decoder for encoded bytes.

    Its C++ ops are called directly where they exist: the Python wrappers emit a
    DeprecationWarning on every call (torchvision 0.29 points to TorchCodec), which costs
    more than decoding a 32x32 JPEG and serialises the threads on the GIL. JPEGs skip the
    format sniffing of decode_image, which is measurably slower for tiny images.
    """
    rgb = ImageReadMode.RGB

    ops = image_ops()
    if ops is None:  # renamed or missing: the public wrapper
        return lambda data: torchvision.io.decode_image(_as_tensor(data), mode=rgb)
    image_op, jpeg_op = ops

    def direct(data: bytes) -> torch.Tensor:
        op = jpeg_op if data[:2] == b"\xff\xd8" else image_op
        decoded: torch.Tensor = op(_as_tensor(data), rgb.value, False)
        return decoded

    return direct


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_intact(data: bytes) -> bool:
    """Whether a PNG's chunks are whole and their CRCs match (Pillow's ``verify``; True for
    other formats).

    libpng prints "libpng error: ..." on stderr for a corrupt PNG before torchvision
    raises, and a corrupt IDAT crashed the decoding threads (SIGSEGV, measured with one of
    21 PNGs zeroed over 60 bytes); a verify costs microseconds for a small image.
    """
    if not data.startswith(PNG_SIGNATURE):
        return True
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
    except Exception:  # Pillow's verify raises whatever the broken chunk gives (OSError,
        return False   # SyntaxError for a bad CRC, struct.error)
    return True


def _as_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _decode(path: str, decode: ImageDecoder) -> torch.Tensor:
    with open(path, "rb") as f:  # a plain read releases the GIL during I/O
        data = f.read()
    try:
        if png_intact(data):  # a corrupt one goes to PIL, which names the file
            return decode(data)
    except RuntimeError:
        pass
    # BMP, TIFF, PPM/PGM: ImageFolder formats torchvision's decoders lack. Rare, so PIL.
    try:
        with Image.open(path) as im:
            return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)
    except (OSError, ValueError) as exc:  # corrupt or not an image despite its extension
        raise ConfigError("dataset", f"cannot decode {path} ({exc})") from None


def decode_all(files: list[str]) -> torch.Tensor:
    """Decode every file into one preallocated (N, 3, H, W) tensor, in a few threads."""
    decode = _image_decoder()
    first = _decode(files[0], decode)
    out = torch.empty((len(files), *first.shape), dtype=torch.uint8)
    mismatch: list[tuple[str, torch.Size]] = []  # list.append is atomic: no lock needed

    def work(lo: int, hi: int) -> None:
        # Stack blocks of decoded images into `out`: cheaper than one indexed copy per image.
        for start in range(lo, hi, DECODE_BLOCK):
            block = [_decode(path, decode) for path in files[start:min(start + DECODE_BLOCK, hi)]]
            bad = [(files[start + j], im.shape) for j, im in enumerate(block)
                   if im.shape != first.shape]
            if bad:
                mismatch.extend(bad)
                return
            torch.stack(block, out=out[start:start + len(block)])

    # Contiguous chunks, not one task per file: per-task overhead would dominate for 32x32
    # images. File reads and the decoders' C++ drop the GIL, so a few threads overlap; more
    # than 4 only fight over the GIL for the Python between calls.
    workers = max(1, min(4, os.cpu_count() or 1, len(files) // 256))
    bounds = [len(files) * k // workers for k in range(workers + 1)]
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(work, bounds[k], bounds[k + 1]) for k in range(workers)]
        for future in futures:
            future.result()
    if mismatch:
        (path, shape), size = min(mismatch), "x".join(map(str, first.shape))
        raise ConfigError("dataset", f"images differ in size: {files[0]} is {size}, {path} is "
                          f"{'x'.join(map(str, shape))}; a folder's images must share one size")
    return out
