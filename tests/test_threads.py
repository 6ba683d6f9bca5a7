"""Threads that hold up on a busy machine: every entry point and worker process starts torch
with OpenMP's passive wait policy (spinning threads fight other processes for the cores),
and a user's own policy wins; an exported config carries the thread count it ran with."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.config import Config
from sweep import configfile
from sweep.errors import UsageError
from sweep.runner.processes import wait_policy, worker_env

ROOT = Path(__file__).resolve().parents[1]

# What `python -m sweep` has set by the time a command runs, and whether torch was loaded
# before it (libgomp reads the policy once, when torch loads it).
PROBE = """
import os, runpy, sys
sys.argv = ["sweep", "--version"]
try:
    runpy.run_module("sweep", run_name="__main__")
except SystemExit:
    pass
print(os.environ.get("OMP_WAIT_POLICY"), "torch" in sys.modules)
"""


def probe(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    proc = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env,
                                                              "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("\n")[-2]


def test_python_m_sweep_sets_the_passive_policy_before_torch_loads():
    assert probe() == "PASSIVE False"
    assert probe(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE False"


def test_worker_processes_get_the_passive_policy_unless_the_user_set_one(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert worker_env(0, None, 1)["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert worker_env(0, None, 1)["OMP_WAIT_POLICY"] == "ACTIVE"
    assert wait_policy({"OMP_WAIT_POLICY": "ACTIVE"}) == {}


def test_a_config_file_carries_the_thread_count_it_ran_with(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(configfile.dumps(Config(latent_dim=8), threads=3))
    values, threads = configfile.read_values(path)
    assert threads == 3 and Config.from_dict(values) == Config(latent_dim=8)
    path.write_text(configfile.dumps(Config()))
    assert configfile.read_values(path)[1] is None
    for bad in ("0", "1.5", "true", '"2"'):
        path.write_text(f"threads = {bad}\n")
        with pytest.raises(UsageError, match=r"threads must be an integer >= 1"):
            configfile.read_values(path)
