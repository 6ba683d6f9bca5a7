"""The default search on a tiny real study: the collapsing seed is COMPLETE, infeasible and
never best; references screen, the focus stage searches around the best of them; the best
configurations and the best reference are confirmed over seeds; status --format json and
the report give the answer recommend() gives, and a second report leaves one artifact."""

from __future__ import annotations

import json
import re
import statistics

import optuna
import pytest
from conftest import readme_section
from optuna.artifacts import get_all_artifact_meta
from optuna.trial import TrialState
from optuna_dashboard import get_note

import sweep.runner.objective
from sweep import optuna_private
from sweep.answer import recommend, references
from sweep.answer import summary as answer
from sweep.answer.references import enqueue_references
from sweep.cli import main
from sweep.runner.heartbeat import open_with_heartbeat
from sweep.runner.loop import Worker
from sweep.runner.progress import Progress
from sweep.space import baseline_params, parse_space
from sweep.storage import settings as study_settings
from sweep.storage import trial_record
from sweep.storage.settings import Settings
from sweep.storage.stores import open_stores

pytestmark = pytest.mark.slow  # the module's fixture runs a study


@pytest.fixture(scope="module")
def study_run(tmp_path_factory, images):
    """Baseline, two references, one focus trial, then the confirmation runs (top 1 and the
    best reference, 2 more seeds each), trained for two epochs on the tiny synthetic data."""
    from conftest import TINY

    tmp = tmp_path_factory.mktemp("search")
    url = f"sqlite:///{tmp}/sweeps.db"
    space = parse_space({"strategy": "focus", "confirm": 1,
                         "fixed": {**TINY, "max_epochs": 2}})
    settings = Settings(space, goal=4, heartbeat=1)
    storage = open_with_heartbeat(url, 1)
    study = optuna.create_study(study_name="s", storage=storage, direction="minimize")
    study.set_metric_names(list(space.objectives))
    study_settings.save(study, settings)
    study.enqueue_trial(baseline_params(space), user_attrs={"baseline": True})
    with pytest.MonkeyPatch.context() as mp:  # the two fixes that keep units on tiny data
        mp.setattr(references, "REFERENCES", references.REFERENCES[2:])
        enqueue_references(study, space, room=2)  # cyclical annealing and KL warm-up
    stores = open_stores(None, url, "s")
    objective = sweep.runner.objective.Objective(space, images, stores.artifacts,
                                                 stores.checkpoints)
    Worker(study, storage, objective, settings, Progress(study, 4, False)).run(timeout=None)
    return tmp, url, optuna.load_study(study_name="s", storage=url)


def test_the_collapsing_seed_is_complete_infeasible_and_never_best(study_run):
    _, _, study = study_run
    base = study.trials[0]
    assert base.user_attrs["baseline"] and base.user_attrs["active_units"] == 0
    # Its value and reason stay visible (the dashboard plots COMPLETE trials), and the
    # constraint optuna-dashboard reads marks it infeasible.
    assert base.state == TrialState.COMPLETE and base.value == base.user_attrs["bits_per_dim"]
    assert base.user_attrs["collapse_reason"].startswith("posterior collapse")
    assert base.system_attrs["constraints"] == [1.0]
    assert study.best_trial.number != 0 and study.best_trial.user_attrs["active_units"] > 0
    assert all(c <= 0 for c in study.best_trial.constraints.values())
    assert recommend.recommend(study.trials).number != 0


def test_references_screen_then_the_focus_stage_searches_around_the_best(study_run):
    _, _, study = study_run
    stages = [t.user_attrs["stage"] for t in study.trials]
    assert stages[:4] == ["baseline", "reference", "reference", "focus"]
    assert set(stages[4:]) == {"confirm"}
    focus = study.trials[3]
    centre = study.trials[focus.user_attrs["focus_of"]]
    assert centre.user_attrs["reference"] and centre.user_attrs["active_units"] > 0
    assert centre.number == recommend.recommend(
        [t for t in study.trials[:3] if t.user_attrs.get("reference")]).number
    # The centre's categorical fields are fixed; lr is searched within 3x of the centre's.
    mine, its = trial_record.config(focus), trial_record.config(centre)
    for field in ("likelihood", "recon_reduction", "kl_reduction", "kl_schedule"):
        assert mine[field] == its[field]
    assert set(focus.params) <= {"lr", "kl_warmup_steps", "kl_cycles", "kl_ratio", "free_bits"}
    assert its["lr"] / 3 <= mine["lr"] <= its["lr"] * 3


