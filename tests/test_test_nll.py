"""Test NLL as papers report it through the command line: ``export`` and ``report`` with
``--test-data folder:... --iw-samples K`` write the ELBO and the tighter importance-weighted
bound; bad values of either flag exit 2 with one line, writing nothing."""

from __future__ import annotations

import json

import pytest
from test_cli import NO_COLLAPSE, sweep

from models.config import Config
from models.data import load_images


def _image_folder(where, n=24):
    """``n`` held-out synthetic images as PNGs of an ImageFolder tree (one class)."""
    from PIL import Image

    images = load_images(Config(dataset="synthetic", synthetic_size=2 * n), held_out=True)[:n]
    (where / "all").mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(where / "all" / f"{i:03d}.png")
    return f"folder:{where}"


@pytest.mark.slow
def test_export_and_report_write_the_bound_below_the_elbo(tmp_path):
    toml = tmp_path / "warm.toml"
    toml.write_text(NO_COLLAPSE.format(
        "synthetic_size = 96\nwidth = 4\nlatent_dim = 8\nau_threshold = 0.0001"))
    sweep("start", "--data", "synthetic", "--n-trials", "2", "--max-epochs", "2",
          "--config", str(toml), "--study", "s", cwd=tmp_path)
    test = _image_folder(tmp_path / "test")

    proc = sweep("export", "--study", "s", "--out", "best", "--test-data", test,
                 "--iw-samples", "8", cwd=tmp_path)
    saved = json.loads((tmp_path / "best" / "metrics.json").read_text())
    assert saved["test_bits_per_dim_iw"] < saved["test_bits_per_dim_elbo"], proc.stderr
    assert (saved["test_iw_samples"], saved["test_images"]) == (8, 24)
    assert saved["test_seconds"] > 0
    # the ELBO figure is the held-out metric of the trial's own likelihood, one sample
    assert saved["test_bits_per_dim_elbo"] == pytest.approx(
        saved["test"]["bits_per_dim_own"], abs=0.05)

    proc = sweep("report", "--study", "s", "--test-data", test, "--iw-samples", "4",
                 "--no-upload", cwd=tmp_path)
    page = (tmp_path / "report-s" / "report.html").read_text()
    assert "<h2 id=test-nll>Test NLL as papers report it</h2>" in page, proc.stderr
    assert "the sweep&#x27;s pick" in page and "the seed (baseline)" in page
    assert page.count("test NLL: trial") == 0 and proc.stderr.count("test NLL: trial") >= 2


BAD = [
    (["--iw-samples", "0", "--test-data", "synthetic"], "--iw-samples: expected an integer >= 1"),
    (["--iw-samples", "-3", "--test-data", "synthetic"], "--iw-samples: expected an integer"),
    (["--iw-samples", "2.5", "--test-data", "synthetic"], "'2.5'"),
    (["--iw-samples", "many", "--test-data", "synthetic"], "'many'"),
    (["--iw-samples", "4"], "--iw-samples needs --test-data"),
    (["--iw-samples", "4", "--test-data", "bogus"], "dataset: unknown dataset 'bogus'"),
]


@pytest.mark.parametrize("command,flags,named", [("export", *case) for case in BAD]
                         + [("report", *case) for case in BAD[::4]])
def test_bad_iw_samples_or_test_data_exit_2_naming_it(tmp_path, command, flags, named):
    proc = sweep(command, "--out", "out", *flags, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written
