"""The report's charts (``sweep.answer.report``): the rate-distortion plane and parameter
importance; and vector data's reconstructions and samples as curves (a trial's pictures,
``sweep.answer.trial_artifacts``, where images get grids).

Each function draws one PNG from plain data; the caller decides what goes in. Figures are
drawn by Agg on figures of their own (``agg_figure``), never through pyplot: no backend is
chosen for the process, so a notebook's stays the user's, and a worker needs no display.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 110


def agg_figure(**kwargs: Any) -> Figure:
    """A ``Figure`` (same arguments) drawn by Agg, whatever pyplot's backend is."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


@dataclass(frozen=True)
class Point:
    """A trial at its last validated epoch."""

    number: int
    rate: float  # nats / image
    mse: float
    active_units: int
    stopped: bool  # collapsed or pruned: the point is where it stopped
    label: str = ""  # "baseline", "recommended", a reference's short name, or ""


def rd_front(points: Sequence[Point]) -> list[Point]:
    """The points no other point beats in both rate and mse (both lower is better), by rate."""
    front: list[Point] = []
    for p in sorted(points, key=lambda p: (p.rate, p.mse)):
        if not front or p.mse < front[-1].mse:
            front.append(p)
    return front


def rd_plane(points: Sequence[Point], front: Sequence[Point], path: Path) -> None:
    """Rate (x, symlog) against mse (y), colour = active units; stopped trials as x."""
    fig = agg_figure(figsize=(8, 5.5), dpi=DPI)
    ax = fig.subplots()
    vmax = max([p.active_units for p in points] + [1])
    for stopped, marker, name in ((False, "o", "complete"), (True, "X", "collapsed / pruned "
                                                                        "(at its last epoch)")):
        group = [p for p in points if p.stopped == stopped]
        if group:
            sc = ax.scatter([p.rate for p in group], [p.mse for p in group],
                            c=[p.active_units for p in group], cmap="viridis", vmin=0,
                            vmax=vmax, marker=marker, s=70, edgecolors="black",
                            linewidths=0.5, label=name)
    if front:
        ax.plot([p.rate for p in front], [p.mse for p in front], "--", color="crimson",
                lw=1.2, drawstyle="steps-post", label="rate-distortion front", zorder=0)
    rates = sorted(p.rate for p in points)
    for i, p in enumerate(p for p in points if p.label):
        # Alternate above and below: references often sit next to the baseline. Points in
        # the highest third of rates are labelled to their left, so no label leaves the axes.
        left = p.rate > rates[2 * len(rates) // 3 - 1] if len(rates) >= 3 else False
        ax.annotate(f"{p.label} (#{p.number})", (p.rate, p.mse), textcoords="offset points",
                    xytext=(-6 if left else 6, 8 if i % 2 == 0 else -14), fontsize=8,
                    ha="right" if left else "left",
                    arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "gray"},
                    weight="bold" if p.label in ("baseline", "recommended") else "normal")
    if points:
        fig.colorbar(sc, ax=ax, label="active units")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("rate: KL, nats / image")
    ax.set_ylabel("distortion: mse per pixel")
    ax.set_title("Rate-distortion plane: every trial that reached an epoch")
    if points:
        ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path)


def importance_chart(importances: dict[str, dict[str, float]], path: Path) -> None:
    """One horizontal bar panel per objective: each param's share of the variance."""
    fig = agg_figure(dpi=DPI, figsize=(4.5 * len(importances), 0.35 * max(
        len(v) for v in importances.values()) + 1.4))
    axes = fig.subplots(1, len(importances), squeeze=False)
    for ax, (objective, values) in zip(axes[0], importances.items(), strict=True):
        names = list(values)[::-1]
        ax.barh(names, [values[n] for n in names], color="#4c72b0")
        ax.set_xlim(0, 1)
        ax.set_title(objective, fontsize=10)
        ax.set_xlabel("importance (fANOVA)")
    fig.tight_layout()
    fig.savefig(path)


def _dims_plot(ax: Any, values: Any, **kwargs: Any) -> None:
    """One example as a line over its dimensions (with dots while there are few)."""
    ax.plot(range(len(values)), values, marker="." if len(values) <= 64 else None, **kwargs)


def vector_reconstructions(inputs: Any, reconstructions: Any, title: str, path: Path) -> None:
    """Vector data's reconstructions (``inputs``, ``reconstructions``: (n, D) arrays): one
    panel per example, its input and its reconstruction as lines over the D dimensions."""
    n = len(inputs)
    cols = min(4, n)
    rows = -(-n // cols)
    fig = agg_figure(figsize=(3.4 * cols, 2.1 * rows + 0.9), dpi=DPI)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_visible(False)
            continue
        _dims_plot(ax, inputs[i], color="black", lw=1.2, label="input")
        _dims_plot(ax, reconstructions[i], color="C1", lw=1.2, ls="--", label="reconstruction")
        ax.set_title(f"example {i}", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("dimension", fontsize=9)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=2,
               fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    # Fixed margins, not tight_layout: measuring every label costs a short trial's time.
    fig.subplots_adjust(left=0.06, right=0.98, top=1 - 0.55 / fig.get_figheight(),
                        bottom=0.75 / fig.get_figheight(), hspace=0.45, wspace=0.12)
    fig.savefig(path)


def vector_samples(samples: Any, data: Any, title: str, path: Path) -> None:
    """Vector data's samples from the prior (``samples``: (m, D)) as lines over the D
    dimensions, on the band of the validation data (``data``: (N, D)) mean ± 2 SD."""
    fig = agg_figure(figsize=(8, 3.6), dpi=DPI)
    ax = fig.subplots()
    dims = range(data.shape[1])
    mean, sd = data.mean(0), data.std(0)
    ax.fill_between(dims, mean - 2 * sd, mean + 2 * sd, color="0.88",
                    label="validation data: mean ± 2 SD")
    ax.plot(dims, mean, color="0.55", lw=1, label="validation data: mean")
    for i, sample in enumerate(samples):
        _dims_plot(ax, sample, lw=1, alpha=0.85, color=f"C{i % 10}",
                   label="samples, z ~ N(0, I)" if i == 0 else None)
    ax.set_xlabel("dimension")
    ax.set_ylabel("value")
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.09, right=0.7, top=0.88, bottom=0.15)
    fig.savefig(path)
