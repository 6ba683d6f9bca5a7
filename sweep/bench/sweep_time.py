"""The bench's view of the sweep around the trainer: real ``sweep start`` runs, timed.

- ``sweep_overhead``: two 1-epoch trials through ``sweep.start`` into a fresh SQLite study;
  the share of its wall time spent outside the trainer's fits (creating the study and its
  storage, loading the cached images, claiming and recording the trial, pictures and
  artifacts): what the sweep adds around the training a user's own script would also run.
  ``fit_s`` is the fit call (the epoch's training steps and its validation, as in any
  Lightning script); ``train_s`` the trainer's own clock (training batches only).
- ``trial_overhead``: the share of the second trial's own wall time (from the worker
  taking it to its result recorded: what each trial of a running worker pays after its
  first) that is not training steps: Lightning's setup, the validation of the split with
  every metric, the pictures and the storage writes (``first_trial_overhead``: the
  first's, which also splits and moves the images).
- ``time_to_answer``: the same trial budget on the same images run by the plain Optuna +
  Lightning script (``sweep.bench.user_script``: TPE over the default space, as a user would
  write it) and by ``sweep start``'s default search (the seed, the references, the focus
  window; its pruner on, then off); for each, the wall time until a finished, non-collapsed
  trial's neg_elbo (the yardstick, bits/dim up to a constant) is within ``margin`` of the
  best any of them found; and ``ratio_to_script_best``: the time until the search first
  matched the script's best trial over the time the script took to reach it (what the
  sweep saves a user who would have stopped at the script's answer; defined whenever the
  script found a non-collapsed trial, unlike the first ratio when only the sweep got within
  ``margin``). Those score single trials, each on its own seed; ``fresh_seeds`` scores
  the answers: each side's pick re-trained on seeds no trial used
  (``sweep.bench.fresh_seeds``).

Data are an ImageFolder both sides read: the user's folder itself, or the images written
as PNGs; a subset is a folder of symlinks to a fixed random choice of its files. The
project's decoded-image cache is filled before timing (what every run after the first sees).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torchvision
from optuna.trial import FixedTrial, FrozenTrial, TrialState

from models.config import Config
from models.data import load_images
from models.train import fit
from sweep.answer import recommend as rec_rule
from sweep.bench import user_script as baseline
from sweep.bench.fresh_seeds import Side, compare
from sweep.space import Space, fix, parse_space, suggest
from sweep.storage import trial_record

SUBSET_SEED = 0
STUDY = "bench"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def image_folder(cfg: Config, images: torch.Tensor, dest: Path) -> Path:
    """An ImageFolder holding ``cfg``'s images: its own folder, or ``images`` as PNGs."""
    if cfg.dataset.startswith("folder:"):
        return Path(os.path.expanduser(cfg.dataset[len("folder:"):]))
    return baseline.write_image_folder(images, dest)


def subset_folder(root: Path, n: int, dest: Path) -> Path:
    """``n`` of ``root``'s images (a fixed random choice; all when n is 0 or larger) as an
    ImageFolder of symlinks, so both sides of a comparison read the same files."""
    samples = torchvision.datasets.ImageFolder(str(root)).samples
    chosen = sorted(random.Random(SUBSET_SEED).sample(range(len(samples)), n)) \
        if 0 < n < len(samples) else range(len(samples))
    for i in chosen:
        path = Path(samples[i][0])
        link = dest / path.parent.name / path.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path.resolve())
    return dest


def run_start(dest: Path, root: Path, fixed: dict[str, Any], space: dict[str, Any],
              n_trials: int, baseline_trial: bool) -> tuple[float, list[FrozenTrial], float]:
    """``sweep.start`` into a fresh SQLite file: (wall seconds, trials, start time)."""
    import sweep

    dest.mkdir(parents=True)
    config = dest / "sweep.toml"
    config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in space.items()))
    fields = {**fixed, "dataset": f"folder:{root}"}
    load_images(Config.from_dict(fields))  # fill the decode cache before the clock starts
    started = time.time()
    done = sweep.start(config, study_name=STUDY, storage=f"sqlite:///{dest / 'study.db'}",
                       n_trials=n_trials, fixed=fields, baseline=baseline_trial,
                       options=sweep.RunOptions(threads=torch.get_num_threads()))
    wall = time.time() - started
    return wall, done.study.get_trials(deepcopy=False), started


