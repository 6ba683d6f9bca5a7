"""Your own data through the command line: ``--data npy:PATH`` with uint8 images (bits/dim,
image grids) and with float vectors (nats/dim in status, report and the dashboard's notes,
curves for pictures), ``train`` on float data, and bad arrays refused with one line, nothing
written. Commands run in this process (``sweep.cli.main``): torch is imported once."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.artifacts import get_all_artifact_meta
from optuna_dashboard import get_note

from models.config import Config
from models.data import synthetic_images
from models.module import VAE
from sweep import optuna_private
from sweep.answer.trial_artifacts import pictures
from sweep.cli import main

# A network of the user's own for any shape: flattened, one hidden layer each way.
BUILDER = '''
from torch import nn


class Encoder(nn.Module):
    def __init__(self, d, latent_dim, hidden):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.Tanh())
        self.mu, self.logvar = nn.Linear(hidden, latent_dim), nn.Linear(hidden, latent_dim)

    def forward(self, x):
        h = self.body(x)
        return self.mu(h), self.logvar(h)


def build(shape, latent_dim, hidden=16):
    d = 1
    for n in shape:
        d *= n
    decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.Tanh(), nn.Linear(hidden, d),
                            nn.Unflatten(1, tuple(shape)))
    return Encoder(d, latent_dim, hidden), decoder
'''
# The seed and the first reference, no confirmation runs; a low threshold keeps units.
SWEEP = """confirm = 0
[fixed]
latent_dim = 4
batch_size = 32
au_threshold = 1e-4
"""
START = ["--set", "model=vae.py:build", "--space", "tiny.toml", "--n-trials", "2",
         "--max-epochs", "2"]


def cli(capsys, *args: str, code: int = 0) -> tuple[str, str]:
    got = main(list(args))
    out = capsys.readouterr()
    assert got == code, out.err
    return out.out, out.err


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAE_SWEEP_STORAGE", raising=False)
    (tmp_path / "vae.py").write_text(BUILDER)
    (tmp_path / "tiny.toml").write_text(SWEEP)
    return tmp_path


def vectors(n: int = 200, d: int = 8) -> np.ndarray:
    """Tabular rows with a 2-dimensional cause, far from [0, 1]: 5 + 3 (z W + noise)."""
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(n, 2)) @ rng.normal(size=(2, d)) + 0.1 * rng.normal(size=(n, d))
    return 5 + 3 * rows


@pytest.mark.slow
def test_float_vectors_are_swept_in_nats_per_dim_with_curves(here, capsys):
    """The README's ``--data npy:rows.npy --model mlp``: the built-in network for vectors."""
    np.save(here / "rows.npy", vectors())
    out, _ = cli(capsys, "start", "--data", "npy:rows.npy", "--model", "mlp", *START[2:])
    assert "float data: the objective is nats_per_dim" in out
    assert "float data: decoder_activation=none" in out
    data = json.loads(cli(capsys, "status", "-f", "json")[0])
    assert data["yardstick"] == {"key": "nats_per_dim", "unit": "nats/dim"}
    pick, base = data["recommended"], data["baseline"]
    assert pick is not None and "bits_per_dim" not in pick and "bits_per_dim" not in base
    study = optuna.load_study(study_name="vae-rows", storage="sqlite:///sweeps.db")
    assert study.metric_names == ["nats_per_dim"]
    for t in study.trials:
        attrs = t.user_attrs
        assert attrs["model"] == "mlp"
        assert "bits_per_dim" not in attrs and "artifacts_missing" not in attrs
        assert attrs["nats_per_dim"] == pytest.approx(attrs["neg_elbo"] / 8) == t.value
        store = optuna_private.study_storage(study)
        names = {m.filename for m in get_all_artifact_meta(t, storage=store)}
        assert {"reconstructions.png", "samples.png"} <= names  # curves: no grid of (8,)
    assert pick["nats_per_dim"]["mean"] == study.trials[pick["trial"]].value
    assert "nats/dim" in get_note(study) and "bits/dim" not in get_note(study)
    cli(capsys, "report", "--test-data", "npy:rows.npy")
    page = (here / "report-vae-rows" / "report.html").read_text()
    assert "nats/dim" in page and "bits/dim" not in page and "bits_per_dim" not in page
    assert "held-out nats/dim" in page
    for role in ("recommended", "baseline"):  # their curves, embedded
        assert f'alt="{role} reconstructions.png"' in page and f'alt="{role} samples.png"' in page


