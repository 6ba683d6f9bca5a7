"""The one configuration of a VAE run: every knob the trainer has, as a frozen dataclass.

It round-trips to a flat ``{key: value}`` dict and to JSON, parses ``key=value`` strings
(the CLI's ``--set``), and validates itself so that a bad value is reported by its key
before any work starts. The defaults are the seed question's configuration (the one that
collapses on CIFAR-10): the ``conv`` network (4 layers), latent 256, sigmoid decoder, MSE
averaged over pixels, KL summed over latent dims, constant weight 1, batch 40, Adam at 1e-3.

``model`` names the network's builder (``models.networks``); its knobs are the keys
``model.NAME`` of the flat dict (``knobs`` here), typed by their values, and checked against
the builder's signature by ``models.networks.resolve_knobs`` (which imports it: this module
stays torch-free). ``depth`` and ``width``, fields before networks were pluggable, are read as
``model.depth`` and ``model.width``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Mapping
from typing import Any, get_type_hints

# Torch-free (see its docstring): the CLI validates a config before it imports torch.
from models.likelihoods import LIKELIHOODS

# The allowed values of every string field; sweep.space's default search reuses them.
CHOICES: dict[str, tuple[str, ...]] = {
    "decoder_activation": ("sigmoid", "none"),
    "likelihood": tuple(LIKELIHOODS),
    "sigma_mode": ("learned", "optimal"),
    "recon_reduction": ("sum", "mean"),
    "kl_reduction": ("sum", "mean"),
    "kl_schedule": ("constant", "linear", "cyclical", "sigmoid"),
}


# Dataset specs that name data without a path; ``folder:PATH`` names an ImageFolder tree,
# ``npy:PATH`` one array in a .npy or .npz file (models.arrays).
DATASETS = ("cifar10", "mnist", "fashion-mnist", "synthetic")
PATH_DATASETS = ("folder:", "npy:")

# Upper bounds that keep a typo from asking for terabytes (latent_dim=1000000000 would
# allocate an 8 TB layer); far above any VAE these knobs are meant for.
LIMITS = {"latent_dim": 16384, "batch_size": 65536, "kl_cycles": 10000,
          "synthetic_size": 1_000_000, "mixture_components": 256}
SEED_MAX = 2**32 - 1  # numpy's and Lightning's seed range

KNOB = "model."  # the prefix of a network knob's key in the flat dict
# Keys of older configs (databases, config.toml files) that are knobs of ``conv`` now.
LEGACY_KNOBS = {"depth": "model.depth", "width": "model.width"}
# Built-in networks by short name (models.networks.BUILTIN maps them to their builders).
NETWORKS = ("conv", "resnet", "mlp")


class ConfigError(ValueError):
    """A configuration value is invalid; the message starts with the offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclasses.dataclass(frozen=True)
