"""How a run of a study ends, as ``start``, ``resume`` and ``worker`` report it: a budget
spent with no COMPLETE trial is exit 1 and one line saying how many failed and why."""

import optuna
import pytest
from optuna.trial import TrialState

from sweep.cli import main


@pytest.fixture(autouse=True)
def _no_storage_env(monkeypatch):
    monkeypatch.delenv("VAE_SWEEP_STORAGE", raising=False)


DIVERGING = """
objectives = ["mse"]
pruner = "none"
[fixed]
synthetic_size = 96
width = 4
depth = 2
latent_dim = 8
batch_size = 32
max_epochs = 1
lr = 1000000.0
[search.kl_weight]
low = 1.0
high = 2.0
"""


@pytest.mark.slow
def test_a_budget_spent_with_no_complete_trial_exits_1_with_one_line(tmp_path, capsys,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.toml").write_text(DIVERGING)
    url = f"sqlite:///{tmp_path}/s.db"
    said = "spent its budget (2/2) with no COMPLETE trial: 2 failed, most often training " \
           "diverged (nan) (2 of 2; the last: training diverged (nan) at step "
    assert main(["start", "--storage", url, "--space", "d.toml", "--data", "synthetic",
                 "--n-trials", "2", "--no-baseline", "--study", "nan"]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "no COMPLETE trial" in line]
    assert len(lines) == 1 and lines[0].startswith("python -m sweep start: study 'nan' " + said)
    assert "resume" not in lines[0]  # the budget is spent: resuming would change nothing
    trials = optuna.load_study(study_name="nan", storage=url).trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 2
    for command in ("resume", "worker"):  # the budget is spent: each says the same again
        assert main([command, "--storage", url, "--study", "nan"]) == 1
        err = capsys.readouterr().err
        assert f"python -m sweep {command}: study 'nan' {said}" in err, err


@pytest.mark.slow
def test_a_study_with_a_complete_trial_exits_0(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.toml").write_text(DIVERGING.replace("lr = 1000000.0", "lr = 0.001"))
    url = f"sqlite:///{tmp_path}/s.db"
    assert main(["start", "--storage", url, "--space", "d.toml", "--data", "synthetic",
                 "--n-trials", "1", "--no-baseline", "--study", "ok"]) == 0
    assert "no COMPLETE trial" not in capsys.readouterr().err
    assert main(["worker", "--storage", url, "--study", "ok"]) == 0
