"""The README's Quickstart runs as written (less the install, which CI has done)."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parent.parent


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("&&", 1)[1].strip() for line in block.strip().splitlines()]


def test_quickstart_is_two_commands_install_then_run():
    commands = quickstart_commands()
    assert len(commands) == 2
    assert commands[0].startswith("python -m sweep start")
    assert commands[1].startswith("python -m pytest")


def test_quickstart_start_runs_a_study_on_cpu(tmp_path):
    args = shlex.split(quickstart_commands()[0])
    assert args[:2] == ["python", "-m"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("VAE_SWEEP_STORAGE", None)
    run = subprocess.run([sys.executable, *args[1:]], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    study = optuna.load_study(study_name="vae-synthetic", storage=f"sqlite:///{tmp_path}/sweeps.db")
    assert len(study.trials) == 4, run.stderr
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials), \
        run.stderr
    status = subprocess.run([sys.executable, "-m", "sweep", "status"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert "Baseline (the seed configuration" in status.stdout, (status.stdout, status.stderr)