def test_the_best_configuration_and_the_best_reference_are_confirmed_over_seeds(study_run):
    _, _, study = study_run
    trials = study.trials
    confirm = [t for t in trials if "confirm_of" in t.user_attrs]
    pick, ref = recommend.recommend_group(trials), recommend.reference_group(trials)
    assert pick is not None and ref is not None
    for group in (pick, ref):
        runs = [t for t in confirm if t.user_attrs["confirm_of"] == group.origin.number]
        assert sorted(t.user_attrs["seed"] for t in runs) == [1, 2]
        assert group.seeds == [0, 1, 2] and len(group.runs) == 3
        for t in runs:  # the same config but the seed
            cfg = {**trial_record.config(t), "seed": 0}
            assert cfg == trial_record.config(group.origin)
    # Confirmed: the top configuration (confirm = 1) and the best reference, 2 seeds each.
    # The pick is among them, but may be the reference: a top configuration whose one seed
    # won can lose over three.
    confirmed = {t.user_attrs["confirm_of"] for t in confirm}
    assert {pick.origin.number, ref.origin.number} <= confirmed and len(confirmed) <= 2
    assert len(confirm) == 2 * len(confirmed)
    # The budget grew by the confirmation runs, which ran: nothing is left to queue.
    assert study_settings.load(study).goal == 4 + len(confirm)
    assert all(t.state == TrialState.COMPLETE for t in confirm)


def sweep_cli(capsys, *args):
    """``python -m sweep ARGS`` in this process (the suite's import of torch is paid once)."""
    code = main(list(args))
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def test_status_json_is_the_answer_recommend_gives(study_run, capsys):
    _, url, study = study_run
    data = json.loads(sweep_cli(capsys, "status", "--storage", url, "--study", "s",
                                "--format", "json"))
    for key in ("recommended", "best_reference", "gap", "baseline", "confirmation", "trials"):
        assert data[key] is not None, key
    # The keys the README names are the ones it prints.
    text = readme_section("Reading the answer")
    named = re.search(r"`best_reference` \(([^)]*)\)", text).group(1)
    assert [w.split()[0].strip("`") for w in named.split(",")] == [
        "trial", "runs", "seeds", "config", "bits_per_dim"]
    assert {"trial", "runs", "seeds", "config", "bits_per_dim"} <= set(data["recommended"])
    confirmed = sum("confirm_of" in t.user_attrs for t in study.trials)
    assert confirmed >= 2 and data["confirmation"] == {"runs": confirmed, "why_none": None}
    trials = study.trials
    pick, ref = recommend.recommend_group(trials), recommend.reference_group(trials)
    assert data["recommended"]["trial"] == recommend.recommend(trials).number == pick.origin.number
    for got, group in ((data["recommended"], pick), (data["best_reference"], ref)):
        values = [t.user_attrs["bits_per_dim"] for t in group.runs]
        assert got["seeds"] == [0, 1, 2] and got["runs"] == [t.number for t in group.runs]
        assert got["bits_per_dim"]["mean"] == pytest.approx(statistics.fmean(values))
        assert got["bits_per_dim"]["sd"] == pytest.approx(statistics.stdev(values))
        assert got["config"] == trial_record.config(group.origin)
    assert data["best_reference"]["label"] == ref.origin.user_attrs["reference"]
    # Paired over the same three seeds: the mean gap is the difference of the means.
    assert data["gap"]["seeds"] == 3
    assert data["gap"]["mean"] == pytest.approx(data["best_reference"]["bits_per_dim"]["mean"]
                                                - data["recommended"]["bits_per_dim"]["mean"])
    assert data["baseline"] == {"trial": 0, "fate": "posterior collapse (0 active units)",
                                "bits_per_dim": trials[0].user_attrs["bits_per_dim"],
                                "active_units": 0}


def test_a_second_report_replaces_the_artifact_and_the_notes_say_the_answer(study_run,
                                                                            capsys):
    tmp, url, study = study_run
    for _ in range(2):
        sweep_cli(capsys, "report", "--storage", url, "--study", "s", "--out",
                  str(tmp / "rep"))
    study = optuna.load_study(study_name="s", storage=url)
    assert [m.filename for m in get_all_artifact_meta(study)] == ["report-s.html"]
    page = (tmp / "rep" / "report.html").read_text()
    assert "<h2 id=seeds>" in page and "<h2 id=anytime>" in page
    pick = answer.summary(study)["recommended"]["trial"]
    assert f"Recommended: trial {pick} " in get_note(study)
    assert ("Gap (reference minus pick)" in get_note(study)
            or "The pick is the best reference itself" in get_note(study))
    assert get_note(optuna.Trial(study, optuna_private.trial_id(study.trials[pick]))).startswith(
        "## Recommended")
