"""``python -m sweep report``: one self-contained HTML page (images embedded) that answers
the study's question, plus its PNGs, uploaded as a study artifact for optuna-dashboard.

Sections (each an ``<h2 id=...>``, see ``SECTIONS``): the answer (the baseline's fate beside
the recommended trial, ``sweep.answer.recommend``, with both configs), the pick and the best
reference over seeds (mean ± SD, the gap, the test split), the anytime curve
(``sweep.answer.anytime``), the seed, each reference fix
and the pick on the yardstick (and on held-out data with ``--test-data``), the
rate-distortion plane, the collapse table, parameter importance per objective, per-epoch
curves, and reconstructions and samples of the recommended trial beside the baseline's.
"""

from __future__ import annotations

import base64
import html
import math
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import download_artifact, get_all_artifact_meta, upload_artifact
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from models.config import Config
from sweep.answer import anytime
from sweep.answer import recommend as rec_rule
from sweep.answer import summary as answer_data
from sweep.answer.figures import Point, importance_chart, rd_front, rd_plane
from sweep.answer.heldout import seeds_html
from sweep.answer.status import front as status_front
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
BINS = 3  # bins of a searched numeric range in the collapse table


@dataclass
class Roles:
    """The trials the report is about."""

    recommended: FrozenTrial | None
    baseline: FrozenTrial | None
    references: list[FrozenTrial]
    front: list[FrozenTrial]
    heldout: dict[int, dict[str, Any]] = field(default_factory=dict)  # by trial number
    sources: dict[int, str] = field(default_factory=dict)  # where each held-out model came from

    def label(self, t: FrozenTrial) -> str:
        if self.recommended is not None and t.number == self.recommended.number:
            return "recommended"
        if self.baseline is not None and t.number == self.baseline.number:
            return "baseline"
        ref = t.user_attrs.get("reference")
        return trial_record.short_label(ref) if ref else ""


def roles(study: optuna.Study) -> Roles:
    trials = study.get_trials(deepcopy=False)
    if len(study.directions) > 1:
        front = sorted(study.best_trials, key=lambda t: t.user_attrs.get("neg_elbo", math.inf))
    else:
        front = status_front(study)
    return Roles(rec_rule.recommend(trials, rec_rule.of_study(study)), rec_rule.baseline(trials),
                 rec_rule.references(trials), front)


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


def collapse_table(trials: Sequence[FrozenTrial]) -> list[tuple[str, str, int, int]]:
    """(param, value or range, collapsed trials, trials) for every searched param and value,
    over the trials that reached an epoch (a conditional param: those that had it)."""
    ran = [t for t in trials if rec_rule.reached_an_epoch(t)]
    dists: dict[str, Any] = {}
    for t in ran:
        for name, dist in t.distributions.items():
            dists.setdefault(name, dist)
    rows = []
    for name, dist in dists.items():
        for label, holds in _bins(dist):
            having = [t for t in ran if name in t.params and holds(t.params[name])]
            rows.append((name, label, sum(rec_rule.collapsed(t) for t in having), len(having)))
    return rows


def _bins(dist: Any) -> list[tuple[str, Callable[[Any], bool]]]:
    if isinstance(dist, CategoricalDistribution):
        return [(str(c), _equals(c)) for c in dist.choices]
    assert isinstance(dist, (FloatDistribution, IntDistribution))
    lo, hi = float(dist.low), float(dist.high)
    if dist.log:
        edges = [lo * (hi / lo) ** (i / BINS) for i in range(BINS + 1)]
    else:
        edges = [lo + (hi - lo) * i / BINS for i in range(BINS + 1)]
    out: list[tuple[str, Callable[[Any], bool]]] = []
    for i in range(BINS):
        a, b, last = edges[i], edges[i + 1], i == BINS - 1
        out.append((f"[{a:.3g}, {b:.3g}{']' if last else ')'}", _within(a, b, last)))
    return out


def _equals(choice: Any) -> Callable[[Any], bool]:
    return lambda v: bool(v == choice)


def _within(a: float, b: float, closed: bool) -> Callable[[Any], bool]:
    return lambda v: bool(a <= v < b or (closed and v == b))


