"""Per-trial pictures, tables and weights, uploaded with Optuna's artifact metadata so
optuna-dashboard shows them, always in the order of ``ORDER``:

- ``reconstructions.png``: validation inputs above their reconstructions, upscaled, labelled;
  for vector data (and arrays whose channels are not 1 or 3), each input and its
  reconstruction as lines over the dimensions (``figures.vector_reconstructions``);
- ``samples.png``: images decoded from the prior, upscaled, labelled; for vector data, lines
  on the validation data's band (``figures.vector_samples``);
- ``curves.png``: mse, rate, active units and KL weight per epoch (the multi-objective
  stand-in for Optuna's intermediate-values chart, which only single-objective studies get);
- ``kl_per_dim.png``: bar chart of the rate per latent dim (nats/image), active units marked;
- ``metrics.csv``: the per-epoch validation metrics;
- ``trial.json``: the trial's whole record (config, seed, history, final metrics with
  ``kl_per_dim``, threads, provenance), for a dashboard user to download; the database keeps
  the same values (``sweep.storage.trial_record``), and every reader reads them there;
- ``weights.pt``: the final weights (``sweep.answer.weights``), for the trials that keep them.

The dashboard lists a trial's artifacts in the order of their ids, and its cross-trial
gallery picks "artifact N" of every trial, so ids are ``NN-<uuid>`` with NN the file's place
in ``ORDER``: the gallery then compares like with like (Optuna's own ids are random UUIDs).
"""

from __future__ import annotations

import contextlib
import csv
import json
import mimetypes
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna
import torch
from matplotlib.ticker import MaxNLocator
from torchvision.utils import make_grid

from models.module import VAE
from sweep.answer.export import json_safe
from sweep.answer.figures import (
    agg_figure,  # headless, and no process-wide backend
    vector_reconstructions,
    vector_samples,
)
from sweep.answer.weights import save_weights
from sweep.optuna_private import ARTIFACTS_ATTR_PREFIX, ArtifactMeta, ArtifactStore, trial_id

N_IMAGES = 8
SCALE = 4  # screen pixels per image pixel: a 32 x 32 image shows at 128 x 128
DPI = 100
# weights.pt last: only some trials keep it, so every other file has the same place in all.
ORDER = ("reconstructions.png", "samples.png", "curves.png", "kl_per_dim.png", "metrics.csv",
         "trial.json", "weights.pt")
CURVES = (("mse", "mse (per pixel)"), ("rate", "rate (nats / image)"),
          ("active_units", "active units"), ("kl_weight", "KL weight (beta)"))


def labelled_grid(rows: Sequence[tuple[str, torch.Tensor]], title: str, path: Path,
                  scale: int = SCALE) -> None:
    """One PNG of image grids (``make_grid`` outputs, (3, h, w) in [0, 1]) stacked, each
    row labelled on its left, shown ``scale`` times their size with sharp pixels."""
    width = max(g.shape[2] for _, g in rows) * scale / DPI
    heights = [g.shape[1] * scale / DPI for _, g in rows]
    fig = agg_figure(dpi=DPI, figsize=(width + 1.6, sum(heights) + 0.3 * len(rows) + 0.5))
    axes = fig.subplots(len(rows), 1, squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, (label, grid) in zip(axes[:, 0], rows, strict=True):
        ax.imshow(grid.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=11)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path)


def _grid(images: torch.Tensor, nrow: int) -> torch.Tensor:
    grid: torch.Tensor = make_grid(images.detach().float().cpu(), nrow=nrow, padding=2,
                                   pad_value=1.0)
    return grid


def _inputs(images: torch.Tensor) -> torch.Tensor:
    """Examples as the network reads them: uint8 scaled to [0, 1], floats as they are."""
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def _shown(images: torch.Tensor) -> Any:
    """How pictures of ``images``' kind are shown in [0, 1]: 8-bit pixels as they are, float
    images linearly from the range of the first N_IMAGES inputs (the same for every row)."""
    if images.dtype == torch.uint8:
        return lambda x: x
    first = images[:N_IMAGES].float()
    lo, span = first.min(), (first.max() - first.min()).clamp(min=1e-12)
    return lambda x: (x - lo.to(x.device)) / span.to(x.device)