class Config:
    # data
    dataset: str = "cifar10"
    data_dir: str = "data"
    val_fraction: float = 0.1
    synthetic_size: int = 2048
    # architecture: the network (models.networks), its size of code, its output activation
    model: str = "conv"
    latent_dim: int = 256
    decoder_activation: str = "sigmoid"
    # reconstruction term
    likelihood: str = "mse"
    sigma_mode: str = "optimal"
    mixture_components: int = 5  # discretized_logistic_mixture's logistics per sub-pixel
    recon_reduction: str = "mean"
    kl_reduction: str = "sum"
    # KL weight
    kl_schedule: str = "constant"
    kl_weight: float = 1.0
    kl_warmup_steps: int = 1000
    kl_cycles: int = 4
    kl_ratio: float = 0.5
    free_bits: float = 0.0
    # optimisation
    lr: float = 1e-3
    batch_size: int = 40
    max_epochs: int = 1
    max_steps: int = -1
    seed: int = 0
    # metrics
    au_threshold: float = 0.01
    # the network's knobs, (name, value) sorted by name; a mapping is accepted too
    knobs: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        knobs = self.knobs
        if isinstance(knobs, Mapping):
            knobs = tuple(knobs.items())
        object.__setattr__(self, "knobs", tuple(sorted((str(k), v) for k, v in knobs)))
        validate(self)

    @property
    def knob_values(self) -> dict[str, Any]:
        """The network's knobs set in this config, by name (without the ``model.`` prefix)."""
        return dict(self.knobs)

    def to_dict(self) -> dict[str, Any]:
        """The flat dict: every field, with the knobs as ``model.NAME`` keys after ``model``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name != "knobs":
                out[f.name] = getattr(self, f.name)
            if f.name == "model":
                out.update({KNOB + k: v for k, v in self.knobs})
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Config:
        values = {LEGACY_KNOBS.get(k, k): v for k, v in values.items()}
        unknown = sorted(k for k in values if k not in field_types() and not k.startswith(KNOB))
        if unknown:
            raise ConfigError(unknown[0], "unknown key")
        typed = {k: coerce(k, v) for k, v in values.items()}
        knobs = {k[len(KNOB):]: v for k, v in typed.items() if k.startswith(KNOB)}
        return cls(**{k: v for k, v in typed.items() if not k.startswith(KNOB)},
                   knobs=tuple(knobs.items()))

    @classmethod
    def from_json(cls, text: str) -> Config:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> Config:
        return Config.from_dict({**self.to_dict(), **changes})


def field_types() -> dict[str, type]:
    """Each flat field's Python type (int, float or str), by name (a fresh dict per call);
    knobs (``model.NAME``) are typed by their values instead."""
    return dict(_field_types())


@functools.cache
def _field_types() -> dict[str, type]:
    # get_type_hints evaluates every annotation string: about 1 ms, and coerce calls it
    # once per key, so uncached it cost a sweep's start over a second of its wall time.
    hints = get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config) if f.name != "knobs"}


def is_knob(key: str) -> bool:
    return key.startswith(KNOB)


def coerce_knob(key: str, value: Any) -> Any:
    """A knob's value: an int, float, bool or str as given; from the command line's text, the
    first of int, float, true/false that parses it, else the text."""
    name = key[len(KNOB):]
    if not name.isidentifier():
        raise ConfigError(key, f"{name!r} is not a knob name (a builder's keyword argument)")
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(key, f"must be finite, got {value}")
    if not isinstance(value, (bool, int, float)):
        raise ConfigError(key, f"expected a number, true/false or a string, got {value!r}")
    return value


def coerce(key: str, value: Any) -> Any:
    """Convert ``value`` (possibly a string from the command line) to the type of ``key``."""
    key = LEGACY_KNOBS.get(key, key)
    if is_knob(key):
        return coerce_knob(key, value)
    types = field_types()
    if key not in types:
        raise ConfigError(key, "unknown key")
    kind = types[key]
    if isinstance(value, bool):
        raise ConfigError(key, f"expected {kind.__name__}, got {value!r}")
    try:
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind is float:
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(key, f"expected {kind.__name__}, got {value!r}") from None
    if not isinstance(value, str):
        raise ConfigError(key, f"expected str, got {value!r}")
    return value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse ``["key=value", ...]`` into typed values; an item without ``=`` is an error."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(item, "expected key=value")
        key = LEGACY_KNOBS.get(key.strip(), key.strip())
        out[key] = coerce(key, value.strip())
    return out


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(key, message)


def validate(cfg: Config) -> None:
    """Raise ConfigError naming the first invalid field of ``cfg``."""
    for key, choices in CHOICES.items():
        value = getattr(cfg, key)
        _check(value in choices, key, f"{value!r} is not one of {', '.join(choices)}")
    for key, kind in field_types().items():
        if kind is float:  # TOML and the command line both accept inf and nan
            value = getattr(cfg, key)
            _check(math.isfinite(value), key, f"must be finite, got {value}")
    for key in ("latent_dim", "batch_size", "max_epochs", "kl_cycles", "synthetic_size",
                "mixture_components"):
        _check(getattr(cfg, key) >= 1, key, f"must be >= 1, got {getattr(cfg, key)}")
    for key, most in LIMITS.items():
        _check(getattr(cfg, key) <= most, key, f"must be <= {most}, got {getattr(cfg, key)}")
    _check(0 <= cfg.seed <= SEED_MAX, "seed", f"must be in [0, {SEED_MAX}], got {cfg.seed}")
    _check(cfg.lr > 0, "lr", f"must be > 0, got {cfg.lr}")
    _check(cfg.kl_weight >= 0, "kl_weight", f"must be >= 0, got {cfg.kl_weight}")
    _check(cfg.free_bits >= 0, "free_bits", f"must be >= 0, got {cfg.free_bits}")
    _check(cfg.kl_warmup_steps >= 0, "kl_warmup_steps",
           f"must be >= 0, got {cfg.kl_warmup_steps}")
    _check(0 < cfg.kl_ratio <= 1, "kl_ratio", f"must be in (0, 1], got {cfg.kl_ratio}")
    _check(0 < cfg.val_fraction < 1, "val_fraction",
           f"must be in (0, 1), got {cfg.val_fraction}")
    _check(cfg.max_steps == -1 or cfg.max_steps >= 1, "max_steps",
           f"must be -1 (no limit) or >= 1, got {cfg.max_steps}")
    _check(cfg.au_threshold > 0, "au_threshold", f"must be > 0, got {cfg.au_threshold}")
    _check(cfg.model in NETWORKS or _is_import_path(cfg.model), "model",
           f"{cfg.model!r} is not a network: expected one of {', '.join(NETWORKS)}, "
           "module:function or path/to/file.py:function")
    for name, value in cfg.knobs:
        coerce_knob(KNOB + name, value)
    _check(cfg.dataset in DATASETS or any(cfg.dataset.startswith(p) and len(cfg.dataset) > len(p)
                                          for p in PATH_DATASETS),
           "dataset", f"unknown dataset {cfg.dataset!r}; expected {', '.join(DATASETS)}, "
                      "folder:PATH or npy:PATH")


def _is_import_path(spec: str) -> bool:
    where, sep, name = spec.rpartition(":")
    # A function defined inside another is named ``outer.<locals>.inner`` (in-process only).
    name = name.replace("<locals>", "locals").replace(".", "_")
    return bool(sep and where and name.isidentifier())