@pytest.mark.slow
def test_uint8_images_in_an_npy_file_are_scored_in_bits_per_dim(here, capsys):
    np.save(here / "pics.npy", synthetic_images(200, size=8).numpy())
    cli(capsys, "start", "--data", "npy:pics.npy", *START)
    data = json.loads(cli(capsys, "status", "-f", "json")[0])
    assert data["yardstick"] == {"key": "bits_per_dim", "unit": "bits/dim"}
    study = optuna.load_study(study_name="vae-pics", storage="sqlite:///sweeps.db")
    assert study.metric_names == ["bits_per_dim"]
    for t in study.trials:
        a = t.user_attrs
        assert a["bits_per_dim"] == pytest.approx(a["nats_per_dim"] / math.log(2)
                                                  + math.log2(255)) == t.value
    assert data["baseline"]["bits_per_dim"] == study.trials[0].value
    cli(capsys, "report")
    assert "bits/dim" in (here / "report-vae-pics" / "report.html").read_text()


def test_train_on_float_data_decodes_unbounded_unless_told(here, capsys):
    np.save(here / "rows.npy", vectors(60, 3))
    args = ["train", "--data", "npy:rows.npy", "--set", "model=vae.py:build", "--set",
            "latent_dim=2", "--set", "max_steps=2"]
    out, err = cli(capsys, *args)
    metrics = json.loads(out)
    assert metrics["config"]["decoder_activation"] == "none"
    assert "bits_per_dim" not in metrics and metrics["nats_per_dim"] > 0
    said = [line for line in err.splitlines() if "decoder_activation" in line]
    assert len(said) == 1 and said[0].startswith("float data: decoder_activation=none")
    out, err = cli(capsys, *args, "--set", "decoder_activation=sigmoid")
    assert json.loads(out)["config"]["decoder_activation"] == "sigmoid"
    assert "decoder_activation" not in err


def test_float_images_are_shown_on_the_inputs_range(here):
    images = torch.linspace(-3, 7, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    cfg = Config(model=f"{here}/vae.py:build", latent_dim=2, decoder_activation="none")
    module = VAE(cfg.to_dict(), (3, 4, 4), 1, eight_bit=False).eval()
    shown, recon, _ = pictures(module, images)
    assert float(shown[0].min()) == 0.0 and float(shown.max()) == 1.0
    assert recon.shape == shown.shape


BAD = {"nan": "NaN or inf values", "rank": "rank 3", "arrays": "holds 2 arrays",
       "dtype": "holds int64 values", "missing": "cannot read"}


def _write_bad(path: Path, kind: str) -> None:
    if kind == "nan":
        rows = vectors(20, 4)
        rows[4, 2] = np.nan
        np.save(path, rows)
    elif kind == "rank":
        np.save(path, np.zeros((20, 3, 4)))
    elif kind == "arrays":
        with open(path, "wb") as f:
            np.savez(f, x=np.zeros((20, 4)), y=np.zeros(20))
    elif kind == "dtype":
        np.save(path, np.zeros((20, 4), np.int64))


@pytest.mark.parametrize("kind", list(BAD))
@pytest.mark.parametrize("command", [["start"], ["start", "--no-run"], ["train"]])
def test_a_bad_array_exits_2_with_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys,
                                                             kind, command):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAE_SWEEP_STORAGE", raising=False)
    _write_bad(tmp_path / "bad.npy", kind)
    before = sorted(tmp_path.iterdir())
    _, err = cli(capsys, *command, "--data", "npy:bad.npy", code=2)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "dataset: " in lines[0] and "bad.npy" in lines[0], err
    assert BAD[kind] in lines[0], err
    assert sorted(tmp_path.iterdir()) == before  # no sweeps.db, no artifacts folder
