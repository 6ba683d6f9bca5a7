"""``python -m sweep bench``: training throughput of the trainer against its limit.

The limit is the same model's bare PyTorch loop (``models.module.step_terms``, the loss
computation the module's training step calls, then an Adam step) on
float batches cut from a tensor already in memory: no Lightning, no logging, no data work.
The trainer is ``models.train.fit``, the path every trial takes. Both run the same number of
steps at the same batch size, alternately, ``repeats`` times; medians, their ratio and the
median of the per-repeat ratios are reported from that one run.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from typing import Any

import torch

from models.config import Config
from models.data import load_images
from models.module import VAE, step_terms
from models.train import fit


def bare_loop(cfg: Config, images: torch.Tensor, steps: int, device: torch.device) -> float:
    """Images/s of a hand-written training loop over ``steps`` batches."""
    torch.manual_seed(cfg.seed)
    c, h, w = images.shape[1:]
    model = VAE(cfg.to_dict(), (c, h, w), steps).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    data = images.to(device).float().div_(255)
    bs = cfg.batch_size
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for step in range(steps):
        loss = step_terms(model, data[step * bs:(step + 1) * bs], step).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * bs / (time.perf_counter() - t0)


def bench(data: str, batch_size: int, steps: int, repeats: int) -> dict[str, Any]:
    cfg = Config(dataset=data, batch_size=batch_size, max_epochs=1)
    # Enough images that the trainer's one epoch is ``steps`` batches after the val split.
    n = math.ceil(steps * batch_size / (1 - cfg.val_fraction)) + batch_size
    images = load_images(cfg)
    images = images.repeat(math.ceil(n / len(images)), 1, 1, 1)[:n]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bare, trainer = [], []
    for k in range(repeats):
        bare.append(bare_loop(cfg, images, steps, device))
        trainer.append(fit(cfg, images=images).metrics["images_per_sec"])
        print(f"repeat {k + 1}/{repeats}: bare loop {bare[-1]:.0f} images/s, "
              f"trainer {trainer[-1]:.0f} images/s", file=sys.stderr, flush=True)
    b, t = statistics.median(bare), statistics.median(trainer)
    return {"device": str(device), "torch_threads": torch.get_num_threads(),
            "dataset": data, "batch_size": batch_size, "steps": steps, "repeats": repeats,
            "image_shape": list(images.shape[1:]),
            "bare_images_per_sec": [round(v, 1) for v in bare],
            "trainer_images_per_sec": [round(v, 1) for v in trainer],
            "bare_median": round(b, 1), "trainer_median": round(t, 1),
            "ratio": round(t / b, 3),
            # Each repeat runs both back to back: their ratio cancels slow drifts of the
            # machine's speed (other load, clocks) that move both medians.
            "ratio_median_of_repeats": round(statistics.median(
                tr / ba for tr, ba in zip(trainer, bare, strict=True)), 3)}
