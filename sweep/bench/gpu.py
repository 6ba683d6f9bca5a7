"""The bench's GPU rows: execution variants of a trial, and K trials sharing one GPU.

- ``variants``: ``models.train.fit`` in float32, bf16 autocast (``precision="bf16-mixed"``),
  channels_last, and both, on the same seed and steps; each variant's images/s and whether
  its metrics stay within ``TOLERANCE`` of float32's.
- ``trials_per_gpu``: K processes (K in ``--trials-per-gpu``, default 1,2,4,8) each fitting
  the default model on the same device at once, in the fastest variant that stayed within
  tolerance; their summed images/s. The processes load, import and warm up first, then
  start together on one signal, so only the concurrent training is clocked.

On a machine without a GPU the rows are "not measured (no GPU)"; an explicit
``--device cpu --trials-per-gpu ...`` runs the same code on CPU (for checking the path).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import torch

from models.config import Config
from models.train import fit

NOT_MEASURED = "not measured (no GPU)"
DEFAULT_K = (1, 2, 4, 8)
# Relative tolerance on neg_elbo and mse, and on the share of latent units counted active.
TOLERANCE = {"neg_elbo": 0.02, "mse": 0.02, "active_units_share": 0.05}
VARIANTS = (("32-true", False), ("bf16-mixed", False), ("32-true", True), ("bf16-mixed", True))
WARMUP_STEPS = 5


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def variant_name(precision: str, channels_last: bool) -> str:
    return precision + ("+channels_last" if channels_last else "")


def _accelerator(device: torch.device) -> str:
    return "cuda" if device.type == "cuda" else "cpu"


def within(metrics: dict[str, Any], reference: dict[str, Any], latent_dim: int) -> bool:
    """Whether ``metrics`` match ``reference`` within TOLERANCE."""
    for key in ("neg_elbo", "mse"):
        if abs(metrics[key] - reference[key]) > TOLERANCE[key] * abs(reference[key]):
            return False
    units = abs(metrics["active_units"] - reference["active_units"]) / latent_dim
    return bool(units <= TOLERANCE["active_units_share"])


def variants(cfg: Config, images: torch.Tensor, steps: int,
             device: torch.device) -> dict[str, dict[str, Any]]:
    """images/s and metrics of each variant, after one untimed warm-up fit."""
    run = cfg.replace(max_steps=steps)
    accelerator = _accelerator(device)
    fit(cfg.replace(max_steps=WARMUP_STEPS), images=images, accelerator=accelerator)
    out: dict[str, dict[str, Any]] = {}
    for precision, channels_last in VARIANTS:
        m = fit(run, images=images, accelerator=accelerator, precision=precision,
                channels_last=channels_last).metrics
        name = variant_name(precision, channels_last)
        out[name] = {"images_per_sec": round(m["images_per_sec"], 1),
                     **{k: m[k] for k in ("neg_elbo", "mse", "active_units")}}
        say(f"variant {name}: {m['images_per_sec']:.0f} images/s, neg_elbo "
            f"{m['neg_elbo']:.4g}")
    reference = out[variant_name(*VARIANTS[0])]
    for row in out.values():
        row["within_tolerance"] = within(row, reference, cfg.latent_dim)
    return out


def shared(cfg: Config, n: int, steps: int, k: int, precision: str, channels_last: bool,
           device: torch.device) -> float:
    """Summed images/s of ``k`` processes training ``cfg`` at once on ``device``."""
    threads = max(1, (os.cpu_count() or 1) // k)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), VAE_SWEEP_THREADS=str(threads))
    job = json.dumps({"config": cfg.to_dict(), "n": n, "steps": steps, "precision": precision,
                      "channels_last": channels_last, "accelerator": _accelerator(device),
                      "threads": threads})
    code = "import sys; from sweep.bench.gpu import child; child(sys.argv[1])"
    procs = [subprocess.Popen([sys.executable, "-c", code, job], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env) for _ in range(k)]
    try:
        for p in procs:  # every process loaded and warmed up: start them together
            if p.stdout is None or p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a bench process for K={k} failed before training")
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        rates = [json.loads(p.communicate()[0])["images_per_sec"] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a bench process for K={k} exited non-zero")
    return float(sum(rates))


def child(job_json: str) -> None:
    """One of ``shared``'s processes: load, warm up, say ready, wait, fit, print images/s."""
    from models.data import load_images
    from sweep.logs import quiet_logs

    job = json.loads(job_json)
    torch.set_num_threads(job["threads"])
    cfg = Config.from_dict(job["config"])
    images = load_images(cfg)
    images = images.repeat(-(-job["n"] // len(images)), 1, 1, 1)[:job["n"]]
    options = {"accelerator": job["accelerator"], "precision": job["precision"],
               "channels_last": job["channels_last"]}
    with quiet_logs():
        fit(cfg.replace(max_steps=WARMUP_STEPS), images=images, **options)
        print("ready", flush=True)
        sys.stdin.readline()
        m = fit(cfg.replace(max_steps=job["steps"]), images=images, **options).metrics
    print(json.dumps({"images_per_sec": m["images_per_sec"]}), flush=True)


def gpu_rows(cfg: Config, images: torch.Tensor, steps: int, ks: tuple[int, ...] | None,
             device: torch.device) -> dict[str, Any]:
    """The GPU section of the bench's JSON (see the module docstring)."""
    if device.type != "cuda" and ks is None:
        return {"device": NOT_MEASURED, "variants": NOT_MEASURED,
                "trials_per_gpu": NOT_MEASURED}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    rows = variants(cfg, images, steps, device)
    ok = {k: v for k, v in rows.items() if v["within_tolerance"]}
    best = max(ok, key=lambda k: ok[k]["images_per_sec"])
    precision, channels_last = next(v for v in VARIANTS if variant_name(*v) == best)
    aggregate: dict[str, float] = {}
    for k in ks or DEFAULT_K:
        aggregate[str(k)] = round(shared(cfg, len(images), steps, k, precision, channels_last,
                                         device), 1)
        say(f"trials_per_gpu {k}: {aggregate[str(k)]:.0f} images/s in all")
    best_k = max(aggregate, key=lambda k: aggregate[k])
    first = aggregate[min(aggregate, key=int)]
    return {"device": name, "variants": rows, "tolerance": TOLERANCE, "chosen": best,
            "trials_per_gpu": aggregate, "best_k": int(best_k),
            "best_over_k1": round(aggregate[best_k] / first, 3) if first else None}
