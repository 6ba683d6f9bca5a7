"""The network registry: a VAE's encoder and decoder come from a *builder*, named by config.

The contract (pythae's ``encoder=`` / ``decoder=``, nanoGPT's network apart from its loop)::

    def build(shape, latent_dim, **knobs) -> tuple[nn.Module, nn.Module]: ...

- ``shape``: one example's shape, ``(C, H, W)`` for images or ``(D,)`` for vectors;
- the encoder maps x ``(B, *shape)`` to ``(mu, logvar)``, each ``(B, latent_dim)``;
- the decoder maps z ``(B, latent_dim)`` to the raw output ``(B, *shape)``; the VAE applies
  the config's ``decoder_activation`` to it (sigmoid: the seed's; none: logits or unbounded
  data), and the likelihood reads the result. A likelihood that reads k outputs per image
  channel (``outputs_per_channel``: the discretised logistics) gets the decoder of a second
  call for ``(k C, *rest)`` (``decoder_shape``), so every builder serves it unchanged;
- the keyword arguments after ``latent_dim`` are the network's knobs: ``model.NAME`` in the
  config, fixed or searched like every other field. Their defaults are the builder's.

``Config.model`` names the builder: a short name of ``BUILTIN`` (``conv``, the default, is
the seed question's network), ``package.module:function``, or ``path/to/file.py:function``.
The loss, likelihoods, schedules, metrics and training are vae-sweep's whatever the network.

Nothing here imports torch or a builder at import time: the CLI validates names before torch
loads. ``load_builder`` imports the module a spec names, which is code the user chose to run.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.config import Config, ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

Builder = Callable[..., tuple["nn.Module", "nn.Module"]]

# Short names of the built-in networks; each is an ordinary builder, found the same way.
BUILTIN: dict[str, str] = {
    "conv": "models.networks.conv:build",
    "resnet": "models.networks.resnet:build",
    "mlp": "models.networks.mlp:build",
}

# Builders handed over as functions that no import path reaches (a notebook's): runnable in
# this process only (``register_function``).
_IN_PROCESS: dict[str, Builder] = {}
# The builder spec a study recorded -> the one this machine was told to use for it (a worker's
# ``--model``, checked to be the same source by ``sweep.runner.models``).
_LOCAL: dict[str, str] = {}
_POSITIONAL = ("shape", "latent_dim")


def import_path(spec: str) -> str:
    """``spec`` as an import path: a built-in's module path, else ``spec`` itself."""
    return BUILTIN.get(spec, spec)


def spec_of(builder: Builder) -> str:
    """The spec that names ``builder``: its ``module:qualname``; a function no import reaches
    (defined in ``__main__``, a notebook, or inside another function) is kept in this process
    under that name (``in_process`` says so)."""
    spec = f"{builder.__module__}:{builder.__qualname__}"
    for name, path in BUILTIN.items():
        if path == spec:
            return name
    if builder.__module__ == "__main__" or "<locals>" in builder.__qualname__:
        _IN_PROCESS[spec] = builder
    return spec


def in_process(spec: str) -> bool:
    """Whether ``spec`` names a function only this process has (see ``spec_of``)."""
    return spec in _IN_PROCESS


def use_local(study_spec: str, local_spec: str) -> None:
    """Load ``study_spec``'s builder from ``local_spec`` in this process (a worker's --model)."""
    _LOCAL[study_spec] = local_spec


def _split(spec: str) -> tuple[str, str]:
    where, sep, name = import_path(spec).rpartition(":")
    if not sep or not where or not name:
        raise ConfigError("model", f"{spec!r} is not a network: expected one of "
                                   f"{', '.join(BUILTIN)}, module:function or file.py:function")
    return where, name


def source_file(spec: str) -> Path | None:
    """The file the builder of ``spec`` is defined in (None for an in-process function)."""
    spec = _LOCAL.get(spec, spec)
    if spec in _IN_PROCESS:
        return None
    where, _ = _split(spec)
    if where.endswith(".py"):
        return Path(os.path.expanduser(where)).resolve()
    try:
        found = importlib.util.find_spec(where)
    except (ImportError, ValueError):
        found = None
    if found is None or found.origin is None:
        raise ConfigError("model", f"{spec}: no module named {where!r}")
    return Path(found.origin).resolve()


def source_sha256(spec: str) -> str | None:
    """sha256 of the builder's source file: what a study's workers must share."""
    path = source_file(spec)
    return None if path is None else hashlib.sha256(path.read_bytes()).hexdigest()


def load_builder(spec: str) -> Builder:
    """The builder ``spec`` names, imported; ConfigError("model", ...) naming why it cannot be
    (no such file or module, an error while importing it, no such function)."""
    spec = _LOCAL.get(spec, spec)
    if spec in _IN_PROCESS:
        return _IN_PROCESS[spec]
    where, name = _split(spec)
    try:
        if where.endswith(".py"):
            path = Path(os.path.expanduser(where)).resolve()
            if not path.is_file():
                raise ConfigError("model", f"{spec}: no file {where}")
            module_name = f"vae_sweep_model_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
            module = sys.modules.get(module_name)
            if module is None:
                loader = importlib.util.spec_from_file_location(module_name, path)
                assert loader is not None and loader.loader is not None
                module = importlib.util.module_from_spec(loader)
                sys.modules[module_name] = module
                try:
                    loader.loader.exec_module(module)
                except BaseException:
                    del sys.modules[module_name]
                    raise
        else:
            module = importlib.import_module(where)
    except ConfigError:
        raise
    except Exception as err:  # the user's code: any error while importing it is theirs
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise ConfigError("model", f"{spec}: cannot import {where} "
                                   f"({type(err).__name__}: {first})") from None
    builder = getattr(module, name, None)
    if not callable(builder):
        raise ConfigError("model", f"{spec}: {where} has no function {name!r}")
    return builder  # type: ignore[no-any-return]


