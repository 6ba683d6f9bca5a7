"""Per-trial pictures, tables and weights, uploaded with Optuna's artifact metadata so
optuna-dashboard shows them. Its trial page shows each artifact in a card whose picture is
200 x 150 px (``CARD_PX``: the image fitted whole) and opens nothing larger, so every
picture is drawn 4:3 (``IMAGE_PX``) with type that stays at least ``MIN_CARD_TEXT_PX`` tall
in the card:

- ``at_a_glance.png``: the trial in one picture: "posterior collapse" in red or its active
  units, the yardstick and which stage ran it, in large type, then rows of validation inputs,
  their reconstructions and prior samples (a collapsed trial's reconstructions are one grey
  image repeated beside varied inputs; vector data: the headline alone);
- ``curves.png``: mse, rate, active units and KL weight per epoch (the multi-objective
  stand-in for Optuna's intermediate-values chart, which only single-objective studies get);
- ``kl_per_dim.png``: the rate per latent dim (nats/image), sorted, active units counted;
- ``metrics.csv``: the per-epoch validation metrics;
- ``reconstructions.png``: a square grid of validation inputs beside their reconstructions;
  for vector data (and arrays whose channels are not 1 or 3), each input and its
  reconstruction as lines over the dimensions (``figures.vector_reconstructions``);
- ``samples.png``: a grid of images decoded from the prior; for vector data, lines on the
  validation data's band (``figures.vector_samples``);
- ``trial.json``: the trial's whole record (config, seed, history, final metrics with
  ``kl_per_dim``, threads, provenance), for a dashboard user to download; the database keeps
  the same values (``sweep.storage.trial_record``), and every reader reads them there;
- ``weights.pt``: the final weights (``sweep.answer.weights``), for the trials that keep them.

The dashboard (0.21) sorts a trial's cards by file name, and ``ORDER`` is that order. Its
cross-trial gallery picks "artifact N" of every trial by id, so ids are ``NN-<uuid>`` with
NN the file's place in ``ORDER``: the gallery then compares like with like (Optuna's own ids
are random UUIDs).
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
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torchvision.utils import make_grid

from models.data.batches import as_inputs
from models.module import VAE
from sweep.answer import yardstick
from sweep.answer.figures import (
    agg_figure,  # headless, and no process-wide backend
    vector_reconstructions,
    vector_samples,
)
from sweep.answer.weights import save_weights
from sweep.optuna_private import ARTIFACTS_ATTR_PREFIX, ArtifactMeta, ArtifactStore, trial_id
from sweep.storage import trial_record
from sweep.storage.trial_record import json_safe

CARD_PX = (200, 150)  # optuna-dashboard's artifact card: the box a picture is fitted into
IMAGE_PX = (640, 480)  # every picture: 4:3, so it fills the card
DPI = 100
FIGSIZE = (IMAGE_PX[0] / DPI, IMAGE_PX[1] / DPI)
MIN_CARD_TEXT_PX = 10  # the smallest type of a picture, as tall as it shows in a card
LABEL_PT = MIN_CARD_TEXT_PX * IMAGE_PX[0] / CARD_PX[0] * 72 / DPI  # 23 pt: 32 px, 10 in a card
TITLE_PT = 1.25 * LABEL_PT
GRID = 4  # images per row of the grids (4 x 4 reconstructions, 4 x 3 samples)
GLANCE = 4  # images per row of at_a_glance.png
ALARM, CALM = "#b3261e", "#1b5e20"  # at_a_glance.png's headline: collapsed, or not
# Sorted by name, as the dashboard lists them; weights.pt last: only some trials keep it,
# so every other file has the same place in all.
ORDER = ("at_a_glance.png", "curves.png", "kl_per_dim.png", "metrics.csv",
         "reconstructions.png", "samples.png", "trial.json", "weights.pt")
CURVES = (("mse", "mse (per pixel)"), ("rate", "rate (nats / image)"),
          ("active_units", "active units"), ("kl_weight", "KL weight (beta)"))


def card_figure() -> Figure:
    """A blank ``IMAGE_PX`` figure."""
    return agg_figure(figsize=FIGSIZE, dpi=DPI)


def _show(fig: Figure, grid: torch.Tensor, box: tuple[float, float, float, float]) -> None:
    """``grid`` ((3, h, w) in [0, 1]) drawn with sharp pixels, as large as fits ``box``
    (left, bottom, width, height in figure pixels), centred in it."""
    x, y, w, h = box
    scale = min(w / grid.shape[2], h / grid.shape[1])
    gw, gh = grid.shape[2] * scale, grid.shape[1] * scale
    ax = fig.add_axes(((x + (w - gw) / 2) / IMAGE_PX[0], (y + (h - gh) / 2) / IMAGE_PX[1],
                       gw / IMAGE_PX[0], gh / IMAGE_PX[1]))
    ax.imshow(grid.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    ax.set_axis_off()


def _text(fig: Figure, x: float, y: float, text: str, size: float = LABEL_PT,
          **kwargs: Any) -> None:
    """``text`` at (x, y) in figure pixels, top-aligned unless told otherwise."""
    fig.text(x / IMAGE_PX[0], y / IMAGE_PX[1], text, fontsize=size,
             **{"va": "top", **kwargs})


def reconstructions_figure(inputs: torch.Tensor, outputs: torch.Tensor, title: str,
                           subtitle: str) -> Figure:
    """A square grid of ``inputs`` beside the same grid of their reconstructions
    (``outputs``), each labelled, under a title."""
    fig = card_figure()
    width, top = IMAGE_PX
    _text(fig, width / 2, top - 10, title, TITLE_PT, ha="center")
    _text(fig, width / 2, top - 62, subtitle, ha="center")
    half = (width - 48) / 2
    for i, (label, images) in enumerate((("input", inputs), ("reconstruction", outputs))):
        x = 16 + i * (half + 16)
        _text(fig, x + half / 2, 330, label, ha="center", va="bottom")
        _show(fig, _grid(images, GRID), (x, 12, half, 312))
    return fig


def samples_figure(samples: torch.Tensor, title: str) -> Figure:
    """A grid of ``samples`` under a title."""
    fig = card_figure()
    _text(fig, IMAGE_PX[0] / 2, IMAGE_PX[1] - 10, title, TITLE_PT, ha="center")
    _show(fig, _grid(samples, GRID), (16, 12, IMAGE_PX[0] - 32, IMAGE_PX[1] - 80))
    return fig


def glance_figure(headline: str, lines: Sequence[str], rows: Sequence[tuple[str, torch.Tensor]],
                  alarm: bool) -> Figure:
    """The trial at a glance: ``headline`` large (red when ``alarm``), ``lines`` under it,
    then one labelled row of images per ``rows`` entry, the labels on the left."""
    fig = card_figure()
    width, top = IMAGE_PX
    _text(fig, 16, top - 8, headline, TITLE_PT, weight="bold", color=ALARM if alarm else CALM)
    for i, line in enumerate(lines):
        _text(fig, 16, top - 58 - 40 * i, line)
    below = top - 62 - 40 * len(lines)  # what the rows share
    step = below / max(len(rows), 1)  # vectors: the headline alone
    for i, (label, images) in enumerate(rows):
        y = below - (i + 1) * step
        _text(fig, 16, y + step / 2, label, va="center")
        _show(fig, _grid(images, GLANCE), (170, y + 4, width - 186, step - 8))
    return fig


def _grid(images: torch.Tensor, nrow: int) -> torch.Tensor:
    grid: torch.Tensor = make_grid(images.detach().float().cpu(), nrow=nrow, padding=2,
                                   pad_value=1.0)
    return grid


def _inputs(images: torch.Tensor) -> torch.Tensor:
    """Examples as the network reads them (``models.data.batches.as_inputs``)."""
    return as_inputs(images)


def _shown(images: torch.Tensor) -> Any:
    """How pictures of ``images``' kind are shown in [0, 1]: 8-bit pixels as they are, float
    images linearly from the range of the first GRID x GRID inputs (the same for every row)."""
    if images.dtype == torch.uint8:
        return lambda x: x
    first = images[:GRID * GRID].float()
    lo, span = first.min(), (first.max() - first.min()).clamp(min=1e-12)
    return lambda x: (x - lo.to(x.device)) / span.to(x.device)


def pictures(module: VAE, images: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Up to GRID x GRID validation inputs, their reconstructions and GRID x 3 prior samples,
    each as shown in [0, 1] (``_shown``)."""
    x, shown = _inputs(images[:GRID * GRID].to(module.device)), _shown(images)
    return shown(x), shown(module.reconstruct(x)), shown(module.sample(GRID * 3))


