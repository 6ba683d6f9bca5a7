"""The search space of a sweep: which Config fields Optuna varies, which are fixed, and
which metrics it optimises; ``suggest`` is the only place the project calls trial.suggest_*.

A sweep is a TOML file (or DEFAULT_SPACE, the same structure as a parsed file)::

    objectives = ["bits_per_dim"]                  # optional: keys of METRICS (the default)
    pruner = "hyperband"                            # optional: one of PRUNERS (default:
                                                    # hyperband for one objective, else pareto)
    strategy = "focus"                              # optional: one of STRATEGIES (default:
                                                    # focus without [search], else tpe)
    confirm = 3                                     # optional: configs re-run over seeds
                                                    # (default: 3 with focus, else 0)
    [pruner]                                        # or, instead of that line, a table: the
    kind = "pareto"                                 # Pareto pruner's parameters (the fields
    min_trials = 5                                  # of sweep.pruning.ParetoRule)
    min_epochs = 2
    fraction = 0.5
    [fixed]                                         # optional: Config fields for every trial
    batch_size = 128
    [search.kl_weight]                              # one table per searched Config field
    low = 0.01                                      # int field: suggest_int, float: suggest_float
    high = 10.0
    log = true                                      # optional, as is step = ...
    [search.kl_schedule]
    choices = ["constant", "linear", "cyclical", "sigmoid"]
    [search.kl_cycles]
    low = 1
    high = 8
    when = { kl_schedule = ["cyclical"] }           # only suggested while an earlier value matches
    [search.model.channels]                         # a knob of the network (models.networks):
    choices = [16, 32, 64]                          # ranges, choices and when as above

The network is ``model = "conv"`` (a top-level string, or ``model`` in [fixed]) and its fixed
knobs a ``[model]`` table (or ``"model.NAME"`` keys in [fixed]); TOML cannot hold both a
``model`` string and a ``[model]`` table, so with fixed knobs name the network in [fixed] or
with ``--model``. Knobs are typed by their values (an int range suggests ints).

Without a [search] table (or with one that searches network knobs only) the file searches
DEFAULT_SPACE's parameters less its [fixed] fields, plus those knobs, with the "focus"
strategy (``sweep.runner.stages``): the baseline and the references screen the families,
then the sampler searches a window around the best reference (the knobs over their range).
``confirm`` is how many of the best configurations (and the best reference) are re-run with
more seeds (``sweep.runner.confirm``; 0 turns it off).
Everything is checked by ``parse_space`` before any trial runs: a bad file raises SpaceError,
one line that starts with the offending key.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.config import (
    CHOICES,
    KNOB,
    LEGACY_KNOBS,
    Config,
    ConfigError,
    coerce,
    field_types,
    is_knob,
)
from models.likelihoods import LIKELIHOODS
from sweep.errors import SpaceError
from sweep.pruning import ParetoRule

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pyproject installs tomli on Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:  # optuna is only needed at call time; the CLI imports this module early
    import optuna
    from optuna.trial import BaseTrial

# The trainer's scalar metrics (models.metrics) and the direction that makes a VAE better.
METRICS: dict[str, str] = {
    "mse": "minimize", "rate": "minimize", "neg_elbo": "minimize", "bits_per_dim": "minimize",
    "nats_per_dim": "minimize", "neg_elbo_own": "minimize", "bits_per_dim_own": "minimize",
    "active_units": "maximize", "mutual_info": "maximize"}
EIGHT_BIT_METRICS = ("bits_per_dim", "bits_per_dim_own")  # absent for continuous data

# The yardstick the answer is chosen by (sweep.answer.recommend): the sampler optimises just that,
# and collapse is a constraint (sweep.runner.objective), not an objective. Continuous (float)
# data has no 8-bit levels, so its default is the same yardstick in nats/dim (for_continuous).
DEFAULT_OBJECTIVES: tuple[str, ...] = ("bits_per_dim",)
CONTINUOUS_OBJECTIVES: tuple[str, ...] = ("nats_per_dim",)
# What start and train say when they leave the seed's sigmoid out for float data.
CONTINUOUS_ACTIVATION = ("float data: decoder_activation=none (a sigmoid would bound the "
                         "outputs to [0, 1]); set decoder_activation to choose")

# "focus": the sampler's trials search a window around the best reference (sweep.runner.stages);
# "tpe": the sampler searches the space as written.
STRATEGIES = ("focus", "tpe")
DEFAULT_CONFIRM = 3  # configurations re-run with more seeds at the end (sweep.runner.confirm)
EXTRA_SEEDS = 2  # seeds added to each confirmed configuration: 3 seeds in all

# "median" and "hyperband": Optuna's pruners, fed by per-epoch reports of a single objective
# (Optuna refuses reports from multi-objective studies). "pareto": sweep.pruning's rule, for
# any number of objectives, the default with several. The collapse stop runs in every study.
PRUNERS = ("median", "hyperband", "pareto", "none")
_SINGLE_ONLY = ("median", "hyperband")
_RULE_KEYS = tuple(f.name for f in dataclasses.fields(ParetoRule))

DEFAULT_SPACE: dict[str, Any] = {
    "objectives": list(DEFAULT_OBJECTIVES),
    "strategy": "focus",
    "search": {
        # A log range, not choices: the focus stage searches a window of it, and Optuna keeps a
        # categorical's choices fixed for the whole study.
        "latent_dim": {"low": 16, "high": 512, "log": True},
        # String fields search every value the config declares (CHOICES; the likelihoods
        # come from models.likelihoods' registry), so a new one is searched without an edit.
        "likelihood": {"choices": list(CHOICES["likelihood"])},
        "sigma_mode": {"choices": list(CHOICES["sigma_mode"]),
                       "when": {"likelihood": ["gaussian"]}},
        # PixelCNN++ used 10 logistics per sub-pixel; 5 is the default (the IAF paper's
        # single logistic is the likelihood discretized_logistic).
        "mixture_components": {"choices": [5, 10],
                               "when": {"likelihood": ["discretized_logistic_mixture"]}},
        "recon_reduction": {"choices": list(CHOICES["recon_reduction"])},
        "kl_reduction": {"choices": list(CHOICES["kl_reduction"])},
        "kl_schedule": {"choices": list(CHOICES["kl_schedule"])},
        "kl_weight": {"low": 0.01, "high": 10.0, "log": True},
        "kl_warmup_steps": {"low": 100, "high": 5000, "log": True,
                            "when": {"kl_schedule": ["linear", "sigmoid"]}},
        "kl_cycles": {"low": 1, "high": 8, "when": {"kl_schedule": ["cyclical"]}},
        "kl_ratio": {"low": 0.2, "high": 1.0, "when": {"kl_schedule": ["cyclical"]}},
        # 0 is a choice so that "no free bits" (the seed) stays reachable and comparable.
        "free_bits": {"choices": [0.0, 0.05, 0.1, 0.25, 0.5]},
        "lr": {"low": 1e-4, "high": 3e-3, "log": True},
    },
}

# Fields that choose the images and the validation split: every trial of a study must train
# and be scored on the same data, so they may be fixed but never searched.
DATA_FIELDS = ("dataset", "data_dir", "synthetic_size", "val_fraction")

_TOP_KEYS = ("objectives", "pruner", "strategy", "confirm", "model", "fixed", "search")
_PARAM_KEYS = ("choices", "low", "high", "log", "step", "when")
_DEFAULTS = Config().to_dict()


@dataclasses.dataclass(frozen=True)
class Space:
    """A validated search space; build it with parse_space, load_space or from_dict.

    ``params`` maps each searched field, in order, to ``{"choices": [...]}`` or
    ``{"low", "high", "log"[, "step"]}``, plus ``"when": {field: [values]}`` if conditional.
    """

    params: dict[str, dict[str, Any]]
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    pruner: str = "pareto"  # the kind, one of PRUNERS
    pareto: ParetoRule = ParetoRule()  # the rule's parameters, used when pruner == "pareto"
    strategy: str = "tpe"  # one of STRATEGIES
    confirm: int = 0  # top configurations re-run with more seeds (focus: DEFAULT_CONFIRM)

    def directions(self) -> list[str]:
        """Optuna's study directions, one per objective."""
        return [METRICS[name] for name in self.objectives]

    def make_pruner(self) -> optuna.pruners.BasePruner:
        """The study's Optuna pruner; "pareto" and "none" need none (sweep.runner.callbacks'
        ParetoPruning applies the Pareto rule itself)."""
        import optuna

        if self.pruner == "median":
            return optuna.pruners.MedianPruner()
        if self.pruner == "hyperband":
            # Successive halving over epochs: the resource is the epochs trained (the step
            # sweep.runner.callbacks reports), so only a third of each rung trains on to the next
            # and only finalists train max_epochs.
            epochs = Config.from_dict(dict(self.fixed)).max_epochs
            return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1),
                                                  reduction_factor=3)
        return optuna.pruners.NopPruner()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable, in the TOML file's structure (so from_dict re-validates it)."""
        pruner: str | dict[str, Any] = self.pruner
        if self.pruner == "pareto":
            pruner = {"kind": "pareto", **dataclasses.asdict(self.pareto)}
        return {"objectives": list(self.objectives), "pruner": pruner,
                "strategy": self.strategy, "confirm": self.confirm,
                "fixed": copy.deepcopy(self.fixed), "search": copy.deepcopy(self.params)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Space:
        return parse_space(data)


def load_space(path: str | Path | None) -> Space:
    """The space in TOML file ``path``, or the default space when ``path`` is None."""
    if path is None:
        return parse_space(copy.deepcopy(DEFAULT_SPACE))
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = tomllib.load(f)
    except OSError as err:
        raise SpaceError(str(p), f"cannot read sweep file: {err.strerror or err}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:  # "(at line L, column C)"
        raise SpaceError(str(p), f"invalid TOML: {err}") from None
    try:
        return parse_space(data)
    except SpaceError as err:
        raise SpaceError(err.key, f"{err.message} (in {p})") from None


def parse_space(data: dict[str, Any]) -> Space:
    """Validate a parsed sweep description (see the module docstring) into a Space."""
    if not isinstance(data, dict):
        raise SpaceError("space", f"expected a table, got {type(data).__name__}")
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise SpaceError(unknown[0], f"unknown top-level key (expected {', '.join(_TOP_KEYS)})")
    objectives = _objectives(data.get("objectives", list(DEFAULT_OBJECTIVES)))
    pruner, rule = _pruner(data.get("pruner", "hyperband" if len(objectives) == 1 else "pareto"),
                           objectives)
    fixed = _fixed(_with_model(data.get("fixed", {}), data.get("model")))
    own = _flat_search(data.get("search", {}))
    # Knobs alone are the user's network added to the default search; a Config field in
    # [search] is a hand-written space, run as written.
    written = any(not is_knob(name) for name in own) or ("search" in data and not own)
    strategy = data.get("strategy", "tpe" if written else "focus")
    if strategy not in STRATEGIES:
        raise SpaceError("strategy", f"{strategy!r} is not one of {', '.join(STRATEGIES)}")
    # A hand-written [search] space is the user's own design: it confirms when asked to.
    confirm = data.get("confirm", DEFAULT_CONFIRM if strategy == "focus" else 0)
    if isinstance(confirm, bool) or not isinstance(confirm, int) or confirm < 0:
        raise SpaceError("confirm", f"must be an integer >= 0, got {confirm!r}")
    if written:
        search = own
    else:  # fixing a field takes it out of the default search instead of clashing with it
        search = {**{k: v for k, v in DEFAULT_SPACE["search"].items() if k not in fixed}, **own}
    return Space(params=_search(search, fixed), fixed=fixed, objectives=objectives,
                 pruner=pruner, pareto=rule, strategy=strategy, confirm=confirm)


def suggest(trial: BaseTrial, space: Space) -> Config:
    """The trial's Config: ``Config()``'s defaults, then ``space.fixed``, then each param.

    A param whose ``when`` fails on the values so far (defaults, fixed, earlier params) is not
    suggested and keeps its fixed or default value, so ``FixedTrial(trial.params)`` rebuilds
    any trial: the conditional params absent from its params fail their conditions the same way.
    """
    values = {**_DEFAULTS, **space.fixed}
    for name, spec in space.params.items():
        if not _holds(spec.get("when"), values):
            continue
        if "choices" in spec:
            values[name] = trial.suggest_categorical(name, spec["choices"])
        elif isinstance(spec["low"], int):  # typed by the field (or the knob's range)
            values[name] = trial.suggest_int(name, spec["low"], spec["high"],
                                             step=spec.get("step", 1), log=spec.get("log", False))
        else:
            values[name] = trial.suggest_float(name, spec["low"], spec["high"],
                                               step=spec.get("step"), log=spec.get("log", False))
    return Config.from_dict(values)


def baseline_params(space: Space, knobs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Params with which ``suggest`` returns the seed configuration (``Config()``) + fixed.

    For each searched param whose ``when`` holds on those values, its value in that config;
    a searched knob takes its default in ``knobs`` (the builder's, by knob name: only the
    builder knows them). A value outside the param's range or choices cannot be suggested,
    so it is left out: ``study.enqueue_trial`` then lets the sampler pick that param (and
    the trial is not exactly the baseline; conditions after it are still judged on the
    seed's value here).
    """
    values = {**_DEFAULTS, **{KNOB + k: v for k, v in (knobs or {}).items()}, **space.fixed}
    out: dict[str, Any] = {}
    for name, spec in space.params.items():
        if (name in values and _holds(spec.get("when"), values)
                and _contains(spec, values[name])):
            out[name] = values[name]
    return out


def fix(space: Space, values: dict[str, Any]) -> Space:
    """``space`` with ``values`` (the command line's fields) fixed: they override the file's
    ``[fixed]``, and a searched field among them leaves the search (the command line wins)."""
    data = space.to_dict()
    data["fixed"].update(values)
    data["search"] = {k: v for k, v in data["search"].items() if k not in values}
    return parse_space(data)


def for_continuous(space: Space) -> tuple[Space, list[str]]:
    """``space`` for continuous (float) data, and a line for each change: the default
    objective becomes ``nats_per_dim``, and ``decoder_activation`` is ``none`` unless the space
    fixes or searches it (the seed's sigmoid bounds outputs to [0, 1], which float data is
    not). SpaceError when the objectives name a bits/dim metric beside others."""
    data, notes = space.to_dict(), []
    if space.objectives == DEFAULT_OBJECTIVES:
        data["objectives"] = list(CONTINUOUS_OBJECTIVES)
        notes.append("float data: the objective is nats_per_dim (bits/dim counts 8-bit "
                     "levels, which float data has not)")
    else:
        bits = [m for m in space.objectives if m in EIGHT_BIT_METRICS]
        if bits:
            raise SpaceError("objectives", f"{bits[0]} is for 8-bit (uint8) data; float data "
                                           "has nats_per_dim")
    if "decoder_activation" not in space.fixed and "decoder_activation" not in space.params:
        data["fixed"]["decoder_activation"] = "none"
        notes.append(CONTINUOUS_ACTIVATION)
    searched = data["search"].get("likelihood", {}).get("choices", [])
    kept = [name for name in searched if not LIKELIHOODS[name].discrete]
    if kept != searched:
        data["search"]["likelihood"]["choices"] = kept
        data["search"].pop("mixture_components", None)
        notes.append("float data: the discretised likelihoods (of 8-bit levels) leave the search")
    return parse_space(data), notes


def _holds(when: dict[str, list[Any]] | None, values: dict[str, Any]) -> bool:
    return not when or all(values.get(field) in allowed for field, allowed in when.items())


def _contains(spec: dict[str, Any], value: Any) -> bool:
    if "choices" in spec:
        return bool(value in spec["choices"])
    if not spec["low"] <= value <= spec["high"]:
        return False
    return "step" not in spec or _on_grid(value - spec["low"], spec["step"])


def _on_grid(span: float, step: float) -> bool:
    n = span / step
    return abs(n - round(n)) <= 1e-9 * max(1.0, abs(n))


def _valid(where: str, field: str, value: Any) -> Any:
    """``value`` typed as Config field ``field``, if Config accepts it (else SpaceError)."""
    try:
        if is_knob(field):  # typed by its value; the builder's signature is checked at start
            return coerce(field, value)
        return getattr(Config.from_dict({**_DEFAULTS, field: value}), field)
    except ConfigError as err:
        # ConfigError reads "field: reason"; the reason is enough after our own key.
        reason = str(err).split(": ", 1)[1] if err.key == field else str(err)
        raise SpaceError(where, reason) from None


def _objectives(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise SpaceError("objectives", "must be a non-empty list of metric names")
    for name in value:
        if name not in METRICS:
            raise SpaceError("objectives", f"unknown metric {name!r} "
                                           f"(expected some of {', '.join(METRICS)})")
        if value.count(name) > 1:
            raise SpaceError("objectives", f"{name!r} is listed twice")
    return tuple(value)


def _pruner(value: Any, objectives: tuple[str, ...]) -> tuple[str, ParetoRule]:
    """The pruner's kind and the Pareto rule: ``"kind"`` or ``{kind = ..., rule params}``."""
    table = value if isinstance(value, dict) else {"kind": value}
    where = "pruner.kind" if isinstance(value, dict) else "pruner"
    unknown = [k for k in table if k not in ("kind", *_RULE_KEYS)]
    if unknown:
        raise SpaceError(f"pruner.{unknown[0]}",
                         f"unknown key (expected {', '.join(('kind', *_RULE_KEYS))})")
    kind = table.get("kind", "pareto")  # the only kind with parameters
    if kind not in PRUNERS:
        raise SpaceError(where, f"{kind!r} is not one of {', '.join(PRUNERS)}")
    if kind in _SINGLE_ONLY and len(objectives) > 1:
        raise SpaceError(where, f"{kind!r} prunes single-objective studies only (Optuna "
                                f"cannot prune several objectives); use \"pareto\" or \"none\"")
    params = {k: table[k] for k in _RULE_KEYS if k in table}
    if params and kind != "pareto":
        raise SpaceError(f"pruner.{next(iter(params))}", 'only applies to kind = "pareto"')
    for key in ("min_trials", "min_epochs"):
        n = params.get(key, 1)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise SpaceError(f"pruner.{key}", f"must be an integer >= 1, got {n!r}")
    fraction = params.get("fraction", 1)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0 < fraction <= 1:
        raise SpaceError("pruner.fraction", f"must be in (0, 1], got {fraction!r}")
    if "fraction" in params:
        params["fraction"] = float(fraction)
    return kind, ParetoRule(**params)


def _with_model(fixed: Any, model: Any) -> Any:
    """[fixed] with the top-level ``model``: a string names the network, a table holds its
    fixed knobs; a ``model`` table inside [fixed] (TOML's ``model.NAME = ...``) likewise."""
    if not isinstance(fixed, dict):
        return fixed
    out = dict(fixed)
    for where, value in (("fixed.model", out.pop("model", None)), ("model", model)):
        if isinstance(value, dict):
            for name, knob in value.items():
                out[f"{KNOB}{name}"] = knob
        elif isinstance(value, str):
            out["model"] = value
        elif value is not None:
            raise SpaceError(where, "expected a network (a string) or a table of its knobs")
    return out


def _flat_search(table: Any) -> dict[str, Any]:
    """[search] with TOML's nested ``[search.model.NAME]`` tables as ``model.NAME`` keys."""
    if not isinstance(table, dict):
        raise SpaceError("search", "expected a table of parameter tables")
    out = {LEGACY_KNOBS.get(str(k), str(k)): v for k, v in table.items() if k != "model"}
    knobs = table.get("model", {})
    if not isinstance(knobs, dict) or any(not isinstance(v, dict) for v in knobs.values()):
        raise SpaceError("search.model", "the network is fixed, not searched: expected "
                                         "[search.model.KNOB] tables of its knobs")
    return {**out, **{f"{KNOB}{name}": spec for name, spec in knobs.items()}}


def _known(field: str) -> bool:
    return field in field_types() or is_knob(field)


def _fixed(table: Any) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise SpaceError("fixed", "expected a table of Config fields")
    out: dict[str, Any] = {}
    for field, value in table.items():
        field = LEGACY_KNOBS.get(str(field), str(field))
        if not _known(field):
            raise SpaceError(f"fixed.{field}", "unknown Config field")
        out[field] = _valid(f"fixed.{field}", field, value)
    return out


def _search(table: Any, fixed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if not isinstance(table, dict):
        raise SpaceError("search", "expected a table of parameter tables")
    types = field_types()
    params: dict[str, dict[str, Any]] = {}
    for name, spec in table.items():
        where = f"search.{name}"
        if not _known(name):
            raise SpaceError(where, "unknown Config field")
        if name in fixed:
            raise SpaceError(where, "is also in [fixed]; a field is either fixed or searched")
        if name in DATA_FIELDS:
            raise SpaceError(where, "data fields cannot be searched (a worker loads its "
                                    "images once for all its trials); set it in [fixed]")
        if not isinstance(spec, dict):
            raise SpaceError(where, "expected a table with choices, or low and high")
        unknown = [k for k in spec if k not in _PARAM_KEYS]
        if unknown:
            raise SpaceError(f"{where}.{unknown[0]}",
                             f"unknown key (expected {', '.join(_PARAM_KEYS)})")
        if "choices" in spec:
            out = _choices(where, name, spec)
        elif "low" in spec and "high" in spec:
            out = _range(where, name, types.get(name, _knob_type(spec)), spec)
        else:
            raise SpaceError(where, "needs either choices, or low and high")
        if "when" in spec:
            out["when"] = _when(where, spec["when"], params, fixed)
        params[name] = out
    return params


def _choices(where: str, field: str, spec: dict[str, Any]) -> dict[str, Any]:
    extra = [k for k in ("low", "high", "log", "step") if k in spec]
    if extra:
        raise SpaceError(f"{where}.{extra[0]}", "cannot be combined with choices")
    values = spec["choices"]
    if not isinstance(values, list) or not values:
        raise SpaceError(f"{where}.choices", "must be a non-empty list")
    typed = [_valid(f"{where}.choices", field, v) for v in values]
    if len(set(typed)) < len(typed):
        raise SpaceError(f"{where}.choices", "lists a value twice")
    return {"choices": typed}


def _knob_type(spec: dict[str, Any]) -> type:
    """A knob's range is of ints when both ends are (and any step is whole), else floats."""
    ends = [spec["low"], spec["high"], spec.get("step", 1)]
    return int if all(isinstance(v, int) and not isinstance(v, bool) for v in ends) else float


def _range(where: str, field: str, kind: type, spec: dict[str, Any]) -> dict[str, Any]:
    if kind is str:
        raise SpaceError(where, f"{field} is a string field: give choices, not low/high")
    low = _valid(f"{where}.low", field, spec["low"])
    high = _valid(f"{where}.high", field, spec["high"])
    if is_knob(field):  # typed by the range: 1 and 64 are ints, 0.5 makes both floats
        low, high = kind(low), kind(high)
    if not (math.isfinite(low) and math.isfinite(high)):  # TOML allows inf and nan
        raise SpaceError(where, f"low and high must be finite, got {low}, {high}")
    if low >= high:
        raise SpaceError(where, f"low ({low}) must be < high ({high})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{where}.log", f"must be true or false, got {log!r}")
    if log and low <= 0:
        raise SpaceError(f"{where}.log", f"a log range needs low > 0, got {low}")
    out: dict[str, Any] = {"low": low, "high": high, "log": log}
    if "step" in spec:
        step = spec["step"]
        if (isinstance(step, bool) or not isinstance(step, (int, float)) or not step > 0
                or (kind is int and not float(step).is_integer())):
            raise SpaceError(f"{where}.step", f"must be a positive {kind.__name__}, got {step!r}")
        if log:
            raise SpaceError(f"{where}.step", "cannot be combined with log (Optuna refuses it)")
        step = kind(step)
        # Optuna would silently move high to the grid; refusing keeps the file's meaning.
        if not _on_grid(high - low, step):
            raise SpaceError(f"{where}.step", f"high - low ({high - low}) is not a multiple "
                                              f"of step ({step})")
        out["step"] = step
    return out


def _when(where: str, cond: Any, params: dict[str, dict[str, Any]],
          fixed: dict[str, Any]) -> dict[str, list[Any]]:
    if not isinstance(cond, dict) or not cond:
        raise SpaceError(f"{where}.when", "must be a table like { field = [values] }")
    out: dict[str, list[Any]] = {}
    for field, allowed in cond.items():
        key = f"{where}.when.{field}"
        if not _known(field):
            raise SpaceError(key, "unknown Config field")
        # Only earlier params and fixed fields have a value when this param's turn comes.
        if field not in params and field not in fixed:
            raise SpaceError(key, "must name a fixed field or one searched earlier")
        values = allowed if isinstance(allowed, list) else [allowed]
        if not values:
            raise SpaceError(key, "must list at least one value")
        typed = [_valid(key, field, v) for v in values]
        choices = params.get(field, {}).get("choices")
        if choices is not None:  # a value never chosen would silently switch the param off
            missing = [v for v in typed if v not in choices]
            if missing:
                raise SpaceError(key, f"{missing[0]!r} is not among search.{field}.choices")
        out[field] = typed
    return out