def knob_defaults(builder: Builder) -> dict[str, Any]:
    """The builder's knobs with their defaults; a knob without one maps to ``inspect.Parameter
    .empty``. A ``**kwargs`` builder takes any knob (``VAR_KEYWORD`` says so)."""
    params = list(inspect.signature(builder).parameters.values())
    out: dict[str, Any] = {}
    for param in params[len(_POSITIONAL):]:
        if param.kind is param.VAR_KEYWORD:
            out["**"] = param.empty
        elif param.kind is not param.VAR_POSITIONAL:
            out[param.name] = param.default
    return out


def defaults(spec: str) -> dict[str, Any]:
    """The builder's knobs that have a default, with it."""
    return {k: v for k, v in knob_defaults(load_builder(spec)).items()
            if k != "**" and v is not inspect.Parameter.empty}


def check_names(spec: str, names: Iterable[str]) -> None:
    """ConfigError naming ``model.NAME`` for a knob in ``names`` the builder does not take,
    or one it requires (no default) that ``names`` lacks."""
    signature = knob_defaults(load_builder(spec))
    open_ended = "**" in signature
    signature.pop("**", None)
    given = set(names)
    for name in sorted(given - set(signature)):
        if not open_ended:
            known = ", ".join(signature) or "none"
            raise ConfigError(f"model.{name}", f"unknown knob of {spec} (its knobs: {known})")
    for name, default in signature.items():
        if default is inspect.Parameter.empty and name not in given:
            raise ConfigError(f"model.{name}", f"{spec} needs it (no default): set model.{name}")


def resolve_knobs(spec: str, knobs: Mapping[str, Any]) -> dict[str, Any]:
    """``knobs`` checked against the builder's signature (``check_names``; a value whose type
    differs from the default's is named too, an int where a float is expected is fine), with
    its defaults filled in."""
    check_names(spec, knobs)
    known = defaults(spec)
    for name, value in knobs.items():
        default = known.get(name)
        if default is not None and not _same_kind(default, value):
            raise ConfigError(f"model.{name}", f"expected {type(default).__name__} like the "
                                               f"default {default!r}, got {value!r}")
    return {**known, **knobs}


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def decoder_shape(cfg: Config, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The decoder output's shape for examples of ``shape``: ``cfg``'s likelihood reads
    ``outputs_per_channel`` values per entry of the first axis (the image's channels)."""
    from models import likelihoods

    k = likelihoods.build(cfg).outputs_per_channel()
    return (k * int(shape[0]), *(int(n) for n in shape[1:]))


def build(cfg: Config, shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """``cfg``'s encoder and decoder for examples of ``shape``, the decoder's output of
    ``decoder_shape`` (the builder's decoder for that shape: a second call, whose encoder
    is dropped); ConfigError("model", ...) when the builder raises or returns anything but
    two modules."""
    encoder, decoder = _build(cfg, tuple(shape))
    out_shape = decoder_shape(cfg, shape)
    if out_shape != tuple(shape):
        decoder = _build(cfg, out_shape)[1]
    return encoder, decoder


def _build(cfg: Config, shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    from torch import nn

    knobs = resolve_knobs(cfg.model, cfg.knob_values)
    try:
        made = load_builder(cfg.model)(shape, cfg.latent_dim, **knobs)
    except Exception as err:  # the user's code, for this knob value: the trial's failure
        first = (str(err).strip().splitlines() or [""])[0][:200]
        shown = ", ".join(f"{k}={v!r}" for k, v in knobs.items())
        raise ConfigError("model", f"{cfg.model}({shown}) raised {type(err).__name__}: "
                                   f"{first}") from None
    if not (isinstance(made, tuple) and len(made) == 2
            and all(isinstance(m, nn.Module) for m in made)):
        raise ConfigError("model", f"{cfg.model} must return (encoder, decoder), two "
                                   f"nn.Modules; it returned {type(made).__name__}")
    return made[0], made[1]


def check_forward(cfg: Config, encoder: nn.Module, decoder: nn.Module,
                  x: torch.Tensor) -> None:
    """One forward pass of ``x`` (a few examples, floats) through both networks; ConfigError
    naming the module, the shape it returned and the shape it must return."""
    import torch

    n, d = x.shape[0], cfg.latent_dim
    with torch.no_grad():
        got = encoder(x)
        if not (isinstance(got, (tuple, list)) and len(got) == 2
                and all(isinstance(t, torch.Tensor) for t in got)):
            raise ConfigError("model", f"{cfg.model}: the encoder must return (mu, logvar), "
                                       f"two tensors; it returned {_describe(got)}")
        for what, t in zip(("mu", "logvar"), got, strict=True):
            if tuple(t.shape) != (n, d):
                raise ConfigError("model", f"{cfg.model}: the encoder returned {what} of "
                                           f"shape {tuple(t.shape)}; it must be (B, latent_dim)"
                                           f" = {(n, d)}")
        out = decoder(got[0])
        want = (n, *decoder_shape(cfg, tuple(x.shape[1:])))
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
            raise ConfigError("model", f"{cfg.model}: the decoder returned "
                                       f"{_describe(out)}; it must return (B, *shape) = {want}"
                                       + ("" if want == tuple(x.shape) else
                                          f" (the likelihood {cfg.likelihood} reads "
                                          f"{want[1] // x.shape[1]} per channel)"))


def _describe(value: Any) -> str:
    import torch

    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__