def _outside_steps(trial: FrozenTrial, batch_size: int) -> tuple[float, float, float]:
    """(the trial's wall seconds, from taken to recorded; its training steps' seconds;
    the share of the first outside the second)."""
    attrs = trial.user_attrs
    train_s = attrs["steps"] * batch_size / attrs["images_per_sec"]
    assert trial.datetime_start is not None and trial.datetime_complete is not None
    trial_s = (trial.datetime_complete - trial.datetime_start).total_seconds()
    return trial_s, train_s, 1 - train_s / trial_s


def sweep_overhead(cfg: Config, root: Path, dest: Path, device: torch.device) -> dict[str, Any]:
    """Two 1-epoch trials through ``sweep start`` (the seed configuration, then the first
    reference): ``trial_overhead`` is the second's, as every trial of a running worker
    after its first pays it; ``first_trial_overhead`` the first's."""
    say("sweep_overhead: two 1-epoch trials through sweep start")
    fixed = {"batch_size": cfg.batch_size, "max_epochs": 1}
    wall, trials, _ = run_start(dest, root, fixed, {}, n_trials=2, baseline_trial=True)
    fit_s = sum(t.user_attrs["wall_time_s"] for t in trials)
    first_s, _, first = _outside_steps(trials[0], cfg.batch_size)
    trial_s, train_s, share = _outside_steps(trials[-1], cfg.batch_size)
    out = {"fraction": round(1 - fit_s / wall, 4), "trial_overhead": round(share, 4),
           "first_trial_overhead": round(first, 4), "wall_s": round(wall, 2),
           "fit_s": round(fit_s, 2), "trial_s": round(trial_s, 2),
           "first_trial_s": round(first_s, 2), "train_s": round(train_s, 2),
           "steps": trials[-1].user_attrs["steps"], "device": str(device)}
    say(f"sweep_overhead: {out['fraction']:.1%} of {wall:.1f} s outside the {fit_s:.1f} s of "
        f"fits; trial_overhead: {share:.1%} of the second {trial_s:.1f} s trial outside its "
        f"{train_s:.1f} s of training steps (the first: {first:.1%})")
    return out


def _answers(trials: list[FrozenTrial], values: dict[int, tuple[float, float]], started: float
             ) -> list[tuple[float, float]]:
    """(seconds since start, neg_elbo) of each finished, non-collapsed trial."""
    out = []
    for t in trials:
        neg_elbo, active = values.get(t.number, (float("nan"), 0.0))
        if t.state == TrialState.COMPLETE and active > 0 and neg_elbo == neg_elbo \
                and t.datetime_complete is not None:
            done = t.datetime_complete.timestamp() - started
            out.append((done, neg_elbo))
    return sorted(out)


def _first_within(answers: list[tuple[float, float]], threshold: float) -> float | None:
    return next((round(s, 2) for s, v in answers if v <= threshold), None)


