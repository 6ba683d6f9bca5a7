"""The report on a hand-made study in memory: every section, PNGs that decode, the collapse
table's counts equal to the study's, importance per objective (or why there is none)."""

from __future__ import annotations

import io
import json
import math
import re

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial
from PIL import Image

from models.config import Config
from sweep import optuna_private
from sweep.answer import collapse, report
from sweep.answer.importance import importances
from sweep.storage import trial_record

DISTS = {"kl_schedule": CategoricalDistribution(["constant", "linear", "cyclical"]),
         "lr": FloatDistribution(1e-4, 1e-2, log=True)}
# (state, kl_schedule, lr, active units, mse, rate, attrs); the first collapses at epoch 1.
ROWS = [
    (TrialState.PRUNED, "constant", 1e-3, 0, 0.060, 0.01, {"baseline": True}),
    (TrialState.COMPLETE, "linear", 1e-3, 40, 0.020, 30.0, {"reference": "KL warm-up, x (B)"}),
    (TrialState.COMPLETE, "cyclical", 1e-3, 25, 0.025, 22.0, {"reference": "cyclical, y (F)"}),
    (TrialState.COMPLETE, "constant", 2e-4, 0, 0.061, 0.02, {}),
    (TrialState.COMPLETE, "linear", 5e-3, 60, 0.015, 45.0, {}),
    (TrialState.PRUNED, "cyclical", 8e-3, 10, 0.040, 9.0, {}),
    (TrialState.COMPLETE, "linear", 3e-4, 35, 0.018, 50.0, {}),
    (TrialState.FAIL, "constant", 9e-3, 0, 0.0, 0.0, {}),
]


def make_study(rows=ROWS, images: dict[int, str] | None = None,
               store: FileSystemArtifactStore | None = None) -> optuna.Study:
    """The study of ``rows``; trials named in ``images`` carry reconstruction and sample
    PNGs of that colour in ``store`` (attached as upload_artifact does: a finished trial's
    system attrs cannot change afterwards)."""
    study = optuna.create_study(study_name="hand", directions=["minimize", "minimize",
                                                               "maximize"])
    study.set_metric_names(["mse", "rate", "active_units"])
    for number, (state, schedule, lr, au, mse, rate, extra) in enumerate(rows):
        system = {}
        if images and number in images:
            assert store is not None
            for name in ("reconstructions.png", "samples.png"):
                artifact_id = f"{number}-{name}"
                buf = io.BytesIO()
                Image.new("RGB", (64, 32), images[number]).save(buf, format="PNG")
                buf.seek(0)
                store.write(artifact_id, buf)
                system[optuna_private.ARTIFACTS_ATTR_PREFIX + artifact_id] = json.dumps(
                    {"artifact_id": artifact_id, "filename": name, "mimetype": "image/png",
                     "encoding": None})
        ran = state != TrialState.FAIL
        history = [{"epoch": e, "step": 10 * (e + 1), "mse": mse * (1.2 - 0.1 * e),
                    "rate": rate, "active_units": au, "kl_weight": min(1.0, 0.5 * (e + 1))}
                   for e in range(2 if state == TrialState.COMPLETE else 1)] if ran else []
        neg_elbo = 3072 * 0.5 * (1 + math.log(2 * 3.14159 * mse)) + rate \
            if ran else None
        system.update(trial_record.system_attrs(
            config=Config(kl_schedule=schedule, lr=lr).to_dict(), history=history))
        attrs = {"active_units": au, "mse": mse, "rate": rate, "neg_elbo": neg_elbo,
                 "bits_per_dim": neg_elbo / (3072 * 0.693) + 8 if ran else None,
                 "collapsed": au == 0, **extra}
        if state == TrialState.PRUNED and au == 0:
            attrs["pruned_reason"] = "posterior collapse: 0 active units for 1 epoch(s)"
        study.add_trial(create_trial(
            state=state, values=[mse, rate, au] if state == TrialState.COMPLETE else None,
            params={"kl_schedule": schedule, "lr": lr}, distributions=DISTS, user_attrs=attrs,
            system_attrs=system))
    return study


@pytest.mark.slow
def test_the_report_has_every_section_and_decodable_pngs(tmp_path):
    store = FileSystemArtifactStore(str(tmp_path))
    study = make_study(images={0: "gray", 4: "red"}, store=store)  # the baseline and the pick
    path = report.build(study, optuna_private.study_storage(study), store, tmp_path / "out")
    text = path.read_text()
    for key in report.SECTIONS:
        assert f"<h2 id={key}>" in text, key
    assert "Take <b>trial 4</b>" in text and "posterior collapse" in text
    assert text.count("data:image/png;base64,") == 8  # anytime, plane, importance, curves, 4
    pngs = sorted((tmp_path / "out").glob("*.png"))
    assert {p.name for p in pngs} == {"rate_distortion.png", "importance.png", "curves.png",
                                      "anytime.png",
                                      "recommended_reconstructions.png",
                                      "recommended_samples.png", "baseline_reconstructions.png",
                                      "baseline_samples.png"}
    for p in pngs:
        with Image.open(p) as im:
            im.load()
            assert im.size[0] > 0 and im.size[1] > 0
    # The seed, both references and the pick side by side on the yardstick.
    yard = text.split("<h2 id=yardstick>")[1].split("<h2")[0]
    for needle in ("seed (baseline)", "KL warm-up, x (B)", "cyclical, y (F)", "recommended"):
        assert needle in yard


def test_the_collapse_table_counts_what_the_study_holds():
    study = make_study()
    rows = {(p, v): (c, n) for p, v, c, n in collapse.collapse_table(study.get_trials())}
    ran = [r for r in ROWS if r[0] != TrialState.FAIL]  # the failed trial never reached an epoch
    for schedule in ("constant", "linear", "cyclical"):
        having = [r for r in ran if r[1] == schedule]
        assert rows[("kl_schedule", schedule)] == (sum(r[3] == 0 for r in having), len(having))
    lr_rows = [(v, c, n) for (p, v), (c, n) in rows.items() if p == "lr"]
    assert len(lr_rows) == collapse.BINS and sum(n for _, _, n in lr_rows) == len(ran)
    assert sum(c for _, c, _ in lr_rows) == sum(r[3] == 0 for r in ran)
    assert re.fullmatch(r"\[0\.0001, 0\.000464\)", lr_rows[0][0])


def test_importance_per_objective_or_a_sentence_when_too_few_trials():
    imps = importances(make_study())
    assert isinstance(imps, dict) and list(imps) == ["mse", "rate", "active_units"]
    assert all(set(v) == {"kl_schedule", "lr"} for v in imps.values())
    few = importances(make_study(ROWS[:2]))
    assert isinstance(few, str) and "at least 2 complete trials" in few


@pytest.mark.parametrize("rows", [ROWS[:1], []], ids=["baseline only", "empty"])
def test_a_study_with_nothing_to_recommend_still_reports(tmp_path, rows):
    study = make_study(rows)
    text = report.build(study, optuna_private.study_storage(study),
                        FileSystemArtifactStore(str(tmp_path)), tmp_path / "out").read_text()
    assert "nothing to recommend yet" in text
    assert all(f"<h2 id={key}>" in text for key in report.SECTIONS)
