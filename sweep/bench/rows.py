"""``python -m sweep bench``: a trial's speed against its limit and against what users write.

One run measures, side by side (images/s, medians of alternating repeats, their ratios):

- ``limit``: the same model's bare PyTorch loop (``models.module.step_terms``, the loss
  computation the module's training step calls, then an Adam step) on float batches cut
  from a tensor already on the device: no Lightning, no logging, no data work;
- ``baseline``: ``sweep.bench.user_script``, optuna-examples' Lightning script shape (ImageFolder of
  the same images + ToTensor + DataLoader workers, Lightning's defaults);
- ``project``: ``models.train.fit``, the path every trial takes;
- ``own_model``: ``limit`` and ``project`` again for a network of the user's
  (``sweep.bench.own_model``);

then, on the CPU, ``project`` at each thread count and at the default, idle and beside
``busy`` busy processes (``sweep.bench.threads``), the sweep around the trainer
(``sweep.bench.sweep_time``: ``trial_overhead``, ``sweep_overhead``, ``time_to_answer``) and, on
a GPU, precision/layout variants and K trials sharing it (``sweep.bench.gpu``). Each repeat
runs the three loops back to back, so the per-repeat ratios cancel slow drifts of a shared
machine's speed.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.config import Config
from models.data import load_images
from models.module import VAE, conv_layout, step_terms
from models.train import fit
from sweep.bench import gpu as bench_gpu
from sweep.bench import own_model as bench_own
from sweep.bench import sweep_time as bench_sweep
from sweep.bench import threads as bench_threads
from sweep.bench import user_script as baseline

WARMUP_STEPS = 3


@dataclass(frozen=True)
class Options:
    data: str = "synthetic"
    batch_size: int = 128
    steps: int = 60
    repeats: int = 3
    device: str = "auto"  # auto, cpu or cuda
    baseline_workers: int = baseline.DEFAULT_WORKERS
    subset: int = 1024  # images of the time-to-answer studies (0: all of --data)
    trials: int = 4
    epochs: int = 1
    margin: float = 0.05
    fresh_seeds: int = 2  # seeds each side's pick is re-trained on (0: none)
    trials_per_gpu: tuple[int, ...] | None = None  # None: 1,2,4,8 on a GPU, none on CPU
    skip_sweep: bool = False
    busy: int = 2  # busy processes beside the loaded thread rows (0: idle rows only)
    model: str = bench_own.SPEC  # the own_model row's network (a builder spec)
    pruner_off: bool = True  # time_to_answer's third side: the default search, pruner off
    only_answer: bool = False  # time_to_answer alone: no throughput, thread, GPU rows


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def bare_loop(cfg: Config, images: torch.Tensor, steps: int, device: torch.device) -> float:
    """Images/s of a hand-written training loop over ``steps`` batches."""
    torch.manual_seed(cfg.seed)
    c, h, w = images.shape[1:]
    # The layout a trial's module takes on this device (``VAE.setup``).
    model = VAE(cfg.to_dict(), (c, h, w), steps).to(device, memory_format=conv_layout(device))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    data = images.to(device).float().div_(255)
    bs = cfg.batch_size
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for step in range(steps):
        loss = step_terms(model, data[step * bs:(step + 1) * bs], step).loss
        opt.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)  # typed, unlike Tensor.backward
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * bs / (time.perf_counter() - t0)


def needed_images(steps: int, cfg: Config) -> int:
    """Images whose train split holds ``steps`` full batches: one epoch is the whole run."""
    return math.ceil(steps * cfg.batch_size / (1 - cfg.val_fraction)) + cfg.batch_size


def throughput(cfg: Config, images: torch.Tensor, folder: Path, opts: Options,
               device: torch.device) -> dict[str, list[float]]:
    """Per-repeat images/s of the three loops, run back to back ``opts.repeats`` times."""
    accelerator = "cuda" if device.type == "cuda" else "cpu"
    steps = opts.steps
    # The baseline runs exactly ``steps`` batches too, over as many epochs as that takes.
    script = cfg.replace(max_steps=steps, max_epochs=steps)
    rows: dict[str, list[float]] = {"limit": [], "baseline": [], "project": []}
    # One short untimed pass of each first: CUDA/cuDNN initialisation, lazy imports and
    # allocator growth would otherwise land in the first repeat of whichever runs first.
    bare_loop(cfg, images, WARMUP_STEPS, device)
    baseline.fit(script.replace(max_steps=WARMUP_STEPS), folder, opts.baseline_workers,
                 accelerator=accelerator, limit_val_batches=0)
    fit(cfg.replace(max_steps=WARMUP_STEPS), images=images, accelerator=accelerator)
    for k in range(opts.repeats):
        rows["limit"].append(bare_loop(cfg, images, steps, device))
        _, clock = baseline.fit(script, folder, opts.baseline_workers, accelerator=accelerator,
                                limit_val_batches=0)
        rows["baseline"].append(clock.images_per_sec)
        result = fit(cfg.replace(max_steps=steps), images=images, accelerator=accelerator)
        rows["project"].append(result.metrics["images_per_sec"])
        say(f"repeat {k + 1}/{opts.repeats}: limit {rows['limit'][-1]:.0f}, baseline "
            f"{rows['baseline'][-1]:.0f}, project {rows['project'][-1]:.0f} images/s")
    return rows


def ratio(rows: dict[str, list[float]], top: str, bottom: str) -> float:
    """Median over repeats of ``top / bottom`` within each repeat."""
    return statistics.median(t / b for t, b in zip(rows[top], rows[bottom], strict=True))


def bench(opts: Options) -> dict[str, Any]:
    device = resolve_device(opts.device)
    base = Config(dataset=opts.data, batch_size=opts.batch_size, max_epochs=1)
    if opts.data == "synthetic":  # as many distinct images as the timed steps use
        base = base.replace(synthetic_size=needed_images(opts.steps, base))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="vae-bench-") as tmp:
        work = Path(tmp)
        if opts.data.startswith("folder:"):  # an empty folder: its one error line, alone
            from models.data.sources import folder_files

            folder_files(os.path.expanduser(opts.data[len("folder:"):]))
        say(f"bench on {device}: loading {opts.data}")
        images = load_images(base)
        folder = bench_sweep.image_folder(base, images, work / "images")
        if opts.only_answer:
            out: dict[str, Any] = {"time_to_answer": _answer(base, folder, opts, work, device)}
        else:
            out = _rows(base, images, folder, opts, work, device)
    out["setup"] = {
        "device": str(device), "torch_threads": torch.get_num_threads(), "data": opts.data,
        "images": len(images), "image_shape": list(images.shape[1:]),
        "batch_size": opts.batch_size, "steps": opts.steps, "repeats": opts.repeats,
        "baseline_workers": opts.baseline_workers, "cpu_count": os.cpu_count(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()]}
    return out


def _rows(base: Config, images: torch.Tensor, folder: Path, opts: Options, work: Path,
          device: torch.device) -> dict[str, Any]:
    """Every row: throughput, own_model, threads, the sweep's (unless skipped), GPU."""
    n = needed_images(opts.steps, base)
    timed = images.repeat(math.ceil(n / len(images)), 1, 1, 1)[:n]
    rows = throughput(base, timed, folder, opts, device)
    medians = {name: statistics.median(values) for name, values in rows.items()}
    out: dict[str, Any] = {
        **{name: round(value, 1) for name, value in medians.items()},
        "project_over_limit": round(ratio(rows, "project", "limit"), 3),
        "project_over_baseline": round(ratio(rows, "project", "baseline"), 3),
        "repeats": {name: [round(v, 1) for v in values] for name, values in rows.items()},
    }
    out["own_model"] = bench_own.own_model_rows(base, timed, opts.steps, opts.repeats,
                                                device, opts.model, bare_loop, say)
    out["threads"] = bench_threads.thread_rows(
        base, timed, opts.steps, opts.repeats, opts.busy, say) if device.type == "cpu" \
        else "not measured (the trials train on the GPU)"
    if opts.skip_sweep:
        out["trial_overhead"] = out["sweep_overhead"] = out["time_to_answer"] = None
    else:
        out["time_to_answer"] = _answer(base, folder, opts, work, device)
        # After the studies above: the process has imported what a trial needs, as a
        # worker has for every trial after its first.
        overhead = bench_sweep.sweep_overhead(base, folder, work / "overhead", device)
        out["trial_overhead"] = overhead.pop("trial_overhead")
        out["sweep_overhead"] = overhead.pop("fraction")
        out["sweep_overhead_detail"] = overhead
    out["gpu"] = bench_gpu.gpu_rows(base, timed, opts.steps, opts.trials_per_gpu, device)
    return out


def _answer(base: Config, folder: Path, opts: Options, work: Path, device: torch.device
            ) -> dict[str, Any]:
    subset = bench_sweep.subset_folder(folder, opts.subset, work / "subset")
    return bench_sweep.time_to_answer(base, subset, opts.trials, opts.epochs, opts.margin,
                                      opts.baseline_workers, work / "answer", device,
                                      opts.fresh_seeds, opts.pruner_off)