def importances(study: optuna.Study) -> dict[str, dict[str, float]] | str:
    """fANOVA importance of each searched param per objective, or why there is none."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.params]
    if len(done) < 2:
        return (f"Parameter importance needs at least 2 complete trials with searched params; "
                f"this study has {len(done)}.")
    names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    out = {}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, name in enumerate(names):
                out[name] = optuna.importance.get_param_importances(study, target=_value(i))
    except (RuntimeError, ValueError) as err:
        return f"Optuna could not compute parameter importance: {err}"
    finally:
        optuna.logging.set_verbosity(verbosity)
    if not any(out.values()):
        return "No param varied across the complete trials: nothing to attribute."
    return out


def _value(i: int) -> Callable[[FrozenTrial], float]:
    return lambda t: float(t.values[i])


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]],
           bold: Callable[[int], bool] = lambda i: False) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        f"<tr{' class=hi' if bold(i) else ''}>"
        + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>"
        for i, r in enumerate(rows))
    return f"<table><tr>{head}</tr>{body}</table>"


def _metrics(t: FrozenTrial | None, key: str, unit: str) -> str:
    if t is None:
        return ""
    a = t.user_attrs
    return (f"{_fmt(a.get(key))} {unit} (neg_elbo {_fmt(a.get('neg_elbo'))} "
            f"nats), mse {_fmt(a.get('mse'))}, rate {_fmt(a.get('rate'))} nats, "
            f"{_fmt(a.get('active_units'))} active units")


def answer(study: optuna.Study, who: Roles, key: str, unit: str) -> str:
    """The paragraph and the two configs, as HTML (``key``, ``unit``: the yardstick's,
    ``sweep.answer.yardstick``)."""
    base, best = who.baseline, who.recommended
    parts = []
    if base is not None:
        parts.append(f"The seed configuration (trial {base.number}) "
                     f"<b>{html.escape(rec_rule.fate(base))}</b> after "
                     f"{len(trial_record.history(base))} epoch(s): "
                     f"{_metrics(base, key, unit)}.")
    else:
        parts.append("This study has no baseline trial (it was started with --no-baseline).")
    if best is not None:
        n_ok = sum(rec_rule.is_candidate(t) for t in study.get_trials(deepcopy=False))
        gain = ""
        if base is not None and isinstance(base.user_attrs.get(key), float):
            delta = base.user_attrs[key] - best.user_attrs[key]
            gain = f", {delta:.3g} {unit} below the seed"
        ref = best.user_attrs.get("reference")
        which = f" (the reference {html.escape(ref)})" if ref else ""
        parts.append(f"Take <b>trial {best.number}</b>{which}: "
                     f"the {rec_rule.rule_words(rec_rule.of_study(study), unit)} among the "
                     f"{n_ok} complete trials "
                     f"that kept active units, {_metrics(best, key, unit)}{gain}. "
                     f"<code>python -m sweep export --study {html.escape(study.study_name)} "
                     f"--trial {best.number} --out DIR</code> writes its config and weights.")
    else:
        parts.append("No complete trial kept an active unit: nothing to recommend yet.")
    held = [(name, who.heldout[t.number]) for name, t in (("recommended", best),
                                                          ("baseline", base))
            if t is not None and t.number in who.heldout]
    if held:
        parts.append("On the held-out split: " + "; ".join(
            f"{name} {_fmt(h.get(key))} {unit}, mse {_fmt(h.get('mse'))}, "
            f"{_fmt(h.get('active_units'))} active units" for name, h in held) + ".")
    text = "<p>" + " ".join(parts) + "</p>"
    shown = [(f"{name} (trial {t.number})", rec_rule.trial_config(t).to_dict())
             for name, t in (("baseline", base), ("recommended", best))
             if t is not None and trial_record.config(t) is not None]
    if shown:
        seed = Config().to_dict()
        rows = [[k, seed[k], *(c[k] for _, c in shown)] for k in seed]
        text += ("<p>Every field of both configs (rows where they differ from the seed in "
                 "bold):</p>" + _table(["field", "seed default", *(n for n, _ in shown)], rows,
                                       bold=lambda i: any(c[rows[i][0]] != seed[rows[i][0]]
                                                          for _, c in shown)))
    return text


def yardstick(study: optuna.Study, who: Roles, key: str, unit: str) -> str:
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
        return "<p>No baseline, reference or complete trial yet.</p>"
    note = (f"<p>Yardstick: neg_elbo (nats per image) and {unit} on the validation split "
            "every trial was scored on" + (", and on the held-out split of --test-data, "
                                           "which no trial saw" if who.heldout else "")
            + ". Lower is better.</p>")
    return note + _table(header, rows, bold=lambda i: rows_t[i][1] is who.recommended)


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


CSS = """body{font-family:system-ui,sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}tr.hi{font-weight:bold;
background:#fff6d5}img{max-width:100%}code{background:#f3f3f3;padding:0 3px}
.pair{display:flex;gap:1.5em;flex-wrap:wrap}.pair>div{flex:1;min-width:420px}"""


def build(study: optuna.Study, storage: optuna.storages.BaseStorage, store: ArtifactStore,
          out: Path, who: Roles | None = None) -> Path:
    """Write ``out/report.html`` and its PNGs; returns the HTML's path."""
    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    who = who or roles(study)
    data = answer_data.summary(study)
    key, unit = data["yardstick"]["key"], data["yardstick"]["unit"]
    said = "".join(f"<p>{html.escape(line)}</p>" for line in answer_data.lines(data))
    body: dict[str, str] = {"answer": said + answer(study, who, key, unit),
                            "seeds": seeds_html(data, _table),
                            "yardstick": yardstick(study, who, key, unit)}
    timeline = anytime.curve(trials)
    anytime.chart(timeline, out / "anytime.png")
    body["anytime"] = (f"<p>{html.escape(anytime.sentence(timeline))} Dashed: each "
                       "reference's level; confirmation runs are left out.</p>"
                       + _img(out / "anytime.png", "best so far against time"))

    pts = points(trials, who)
    rd_plane(pts, rd_front([p for p in pts if not p.stopped]), out / "rate_distortion.png")
    body["rate-distortion"] = (
        "<p>Each trial at its last validated epoch; collapsed and pruned trials (X) where they "
        "stopped. The dashed line is the front of the complete trials.</p>"
        + _img(out / "rate_distortion.png", "rate-distortion plane"))

    rows = collapse_table(trials)
    ran = [t for t in trials if rec_rule.reached_an_epoch(t)]
    n_collapsed = sum(rec_rule.collapsed(t) for t in ran)
    body["collapse"] = (
        f"<p>{n_collapsed} of the {len(ran)} trials that reached an epoch collapsed (no active "
        "unit at their last epoch). Per searched param and value (a conditional param counts "
        "the trials that had it):</p>"
        + _table(["param", "value", "collapsed / trials", "share"],
                 [[p, v, f"{c}/{n}", f"{c / n:.0%}" if n else "-"] for p, v, c, n in rows],
                 bold=lambda i: rows[i][3] > 0 and rows[i][2] / rows[i][3] >= 0.5))

    imps = importances(study)
    if isinstance(imps, str):
        body["importance"] = f"<p>{html.escape(imps)}</p>"
    else:
        importance_chart(imps, out / "importance.png")
        body["importance"] = ("<p>Share of each objective's variance explained by each "
                              "searched param (Optuna's fANOVA evaluator, complete trials).</p>"
                              + _img(out / "importance.png", "parameter importance"))

    series = [t for t in (who.recommended, who.baseline) if t is not None]
    series += [t for t in who.front[:MAX_FRONT_CURVES] if t not in series]
    if series:
        curves_chart([(f"#{t.number} {who.label(t) or 'front'}", trial_record.history(t))
                      for t in series], "validation metrics per epoch",
                     out / "curves.png")
        body["curves"] = ("<p>The recommended trial, the baseline and the front (thick: the "
                          "first two).</p>" + _img(out / "curves.png", "per-epoch curves"))
    else:
        body["curves"] = "<p>No trial has reached an epoch yet.</p>"

    cells = []
    for role, t in (("recommended", who.recommended), ("baseline", who.baseline)):
        if t is None:
            continue
        imgs = []
        for name in ("reconstructions.png", "samples.png"):
            dest = out / f"{role}_{name}"
            if _trial_image(t, name, storage, store, dest):
                imgs.append(_img(dest, f"{role} {name}"))
            else:
                imgs.append(f"<p>trial {t.number} has no {name} artifact.</p>")
        cells.append(f"<div><h3>{role}: trial {t.number}</h3>{''.join(imgs)}</div>")
    body["images"] = f"<div class=pair>{''.join(cells)}</div>" if cells else "<p>-</p>"

    page = (f"<!doctype html><html><head><meta charset=utf-8><title>vae-sweep report: "
            f"{html.escape(study.study_name)}</title><style>{CSS}</style></head><body>"
            f"<h1>Study {html.escape(study.study_name)}</h1><p>{len(trials)} trials: "
            + ", ".join(f"{sum(t.state == s for t in trials)} {s.name.lower()}"
                        for s in TrialState if any(t.state == s for t in trials))
            + "</p>"
            + "".join(f"<h2 id={key}>{title}</h2>{body[key]}" for key, title in SECTIONS.items())
            + "</body></html>")
    path = out / "report.html"
    path.write_text(page)
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
