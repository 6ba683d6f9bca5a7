"""``python -m sweep report``: one self-contained HTML page (images embedded) that answers
the study's question, plus its PNGs, uploaded as a study artifact for optuna-dashboard.

Sections (each an ``<h2 id=...>``, see ``SECTIONS``): the answer (the baseline's fate beside
the recommended trial, ``sweep.answer.recommend``, with both configs), the pick and the best
reference over seeds (mean ± SD, the gap, the test split), the anytime curve
(``sweep.answer.anytime``), the seed, each reference fix
and the pick on the yardstick (and on held-out data with ``--test-data``), the
rate-distortion plane, the collapse table, parameter importance per objective, per-epoch
curves, and reconstructions and samples of the recommended trial beside the baseline's.
``build`` gathers each section's data; the page is ``templates/report.html`` (Jinja2).
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import optuna
from optuna.artifacts import download_artifact, get_all_artifact_meta, upload_artifact
from optuna.trial import FrozenTrial, TrialState

from models.config import Config
from sweep.answer import anytime, heldout
from sweep.answer import recommend as rec_rule
from sweep.answer import summary as answer_data
from sweep.answer.collapse import collapse_table
from sweep.answer.figures import Point, importance_chart, rd_front, rd_plane
from sweep.answer.importance import importances
from sweep.answer.roles import Roles, roles
from sweep.answer.trial_artifacts import curves_chart
from sweep.optuna_private import ArtifactStore
from sweep.storage import trial_record
from sweep.storage.names import portable_name

SECTIONS = {"answer": "The answer", "seeds": "Over seeds: the pick and the best reference",
            "anytime": "Best so far against time",
            "yardstick": "The seed, the fixes and the pick",
            "rate-distortion": "Rate-distortion plane", "collapse": "Which settings collapse",
            "importance": "Parameter importance", "curves": "Per-epoch curves",
            "images": "Reconstructions and samples"}
MAX_FRONT_CURVES = 8


def points(trials: Sequence[FrozenTrial], who: Roles) -> list[Point]:
    """Every trial that reached an epoch, at its last epoch."""
    out = []
    for t in trials:
        history = trial_record.history(t)
        if not history:
            continue
        last = history[-1]
        stopped = t.state != TrialState.COMPLETE or rec_rule.collapsed(t)
        out.append(Point(t.number, float(last["rate"]), float(last["mse"]),
                         int(last["active_units"]), stopped, who.label(t)))
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


@dataclass
class Table:
    """A table as the page shows it: its cells as text, and which rows are in bold."""

    header: list[str]
    rows: list[list[str]]
    bold: list[bool]


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]],
           bold: Callable[[int], bool] = lambda i: False) -> Table:
    return Table(list(header), [[_fmt(c) for c in r] for r in rows],
                 [bold(i) for i in range(len(rows))])


def _png(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


# The page's template (sweep/answer/templates/report.html, package data), autoescaped.
PAGE = jinja2.Environment(loader=jinja2.PackageLoader("sweep.answer"), autoescape=True,
                          trim_blocks=True, lstrip_blocks=True,
                          undefined=jinja2.StrictUndefined)
PAGE.filters["png"] = _png


def _metrics(t: FrozenTrial | None, key: str, unit: str) -> str:
    if t is None:
        return ""
    a = t.user_attrs
    return (f"{_fmt(a.get(key))} {unit} (neg_elbo {_fmt(a.get('neg_elbo'))} "
            f"nats), mse {_fmt(a.get('mse'))}, rate {_fmt(a.get('rate'))} nats, "
            f"{_fmt(a.get('active_units'))} active units")


def answer(study: optuna.Study, who: Roles, key: str, unit: str) -> dict[str, Any]:
    """The paragraph and the two configs, for the page (``key``, ``unit``: the yardstick's,
    ``sweep.answer.yardstick``)."""
    base, best = who.baseline, who.recommended
    text: dict[str, Any] = {"unit": unit, "study": study.study_name, "base": None,
                            "best": None, "configs": None}
    if base is not None:
        text["base"] = {"number": base.number, "fate": rec_rule.fate(base),
                        "epochs": len(trial_record.history(base)),
                        "metrics": _metrics(base, key, unit)}
    if best is not None:
        gain = None
        if base is not None and isinstance(base.user_attrs.get(key), float):
            gain = f"{base.user_attrs[key] - best.user_attrs[key]:.3g}"
        text["best"] = {
            "number": best.number, "reference": best.user_attrs.get("reference"),
            "n_ok": sum(rec_rule.is_candidate(t) for t in study.get_trials(deepcopy=False)),
            "metrics": _metrics(best, key, unit), "gain": gain,
            "rule": rec_rule.rule_words(rec_rule.of_study(study), unit)}
    held = [(name, who.heldout[t.number]) for name, t in (("recommended", best),
                                                          ("baseline", base))
            if t is not None and t.number in who.heldout]
    text["held"] = [f"{name} {_fmt(h.get(key))} {unit}, mse {_fmt(h.get('mse'))}, "
                    f"{_fmt(h.get('active_units'))} active units" for name, h in held]
    shown = [(f"{name} (trial {t.number})", rec_rule.trial_config(t).to_dict())
             for name, t in (("baseline", base), ("recommended", best))
             if t is not None and trial_record.config(t) is not None]
    if shown:
        seed = Config().to_dict()
        rows = [[k, seed[k], *(c[k] for _, c in shown)] for k in seed]
        text["configs"] = _table(["field", "seed default", *(n for n, _ in shown)], rows,
                                 bold=lambda i: any(c[rows[i][0]] != seed[rows[i][0]]
                                                    for _, c in shown))
    return text


def yardstick(study: optuna.Study, who: Roles, key: str, unit: str) -> dict[str, Any] | None:
    """The seed, each reference, the pick and the best searched trial on one table."""
    trials = study.get_trials(deepcopy=False)
    searched = [t for t in trials if rec_rule.is_candidate(t) and not t.user_attrs.get("baseline")
                and not t.user_attrs.get("reference")]
    best_searched = rec_rule.recommend(searched)
    rows_t: list[tuple[str, FrozenTrial]] = []
    if who.baseline is not None:
        rows_t.append(("seed (baseline)", who.baseline))
    rows_t += [(t.user_attrs["reference"], t) for t in who.references]
    if who.recommended is not None:
        rows_t.append(("the sweep's pick (recommended)", who.recommended))
    if best_searched is not None and (who.recommended is None
                                      or best_searched.number != who.recommended.number):
        rows_t.append(("best trial the sampler proposed", best_searched))
    keys = (key, "neg_elbo", "mse", "rate", "active_units")
    header = ["trial", "role", "fate", "epochs", *keys]
    if who.heldout:
        header += [f"held-out {unit}", "held-out mse", "held-out active units", "model"]
    rows = []
    for role, t in rows_t:
        row = [t.number, role, rec_rule.fate(t), len(trial_record.history(t)),
               *(t.user_attrs.get(k) for k in keys)]
        if who.heldout:
            h = who.heldout.get(t.number, {})
            row += [h.get(key), h.get("mse"), h.get("active_units"),
                    who.sources.get(t.number)]
        rows.append(row)
    if not rows:
        return None
    return {"unit": unit, "heldout": bool(who.heldout),
            "table": _table(header, rows, bold=lambda i: rows_t[i][1] is who.recommended)}


def _trial_image(t: FrozenTrial, name: str, storage: optuna.storages.BaseStorage,
                 store: ArtifactStore, dest: Path) -> bool:
    metas = [m for m in get_all_artifact_meta(t, storage=storage) if m.filename == name]
    if not metas:
        return False
    try:
        download_artifact(artifact_store=store, artifact_id=metas[-1].artifact_id,
                          file_path=str(dest))
    except Exception:  # a store that lost a file: the page says so
        return False
    return True


def build(study: optuna.Study, storage: optuna.storages.BaseStorage, store: ArtifactStore,
          out: Path, who: Roles | None = None) -> Path:
    """Write ``out/report.html`` and its PNGs; returns the HTML's path."""
    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    who = who or roles(study)
    data = answer_data.summary(study)
    key, unit = data["yardstick"]["key"], data["yardstick"]["unit"]
    seeds = heldout.seeds(data)
    page: dict[str, Any] = {
        "name": study.study_name, "sections": SECTIONS, "n_trials": len(trials),
        "counts": [f"{sum(t.state == s for t in trials)} {s.name.lower()}"
                   for s in TrialState if any(t.state == s for t in trials)],
        "answer_": {**answer(study, who, key, unit), "said": answer_data.lines(data)},
        "seeds_": seeds and {**seeds, "table": _table(seeds["header"], seeds["rows"],
                                                      bold=lambda i: i == 0)},
        "yardstick_": yardstick(study, who, key, unit)}
    timeline = anytime.curve(trials)
    anytime.chart(timeline, out / "anytime.png")
    page["anytime"] = {"sentence": anytime.sentence(timeline), "png": out / "anytime.png"}

    pts = points(trials, who)
    page["rd_png"] = out / "rate_distortion.png"
    rd_plane(pts, rd_front([p for p in pts if not p.stopped]), page["rd_png"])

    rows = collapse_table(trials)
    ran = [t for t in trials if rec_rule.reached_an_epoch(t)]
    page["collapse"] = {
        "collapsed": sum(rec_rule.collapsed(t) for t in ran), "ran": len(ran),
        "table": _table(["param", "value", "collapsed / trials", "share"],
                        [[p, v, f"{c}/{n}", f"{c / n:.0%}" if n else "-"] for p, v, c, n in rows],
                        bold=lambda i: rows[i][3] > 0 and rows[i][2] / rows[i][3] >= 0.5)}

    imps = importances(study)
    if isinstance(imps, str):
        page["importance"] = {"why": imps}
    else:
        importance_chart(imps, out / "importance.png")
        page["importance"] = {"why": None, "png": out / "importance.png"}

    series = [t for t in (who.recommended, who.baseline) if t is not None]
    series += [t for t in who.front[:MAX_FRONT_CURVES] if t not in series]
    page["curves_png"] = None
    if series:
        page["curves_png"] = out / "curves.png"
        curves_chart([(f"#{t.number} {who.label(t) or 'front'}", trial_record.history(t))
                      for t in series], "validation metrics per epoch", page["curves_png"])

    page["cells"] = []
    for role, t in (("recommended", who.recommended), ("baseline", who.baseline)):
        if t is None:
            continue
        images = []
        for name in ("reconstructions.png", "samples.png"):
            dest = out / f"{role}_{name}"
            images.append((name, dest if _trial_image(t, name, storage, store, dest) else None))
        page["cells"].append({"role": role, "number": t.number, "images": images})

    path = out / "report.html"
    path.write_text(PAGE.get_template("report.html").render(page))
    return path


def upload(study: optuna.Study, store: ArtifactStore, path: Path) -> str:
    """The report as a study artifact (optuna-dashboard's study page lists it). A report an
    earlier ``report`` uploaded is overwritten in place (same artifact id, same entry), so
    the study keeps one report, the latest."""
    name = portable_name(f"report-{study.study_name}.html")
    earlier = [m for m in get_all_artifact_meta(study) if m.filename == name]
    if earlier:
        with path.open("rb") as f:
            store.write(earlier[-1].artifact_id, f)
        return earlier[-1].artifact_id
    with tempfile.TemporaryDirectory() as tmp:
        named = Path(tmp) / name
        shutil.copy(path, named)
        return upload_artifact(artifact_store=store, file_path=str(named), study_or_trial=study)
