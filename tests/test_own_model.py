"""The README's "Your own VAE" runs as written (on synthetic images, tiny sizes): the user's
network and its knob through start, status, report, export, train --config and load_model;
and what the contract refuses, each with one line and exit 2, nothing written."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import forkserver
import optuna
import pytest
from conftest import readme_blocks, readme_section
from optuna.trial import TrialState

from sweep.answer.references import REFERENCES

ROOT = Path(__file__).resolve().parent.parent
SECTION = readme_section("Your own VAE")
# The README's sizes shrunk through flags a user has; the conv knobs of README_TINY are not
# this network's, and a low threshold lets the tiny trials keep units.
TINY = ["--data", "synthetic", "--n-trials", "6", "--max-epochs", "1", "--set",
        "synthetic_size=96", "--set", "latent_dim=8", "--set", "batch_size=32", "--set",
        "au_threshold=0.0001"]


def sweep(args: list[str], cwd: Path, expect: int = 0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("VAE_SWEEP_STORAGE", None)
    done = forkserver.run(args, cwd=cwd, env=env, timeout=600)
    assert done.returncode == expect, f"{shlex.join(args)}\n{done.stdout}\n{done.stderr}"
    return done


def files(where: Path) -> None:
    """my_vae.py and mine.toml, as the README gives them."""
    code, load = readme_blocks(SECTION, "python")
    (toml,) = readme_blocks(SECTION, "toml")
    (where / "my_vae.py").write_text(code)
    (where / "mine.toml").write_text(toml)


@pytest.mark.slow
def test_the_readme_own_model_runs_as_written(tmp_path, monkeypatch):
    files(tmp_path)
    block = readme_blocks(SECTION, "bash")[0]
    start, status, report, export, train = [shlex.split(line)[3:] for line in
                                            block.splitlines()]
    out = sweep([*start, *TINY], tmp_path).stdout
    study = optuna.load_study(study_name="mine", storage=f"sqlite:///{tmp_path}/sweeps.db")
    trials = study.get_trials()
    assert all(t.state == TrialState.COMPLETE for t in trials), out
    assert len([t for t in trials if "confirm_of" not in t.user_attrs]) == 6
    # The seed and the four fixes ran on the user's network, at its knob's default.
    assert [t.user_attrs.get("reference") for t in trials[:5]] == [
        None, *(r.label for r in REFERENCES)]
    assert trials[0].user_attrs["baseline"]
    for t in trials:
        assert t.user_attrs["model"] == "my_vae.py:build"
        # The source's hash, cut to a dashboard line (whole in trial.json).
        assert t.user_attrs["model_sha256"] == hashlib.sha256(
            (tmp_path / "my_vae.py").read_bytes()).hexdigest()[:16]
        # The knob is searched: an Optuna param of every trial, with the file's choices.
        assert t.distributions["model.channels"].choices == (16, 32, 64)
    assert [t.params["model.channels"] for t in trials[:5]] == [32] * 5
    assert "Recommended (lowest bits/dim" in sweep(status, tmp_path).stdout
    sweep(report, tmp_path)
    assert (tmp_path / "report-mine" / "report.html").is_file()

    sweep(export, tmp_path)
    saved = json.loads((tmp_path / "best" / "metrics.json").read_text())
    toml = (tmp_path / "best" / "config.toml").read_text()
    assert 'model = "my_vae.py:build"' in toml and '"model.channels" = ' in toml
    again = json.loads(sweep(train, tmp_path).stdout)
    keys = ("mse", "rate", "neg_elbo", "bits_per_dim", "active_units")
    assert {k: again[k] for k in keys} == {k: saved[k] for k in keys}
    assert again["config"]["model.channels"] == saved["config"]["model.channels"]

    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(readme_blocks(SECTION, "python")[1], "README.md (load_model)", "exec"), scope)
    assert tuple(scope["samples"].shape) == (8, 3, 32, 32)
    assert type(scope["vae"].encoder).__name__ == "Encoder"
    assert type(scope["vae"].encoder).__module__.startswith("vae_sweep_model_")


@pytest.mark.slow
def test_the_conv_against_resnet_command_runs_as_written(tmp_path):
    """The comparison's command, on a few PNGs where it names ~/cifar10/train."""
    from torchvision.io import write_png

    from models.data import synthetic_images

    (block,) = readme_blocks(SECTION, "bash")[1:]
    command = shlex.split(block.replace("\\\n", " "))
    folder = tmp_path / "cifar10" / "train" / "shapes"
    folder.mkdir(parents=True)
    for i, image in enumerate(synthetic_images(40)):
        write_png(image, str(folder / f"{i}.png"))
    env = dict(os.environ, PYTHONPATH=str(ROOT), HOME=str(tmp_path))
    done = subprocess.run([sys.executable, *command[1:], "--set", "max_steps=2", "--set",
                           "latent_dim=4", "--set", "model.width=4", "--set", "batch_size=8"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)
    assert metrics["config"]["model"] == "resnet" and metrics["steps"] == 2


def start(tmp_path: Path, *extra: str, expect: int = 2) -> str:
    done = sweep(["start", "--study", "bad", *TINY, "--n-trials", "1", *extra], tmp_path,
                 expect=expect)
    if expect == 2:
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert not (tmp_path / "sweeps.db").exists()  # nothing written
        return lines[0]
    return done.stderr


@pytest.mark.parametrize("extra,words", [
    (["--set", "model.chanels=8"], "model.chanels: unknown knob of my_vae.py:build "
                                   "(its knobs: channels)"),
    (["--set", "model.channels=wide"], "model.channels: expected int"),
    (["--model", "missing.py:build"], "model: missing.py:build: no file missing.py"),
    (["--model", "no_such_package.vae:build"], "cannot import no_such_package.vae "
                                               "(ModuleNotFoundError"),
    (["--model", "my_vae.py:buld"], "has no function 'buld'"),
])
def test_bad_networks_and_knobs_exit_2_naming_them(tmp_path, extra, words):
    files(tmp_path)
    line = start(tmp_path, "--model", "my_vae.py:build", *extra)
    assert words in line, line


def test_a_network_of_the_wrong_shape_is_named_with_both_shapes(tmp_path):
    files(tmp_path)
    code = (tmp_path / "my_vae.py").read_text()
    (tmp_path / "my_vae.py").write_text(code.replace("nn.ConvTranspose2d(channels, c, 4, 2, 1)",
                                                     "nn.ConvTranspose2d(channels, c, 3, 2, 1)"))
    line = start(tmp_path, "--model", "my_vae.py:build")
    assert ("model: my_vae.py:build: the decoder returned a tensor of shape (2, 3, 31, 31); "
            "it must return (B, *shape) = (2, 3, 32, 32)") in line, line


@pytest.mark.slow
def test_a_worker_must_name_the_studys_network_and_its_unchanged_source(tmp_path):
    files(tmp_path)
    sweep(["start", "--study", "s", "--model", "my_vae.py:build", "--no-run", *TINY],
          tmp_path)
    study = ["worker", "--study", "s"]
    line = sweep(study, tmp_path, expect=2).stderr.strip()
    assert line == ("python -m sweep worker: error: --model is needed: study 's' trains the "
                    "network my_vae.py:build; run this with --model my_vae.py:build (a worker "
                    "imports only the code it is told to)")
    (tmp_path / "changed.py").write_text((tmp_path / "my_vae.py").read_text() + "# changed\n")
    line = sweep([*study, "--model", "changed.py:build"], tmp_path, expect=2).stderr.strip()
    assert line.startswith("python -m sweep worker: error: --model changed.py:build: its "
                           "source has sha256 ")
    assert "but study 's' was started with " in line
    assert len(line.splitlines()) == 1
    # The same file under another path is the same network: the worker runs the study.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "vae.py").write_text((tmp_path / "my_vae.py").read_text())
    sweep([*study, "--model", "elsewhere/vae.py:build"], tmp_path)
    trials = optuna.load_study(study_name="s",
                               storage=f"sqlite:///{tmp_path}/sweeps.db").get_trials()
    assert len([t for t in trials if "confirm_of" not in t.user_attrs]) == 6
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    assert {t.user_attrs["model"] for t in trials} == {"my_vae.py:build"}


@pytest.mark.slow
def test_a_builder_that_raises_for_one_knob_value_fails_that_trial_only(tmp_path,
                                                                        monkeypatch):
    """In Python, ``model=`` takes the function itself; defined here (no import path
    reaches it) it runs in this process, and a second worker is refused in one line."""
    import sweep
    from sweep.errors import ParamError

    def build(shape, latent_dim, k=1):
        if k == 2:
            raise ValueError("k = 2 is not a network")
        from models.networks.conv import build as conv

        return conv(shape, latent_dim, depth=2, width=4)

    monkeypatch.chdir(tmp_path)
    space = {"search": {"model": {"k": {"choices": [1, 2]}}}}
    fixed = {"dataset": "synthetic", "synthetic_size": 96, "latent_dim": 8,
             "batch_size": 32, "au_threshold": 1e-4}
    with pytest.raises(ParamError, match="defined in this process only"):
        sweep.start(space, study_name="s", n_trials=1, fixed=fixed, model=build,
                    options=sweep.RunOptions(workers=2))
    assert not (tmp_path / "sweeps.db").exists()
    s = sweep.start(space, study_name="s", n_trials=2, fixed=fixed, model=build, run=False,
                    baseline=False, references=False)
    for k in (2, 1):
        s.study.enqueue_trial({"model.k": k})
    s = sweep.join("s")
    failed, done = s.study.get_trials()[:2]
    assert failed.state == TrialState.FAIL and done.state == TrialState.COMPLETE
    assert (failed.params["model.k"], done.params["model.k"]) == (2, 1)
    assert failed.user_attrs["fail_reason"].endswith("(k=2) raised ValueError: k = 2 is not a "
                                                     "network")