def pictured(images: torch.Tensor) -> bool:
    """Whether examples like ``images``' are drawn as pictures (grey or RGB images), not as
    curves over their dimensions."""
    return images.ndim == 4 and images.shape[1] in (1, 3)


def vector_pictures(module: VAE, val_images: torch.Tensor, n: int, mse: float, au: Any,
                    folder: Path) -> None:
    """``reconstructions.png`` and ``samples.png`` of examples drawn as curves: each
    flattened to its D values."""
    x = _inputs(val_images[:GRID].to(module.device))
    flat = _inputs(val_images).flatten(1).cpu().numpy()
    vector_reconstructions(x.flatten(1).cpu().numpy(),
                           module.reconstruct(x).flatten(1).cpu().numpy(),
                           f"trial {n}: validation reconstructions (mse {mse:.4g}, "
                           f"{au} active units)", folder / "reconstructions.png")
    vector_samples(module.sample(GRID).flatten(1).cpu().numpy(), flat,
                   f"trial {n}: samples from the prior", folder / "samples.png")


def curves_chart(series: Sequence[tuple[str, list[dict[str, Any]]]], title: str,
                 path: Path, rows: int = 1) -> None:
    """Four panels (CURVES) against the epoch, one line per (label, history), in ``rows``
    rows: 1 for the report's strip, 2 for a 4:3 card."""
    card = rows > 1
    fig = card_figure() if card else agg_figure(figsize=(4 * len(CURVES), 3.4), dpi=DPI)
    axes = fig.subplots(rows, len(CURVES) // rows, squeeze=False).ravel()
    last = max((r["epoch"] + 1 for _, h in series for r in h if r.get("epoch") is not None),
               default=1)
    for ax, (key, name) in zip(axes, CURVES, strict=True):
        values = []
        for i, (label, history) in enumerate(series):
            points = [r for r in history if r.get(key) is not None]
            ys = [float(r[key]) for r in points]
            values += ys
            ax.plot([r["epoch"] + 1 for r in points], ys, marker="o",
                    markersize=4 if card else 3,
                    lw=2.5 if card or (i < 2 and len(series) > 2) else 1.5, label=label)
        ax.set_xlabel("epoch", fontsize=12 if card else 10)
        # Whole epochs only; a fixed half-epoch margin, or one point gets ticks at 0.95-1.05.
        ax.set_xlim(0.5, last + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.tick_params(labelsize=11 if card else 10)
        if card:  # few y ticks: a panel a quarter of the card wide has room for short labels
            ax.yaxis.set_major_locator(MaxNLocator(4))
        ax.set_title(name, fontsize=15 if card else 10)
        # A log-like scale only when the rate spans decades (a collapse beside a healthy run):
        # within one decade symlog has no tick to label.
        if key == "rate" and values and max(values) > 30 * max(min(values), 1.0):
            ax.set_yscale("symlog", linthresh=1.0)
            ax.set_ylim(bottom=0)  # a rate is never negative; autoscale pads below 0
    if len(series) > 1:
        fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center",
                   ncol=min(len(series), 4), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=16 if card else 11)
    legend_rows = (len(series) + 3) // 4 if len(series) > 1 else 0
    # Fixed margins, not tight_layout: measuring every tick label made up half of a 1-epoch
    # trial's time outside its fit on a 2-core machine (0.3 s of 0.6 s for this chart).
    if card:
        fig.subplots_adjust(left=0.13, right=0.97, top=0.86, bottom=0.1, wspace=0.5,
                            hspace=0.55)
    else:
        fig.subplots_adjust(left=0.045, right=0.99, top=0.84,
                            bottom=0.17 + 0.08 * legend_rows, wspace=0.28)
    fig.savefig(path)


def kl_bar_chart(kl_per_dim: list[float], threshold_units: int, path: Path) -> None:
    """The rate of each latent dim, sorted, as one filled outline on a 4:3 card."""
    fig = card_figure()
    ax = fig.subplots()
    order = sorted(range(len(kl_per_dim)), key=lambda i: -kl_per_dim[i])
    # One filled step outline, not a Rectangle per dim: 256 bars took 0.5 s to draw.
    ax.stairs([kl_per_dim[i] for i in order], range(len(order) + 1), fill=True,
              color="#4c72b0")
    ax.set_xlim(0, len(order))
    ax.set_xlabel("latent dim (sorted by KL)", fontsize=15)
    ax.set_ylabel("KL, nats / image", fontsize=15)
    ax.tick_params(labelsize=13)
    ax.set_title(f"KL per latent dim: {sum(kl_per_dim):.3g} nats\n"
                 f"{threshold_units} active units", fontsize=20)
    fig.subplots_adjust(left=0.15, right=0.96, top=0.83, bottom=0.14)
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
        mse = metrics.get("mse", 0)
        key = next((k for k in (yardstick.BITS, yardstick.NATS) if k in metrics), yardstick.BITS)
        rows: list[tuple[str, torch.Tensor]] = []
        if pictured(val_images):
            x, x_hat, samples = pictures(module, val_images)
            rows = [("input", x[:GLANCE]), ("recon.", x_hat[:GLANCE]),
                    ("sample", samples[:GLANCE])]
            reconstructions_figure(x, x_hat, f"trial {n}: reconstructions",
                                   f"mse {mse:.4g}, {au} active units"
                                   ).savefig(d / "reconstructions.png")
            samples_figure(samples, f"trial {n}: samples, z ~ N(0, I)").savefig(
                d / "samples.png")
        else:
            vector_pictures(module, val_images, n, mse, au, d)
        glance = glance_figure(
            "posterior collapse" if au == 0 else f"{au} active units",
            [f"trial {n}, {metrics.get(key, float('nan')):.4g} {yardstick.unit(key)}",
             trial_record.who(trial.user_attrs)], rows, alarm=au == 0)
        glance.savefig(d / "at_a_glance.png")
        curves_chart([(f"trial {n}", history)], f"trial {n}: validation metrics",
                     d / "curves.png", rows=2)
        kl_bar_chart(metrics.get("kl_per_dim") or [0.0], au or 0, d / "kl_per_dim.png")
        write_csv(history or [{"epoch": None}], d / "metrics.csv")
        if document is not None:
            (d / "trial.json").write_text(json.dumps(json_safe(document), indent=1,
                                                     default=str) + "\n")
        if weights:
            save_weights(module, d / "weights.pt")
        return upload_in_order(trial, store, [d / name for name in ORDER if (d / name).exists()])
