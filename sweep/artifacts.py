"""Per-trial pictures and tables, uploaded with optuna.artifacts so optuna-dashboard shows them.

- ``reconstructions.png``: validation inputs (top row) above their reconstructions;
- ``samples.png``: images decoded from the prior;
- ``kl_per_dim.png``: bar chart of the rate per latent dim (nats/image), active units marked;
- ``metrics.csv``: the per-epoch validation metrics.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: workers have no display

import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import torch  # noqa: E402
from optuna.artifacts import FileSystemArtifactStore, upload_artifact  # noqa: E402
from torchvision.utils import make_grid, save_image  # noqa: E402

from models.module import VAE  # noqa: E402

N_IMAGES = 8


def reconstruction_grid(module: VAE, images: torch.Tensor) -> torch.Tensor:
    """Two rows: up to N_IMAGES validation inputs above their reconstructions."""
    x = images[:N_IMAGES].to(module.device).float() / 255
    both = torch.cat([x, module.reconstruct(x)]).cpu()
    return make_grid(both, nrow=x.shape[0], padding=1, pad_value=1.0)


def kl_bar_chart(kl_per_dim: list[float], threshold_units: int, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 3), dpi=100)
    order = sorted(range(len(kl_per_dim)), key=lambda i: -kl_per_dim[i])
    ax.bar(range(len(order)), [kl_per_dim[i] for i in order], width=1.0, color="#4c72b0")
    ax.set_xlabel("latent dim (sorted by KL)")
    ax.set_ylabel("KL, nats / image")
    ax.set_title(f"KL per latent dim: {sum(kl_per_dim):.3g} nats total, "
                 f"{threshold_units} active units")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_csv(history: list[dict[str, Any]], path: Path) -> None:
    keys = list(dict.fromkeys(k for row in history for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def upload_trial_artifacts(trial: optuna.Trial, store: FileSystemArtifactStore, module: VAE,
                           val_images: torch.Tensor, metrics: dict[str, Any],
                           history: list[dict[str, Any]]) -> list[str]:
    """Render the four files for this trial and upload them; returns the artifact ids."""
    module.eval()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        save_image(reconstruction_grid(module, val_images), d / "reconstructions.png")
        save_image(make_grid(module.sample(2 * N_IMAGES).cpu(), nrow=N_IMAGES, padding=1,
                             pad_value=1.0), d / "samples.png")
        if metrics.get("kl_per_dim"):
            kl_bar_chart(metrics["kl_per_dim"], metrics["active_units"], d / "kl_per_dim.png")
        if history:
            write_csv(history, d / "metrics.csv")
        return [upload_artifact(artifact_store=store, file_path=str(p), study_or_trial=trial)
                for p in sorted(d.iterdir())]