def time_to_answer(cfg: Config, root: Path, n_trials: int, epochs: int, margin: float,
                   workers: int, dest: Path, device: torch.device,
                   fresh_seeds: int = 0, pruner_off: bool = True) -> dict[str, Any]:
    """The same budget by the script and by ``sweep start``'s default search (its pruner
    on, then, with ``pruner_off``, off); with ``fresh_seeds``, each side's pick re-trained
    on that many unused seeds (``sweep.bench.fresh_seeds``, under ``fresh_seeds``)."""
    fixed = {"batch_size": cfg.batch_size, "max_epochs": epochs, "seed": cfg.seed}
    # The script searches the default space as written, with plain TPE.
    space = fix(parse_space({"objectives": ["neg_elbo"], "strategy": "tpe"}),
                {**fixed, "dataset": f"folder:{root}"})
    accelerator = "cuda" if device.type == "cuda" else "cpu"
    say(f"time_to_answer: baseline script, {n_trials} trials of {epochs} epoch(s)")
    started = time.time()
    script = baseline.run_study(space, root, n_trials, workers, accelerator)
    runs: dict[str, tuple[float, list[FrozenTrial], float, dict[int, tuple[float, float]]]] = {
        "baseline": (time.time() - started, script.trials, started,
                     {t.number: (t.value if t.value is not None else float("nan"),
                                 t.user_attrs.get("active_units", 0))
                      for t in script.trials})}
    # An empty sweep file is the default search; ``{"pruner": "none"}`` only turns its
    # pruner off.
    searches: list[tuple[str, dict[str, Any]]] = [("project", {})]
    if pruner_off:
        searches.append(("project_no_pruning", {"pruner": "none"}))
    for name, sweep_file in searches:
        say(f"time_to_answer: sweep start, the default search"
            f"{', pruner none' if sweep_file else ''}")
        wall, trials, begun = run_start(dest / name, root, fixed, sweep_file, n_trials,
                                        baseline_trial=True)
        runs[name] = (wall, trials, begun,
                      {t.number: (t.user_attrs.get("neg_elbo", float("nan")),
                                  t.user_attrs.get("active_units", 0)) for t in trials})
    answers = {name: _answers(trials, values, begun)
               for name, (_, trials, begun, values) in runs.items()}
    found = [v for a in answers.values() for _, v in a]
    best = min(found) if found else None  # None: every trial collapsed or failed
    threshold = best + margin * abs(best) if best is not None else float("-inf")
    out: dict[str, Any] = {"margin": margin, "best_neg_elbo": best,
                           "threshold": threshold if best is not None else None,
                           "trials": n_trials,
                           "epochs": epochs, "images": _image_count(root),
                           "search": "the default (project), the default with no pruner "
                                     "(project_no_pruning); the script: TPE over the default "
                                     "space"}
    for name, (wall, trials, _, _) in runs.items():
        key = "baseline" if name == "baseline" else name
        out[f"{key}_s"] = _first_within(answers[name], threshold)
        out[f"{key}_wall_s"] = round(wall, 2)
        out[f"{key}_pruned"] = sum(t.state == TrialState.PRUNED for t in trials)
    out.update(to_script_best(answers["baseline"], answers["project"]))
    if fresh_seeds:
        out["fresh_seeds"] = _fresh(runs, space, fresh_seeds, accelerator)
    b = out["baseline_s"]
    for name, key in (("project", "ratio"), ("project_no_pruning", "ratio_no_pruning")):
        if name not in runs:
            continue
        p = out[f"{name}_s"]
        out[key] = round(p / b, 3) if p is not None and b else None
        if p is not None and b is None:  # the script never got there: its whole wall bounds it
            out[f"{key}_at_most"] = round(p / out["baseline_wall_s"], 3)
    say(f"time_to_answer: baseline {out['baseline_s']} s, project {out['project_s']} s "
        f"(no pruning {out.get('project_no_pruning_s', '-')} s), ratio {out['ratio']}; to the "
        f"script's best: ratio {out.get('ratio_to_script_best')}")
    return out


def _fresh(runs: dict[str, tuple[float, list[FrozenTrial], float, Any]], space: Space,
           r: int, accelerator: str) -> dict[str, Any]:
    """Each side's pick re-trained on ``r`` seeds none of the studies used."""
    def script_config(t: FrozenTrial) -> Config:
        return suggest(FixedTrial(t.params), space)

    def sweep_config(t: FrozenTrial) -> Config | None:
        stored = trial_record.config(t)
        return None if stored is None else Config.from_dict(stored)

    def train(c: Config) -> dict[str, Any]:
        say(f"time_to_answer: re-training a pick on seed {c.seed}")
        return fit(c, accelerator=accelerator).metrics

    sides = {}
    for name, (_, trials, begun, _) in runs.items():
        if name == "baseline":
            sides[name] = Side(script_pick(trials), trials, script_config, begun)
        else:
            sides[name] = Side(rec_rule.recommend(trials), trials, sweep_config, begun)
    used = {c.seed for side in sides.values() for t in side.trials
            if (c := side.config_of(t)) is not None}
    out = compare(sides, used, r, train)
    say(f"time_to_answer: on fresh seeds {out['seeds']}: " + ", ".join(
        f"{name} {v['mean']:.1f} nats at {v['s']} s" for name in sides
        if (v := out[name]) is not None))
    return out


def script_pick(trials: list[FrozenTrial]) -> FrozenTrial | None:
    """The script's answer: its best COMPLETE trial that kept an active unit."""
    ok = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
          and t.value == t.value and t.user_attrs.get("active_units", 0) > 0]
    return min(ok, key=lambda t: (t.value, t.number)) if ok else None


def to_script_best(script: list[tuple[float, float]], project: list[tuple[float, float]]
                   ) -> dict[str, Any]:
    """When each side first matched the script's best neg_elbo (``_answers``' (seconds,
    neg_elbo) lists), and the project's time over the script's; nothing when the script
    found no trial that kept a code."""
    if not script:
        return {}
    best = min(v for _, v in script)
    p, b = _first_within(project, best), _first_within(script, best)
    return {"script_best_neg_elbo": best, "baseline_s_to_script_best": b,
            "project_s_to_script_best": p,
            "ratio_to_script_best": round(p / b, 3) if p is not None and b else None}


def _image_count(root: Path) -> int:
    return len(torchvision.datasets.ImageFolder(str(root)).samples)

