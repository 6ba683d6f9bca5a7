"""The README's commands run as written, at tiny sizes (the install aside, which CI has done).

Each command is read from the README itself, so a README edit that breaks one fails here.
Sizes shrink only through flags the command line already has (``--set``, a later
``--n-trials``) or through the ``fixed`` fields of ``sweep.create_study``: what a user types
is what runs.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import forkserver
import optuna
import pytest
import torch
from conftest import README_TINY, readme_blocks, readme_section
from optuna.trial import TrialState
from torchvision.io import write_png

from models.data import synthetic_images
from sweep.answer.references import REFERENCES
from sweep.space import load_space
from sweep.storage import trial_record

ROOT = Path(__file__).resolve().parent.parent
TINY = README_TINY
TINY_SET = [arg for k, v in TINY.items() for arg in ("--set", f"{k}={v}")]


section, blocks = readme_section, readme_blocks


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    assert args[:2] == ["python", "-m"], args
    environ = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    environ.pop("VAE_SWEEP_STORAGE", None)
    assert args[2] == "sweep", args
    done = forkserver.run(args[3:], cwd=cwd, env=environ, timeout=600)
    assert done.returncode == 0, f"{shlex.join(args)}\n{done.stdout}\n{done.stderr}"
    return done


def test_install_gives_a_gpu_and_a_cpu_command_with_the_pair_ci_installs():
    commands = [line for b in blocks(section("Install"), "bash") for line in b.splitlines()]
    gpu, cpu = commands
    pins = re.findall(r"(torch==\S+ torchvision==\S+)", (ROOT / ".ci/run").read_text())
    assert pins and gpu.startswith(f"pip install {pins[0]} -e .")
    assert cpu == ("pip install torch torchvision --index-url "
                   "https://download.pytorch.org/whl/cpu && pip install -e .")


def test_the_development_test_command_is_the_one_ci_runs():
    (block,) = blocks(section("Development"), "bash")
    assert block.splitlines()[-1] == "python -m pytest -q"
    assert "\npython -m pytest -q\n" in (ROOT / ".ci/run").read_text()


def test_the_sweep_file_example_is_a_valid_space(tmp_path):
    (toml,) = blocks(section("The sweep file"), "toml")
    path = tmp_path / "calib.toml"
    path.write_text(toml)
    space = load_space(path)
    assert list(space.objectives) == ["bits_per_dim"]
    assert set(space.params) == {"lr", "latent_dim", "batch_size"}
    assert space.fixed["likelihood"] == "gaussian"


@pytest.mark.slow
def test_quickstart_shows_the_collapsed_seed_every_fix_and_ends_with_the_next_commands(
        tmp_path):
    (command,) = [line for b in blocks(section("Quickstart"), "bash") for line in b.splitlines()]
    (shown,) = blocks(section("Quickstart"), "text")
    out = run([*shlex.split(command), *TINY_SET], tmp_path).stdout
    study = optuna.load_study(study_name="vae-synthetic", storage=f"sqlite:///{tmp_path}/sweeps.db")
    trials = study.get_trials()
    assert [t.user_attrs.get("reference") for t in trials] == [None, *(r.label for r in REFERENCES)]
    assert trials[0].user_attrs["baseline"] and trials[0].state == TrialState.COMPLETE
    assert trials[0].system_attrs["constraints"] == [1.0]  # infeasible: no active unit
    assert "trial 0 COMPLETE: bits_per_dim=" in out
    assert "; infeasible: posterior collapse" in out
    answer = out[out.index("\nBaseline (the seed configuration, trial 0): posterior collapse"):]
    for r in REFERENCES:
        assert f"\nReference {r.label} (trial " in answer
    assert "\nRecommended" in answer
    assert out.rstrip("\n").endswith(shown.rstrip("\n")), out[-600:]
    status = run(shlex.split(shown.splitlines()[1].split("#")[0]), tmp_path).stdout
    assert "Baseline (the seed configuration, trial 0)" in status
    # What the README says of the seeds, start's first line says (status says it once a
    # trial kept a unit: not at these tiny sizes; tests/test_confirm.py).
    assert ("this answer rests on 1 seed; `start` says so on its first line, and `--n-trials 6` "
            "or more runs them.") in " ".join(section("Quickstart").split())
    assert out.splitlines()[0].endswith("so the answer rests on 1 seed: they confirm the "
                                        "search's best, and these 5 trials are the seed and "
                                        "the fixes (--n-trials 6 or more leaves room for them)")


def test_the_next_commands_name_a_storage_the_user_gave_with_its_password_hidden():
    from sweep.commands.start import next_commands

    lines = next_commands("vae", "postgresql://sweep:secret@db-host/sweep").splitlines()
    assert lines[0] == "Next:" and len(lines) == 4
    for line, command in zip(lines[1:], ("status --study vae", "dashboard", "report --study vae"),
                             strict=True):
        args = shlex.split(line.split("#")[0])
        assert " ".join(args[3:-2]) == command
        assert args[-2:] == ["--storage", "postgresql://sweep:***@db-host/sweep"]


@pytest.mark.slow
def test_the_python_example_runs_and_plots_the_history(readme_example):
    scope = readme_example
    folder = scope["where"]
    study = scope["s"].study
    assert len(study.trials) == 5
    assert study.trials[scope["best"].number].state == TrialState.COMPLETE
    assert scope["x_hat"].shape == scope["x"].shape == (8, 3, 32, 32)
    assert (folder / "best" / "weights.pt").is_file()
    fig = scope["fig"]
    assert fig.layout.yaxis.title.text == "bits/dim"
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert list(fig.data[0].y) == [t.user_attrs["bits_per_dim"] for t in done]
    assert "plotly" in (folder / "history.html").read_text()


# 5 trials are few for importance, and bits/dim is to be low: both as meant.
@pytest.mark.filterwarnings("ignore:Some regimes", "ignore:PedAnovaImportanceEvaluator")
@pytest.mark.slow
def test_optunas_own_analysis_works_on_a_study_the_project_made(readme_example):
    """The viz extra: trials_dataframe, a plot that fits the study's objectives, and
    parameter importance (on bits/dim when there are several objectives)."""
    study = readme_example["s"].study
    frame = study.trials_dataframe()
    assert list(frame["number"]) == [0, 1, 2, 3, 4]
    if len(study.directions) > 1:
        fig = optuna.visualization.plot_pareto_front(study)
        target = {"target": lambda t: t.user_attrs["bits_per_dim"]}
    else:
        fig = optuna.visualization.plot_optimization_history(study)
        target = {}
    assert len(fig.data) >= 1
    importance = optuna.importance.get_param_importances(study, **target)
    assert importance and abs(sum(importance.values()) - 1) < 1e-6


@pytest.mark.slow
def test_the_exported_model_loads_as_the_readme_shows(readme_example, monkeypatch):
    monkeypatch.chdir(readme_example["where"])  # the example exported its pick to best/
    write_png(synthetic_images(1)[0], "cat.png")
    (code,) = [b for b in blocks(section("Reading the answer"), "python") if "load_model" in b]
    scope: dict = {}
    exec(compile(code, "README.md (loading the model)", "exec"), scope)
    assert scope["x_hat"].shape == scope["x"].shape == (1, 3, 32, 32)
    assert scope["samples"].shape == (8, 3, 32, 32) and torch.isfinite(scope["mu"]).all()


def walkthrough_folder_blocks() -> list[list[list[str]]]:
    """Each walkthrough block that names ``folder:`` data, as its commands' argument lists
    (a line ending in a backslash continues on the next)."""
    out = []
    for b in blocks(section("Why does my VAE's KL drown the reconstruction? "
                            "A CIFAR-10 walkthrough"), "bash"):
        if "folder:" in b:
            out.append([shlex.split(line) for line in b.replace("\\\n", " ").splitlines()])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("block", walkthrough_folder_blocks(), ids=["images", "cpu"])
def test_your_own_images_as_the_readme_gives_them(tmp_path, block):
    """The walkthrough's ``folder:~/...`` commands with HOME here: PNGs in an ImageFolder
    tree for each folder they name, a study on train, a report scored on test."""
    start, report = block
    folders = {a.split(":", 1)[1] for a in start + report if a.startswith("folder:")}
    for k, folder in enumerate(sorted(folders)):
        n = 40 if folder.endswith("train") else 8
        (tmp_path / folder[2:] / "shapes").mkdir(parents=True)
        for i, image in enumerate(synthetic_images(n, seed=k)):
            write_png(image, str(tmp_path / folder[2:] / "shapes" / f"{i}.png"))
    name = start[start.index("--study") + 1]
    out = run([*start, "--n-trials", "2", *TINY_SET], tmp_path, HOME=str(tmp_path)).stdout
    assert f"study '{name}'" in out and "\nNext:\n" in out
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/sweeps.db")
    train = next(a for a in start if a.startswith("folder:"))
    assert trial_record.config(study.trials[0])["dataset"] == train
    assert [t.state for t in study.trials[:2]] == [TrialState.COMPLETE] * 2
    run(report, tmp_path, HOME=str(tmp_path))
    assert (tmp_path / f"report-{name}" / "report.html").is_file()