def reconstruction_rows(module: VAE, images: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Up to N_IMAGES validation inputs and their reconstructions, as labelled rows."""
    x, shown = _inputs(images[:N_IMAGES].to(module.device)), _shown(images)
    return [("input", _grid(shown(x), N_IMAGES)),
            ("reconstruction", _grid(shown(module.reconstruct(x)), N_IMAGES))]


def pictured(images: torch.Tensor) -> bool:
    """Whether examples like ``images``' are drawn as pictures (grey or RGB images), not as
    curves over their dimensions."""
    return images.ndim == 4 and images.shape[1] in (1, 3)


def vector_pictures(module: VAE, val_images: torch.Tensor, n: int, mse: float, au: Any,
                    folder: Path) -> None:
    """``reconstructions.png`` and ``samples.png`` of examples drawn as curves: each
    flattened to its D values."""
    x = _inputs(val_images[:N_IMAGES].to(module.device))
    flat = _inputs(val_images).flatten(1).cpu().numpy()
    vector_reconstructions(x.flatten(1).cpu().numpy(),
                           module.reconstruct(x).flatten(1).cpu().numpy(),
                           f"trial {n}: validation reconstructions (mse {mse:.4g}, "
                           f"{au} active units)", folder / "reconstructions.png")
    vector_samples(module.sample(N_IMAGES).flatten(1).cpu().numpy(), flat,
                   f"trial {n}: samples from the prior", folder / "samples.png")


def curves_chart(series: Sequence[tuple[str, list[dict[str, Any]]]], title: str,
                 path: Path) -> None:
    """Four panels (CURVES) against the epoch, one line per (label, history)."""
    fig = agg_figure(figsize=(4 * len(CURVES), 3.4), dpi=DPI)
    axes = fig.subplots(1, len(CURVES))
    last = max((r["epoch"] + 1 for _, h in series for r in h if r.get("epoch") is not None),
               default=1)
    for ax, (key, name) in zip(axes, CURVES, strict=True):
        values = []
        for i, (label, history) in enumerate(series):
            rows = [r for r in history if r.get(key) is not None]
            ys = [float(r[key]) for r in rows]
            values += ys
            ax.plot([r["epoch"] + 1 for r in rows], ys, marker="o",
                    markersize=3, lw=2.5 if i < 2 and len(series) > 2 else 1.5, label=label)
        ax.set_xlabel("epoch")
        # Whole epochs only; a fixed half-epoch margin, or one point gets ticks at 0.95-1.05.
        ax.set_xlim(0.5, last + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_title(name, fontsize=10)
        # A log-like scale only when the rate spans decades (a collapse beside a healthy run):
        # within one decade symlog has no tick to label.
        if key == "rate" and values and max(values) > 30 * max(min(values), 1.0):
            ax.set_yscale("symlog", linthresh=1.0)
            ax.set_ylim(bottom=0)  # a rate is never negative; autoscale pads below 0
    if len(series) > 1:
        fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center",
                   ncol=min(len(series), 4), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    legend_rows = (len(series) + 3) // 4 if len(series) > 1 else 0
    # Fixed margins, not tight_layout: measuring every tick label made up half of a 1-epoch
    # trial's time outside its fit on a 2-core machine (0.3 s of 0.6 s for this chart).
    fig.subplots_adjust(left=0.045, right=0.99, top=0.84, bottom=0.17 + 0.08 * legend_rows,
                        wspace=0.28)
    fig.savefig(path)


def kl_bar_chart(kl_per_dim: list[float], threshold_units: int, path: Path) -> None:
    fig = agg_figure(figsize=(8, 3), dpi=DPI)
    ax = fig.subplots()
    order = sorted(range(len(kl_per_dim)), key=lambda i: -kl_per_dim[i])
    # One filled step outline, not a Rectangle per dim: 256 bars took 0.5 s to draw.
    ax.stairs([kl_per_dim[i] for i in order], range(len(order) + 1), fill=True,
              color="#4c72b0")
    ax.set_xlim(0, len(order))
    ax.set_xlabel("latent dim (sorted by KL)")
    ax.set_ylabel("KL, nats / image")
    ax.set_title(f"KL per latent dim: {sum(kl_per_dim):.3g} nats total, "
                 f"{threshold_units} active units")
    fig.subplots_adjust(left=0.1, right=0.98, top=0.88, bottom=0.17)
    fig.savefig(path)


def write_csv(history: list[dict[str, Any]], path: Path) -> None:
    keys = list(dict.fromkeys(k for row in history for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def upload_in_order(trial: optuna.Trial, store: ArtifactStore, paths: Sequence[Path]
                    ) -> list[str]:
    """Upload ``paths`` as ``upload_artifact`` does (same metadata, so Optuna's
    ``get_all_artifact_meta`` and ``download_artifact`` read them), with ids that sort in
    ``ORDER``; returns the ids."""
    ids = []
    for path in paths:
        place = ORDER.index(path.name) if path.name in ORDER else len(ORDER)
        artifact_id = f"{place:02d}-{uuid.uuid4()}"
        mimetype, encoding = mimetypes.guess_type(path.name)
        meta = ArtifactMeta(artifact_id=artifact_id, filename=path.name,
                            mimetype=mimetype or "application/octet-stream", encoding=encoding)
        try:
            with open(path, "rb") as f:
                store.write(artifact_id, f)
        except Exception:
            # A full disk (ENOSPC) leaves the part written, a file no trial names: removed.
            # (The files stored before it are whole, and named in the trial's attrs.)
            with contextlib.suppress(Exception):
                store.remove(artifact_id)
            raise
        trial.storage.set_trial_system_attr(trial_id(trial), ARTIFACTS_ATTR_PREFIX + artifact_id,
                                            json.dumps(asdict(meta)))
        ids.append(artifact_id)
    return ids


def upload_trial_artifacts(trial: optuna.Trial, store: ArtifactStore, module: VAE,
                           val_images: torch.Tensor, metrics: dict[str, Any],
                           history: list[dict[str, Any]], weights: bool = False,
                           document: dict[str, Any] | None = None) -> list[str]:
    """Render this trial's files (``weights.pt`` too when ``weights``, ``trial.json`` when
    given its ``document``) and upload them in ``ORDER``; returns the artifact ids."""
    module.eval()
    n = trial.number
    au = metrics.get("active_units")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        if not pictured(val_images):
            vector_pictures(module, val_images, n, metrics.get("mse", 0), au, d)
        else:
            labelled_grid(reconstruction_rows(module, val_images),
                          f"trial {n}: validation reconstructions (mse "
                          f"{metrics.get('mse', 0):.4g}, {au} active units)",
                          d / "reconstructions.png")
            labelled_grid([("samples\nz ~ N(0, I)",
                            _grid(_shown(val_images)(module.sample(2 * N_IMAGES).cpu()),
                                  N_IMAGES))],
                          f"trial {n}: samples from the prior", d / "samples.png")
        curves_chart([(f"trial {n}", history)], f"trial {n}: per-epoch validation metrics",
                     d / "curves.png")
        kl_bar_chart(metrics.get("kl_per_dim") or [0.0], au or 0, d / "kl_per_dim.png")
        write_csv(history or [{"epoch": None}], d / "metrics.csv")
        if document is not None:
            (d / "trial.json").write_text(json.dumps(json_safe(document), indent=1,
                                                     default=str) + "\n")
        if weights:
            save_weights(module, d / "weights.pt")
        return upload_in_order(trial, store, [d / name for name in ORDER if (d / name).exists()])
