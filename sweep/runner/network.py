"""The study's network on this machine: the user's builder checked before anything is written,
and recorded so that a worker imports only the code its own ``--model`` names.

- ``check``: at ``start``, the builder named by the space's ``model`` is imported, every knob
  the space fixes or searches is checked against its signature, and (with the data loaded)
  one dry build and forward pass on two examples checks the shapes. Anything wrong is one
  ``ConfigError`` line (exit 2), before the study exists.
- ``require``: a worker, ``resume`` or a second ``start`` of a study whose network is not
  built in must name it itself (``--model``), and its source file must hash to what the
  study recorded (``Settings.model_sha256``), so a study's database never makes a machine
  run code that the person running the worker did not name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from models import networks
from models.config import KNOB, NETWORKS, Config, is_knob
from sweep.errors import ParamError
from sweep.space import Space

if TYPE_CHECKING:
    import torch

    from sweep.storage.settings import Settings


def spec_of(model: Any) -> str:
    """``model`` (a spec, or the builder function itself) as the spec configs record."""
    return model if isinstance(model, str) else networks.spec_of(model)


def _probe_values(space: Space, defaults: dict[str, Any]) -> dict[str, Any]:
    """A value for every searched knob to build with: its default when the range holds it,
    else the range's low end or the first choice."""
    out: dict[str, Any] = {}
    for name, spec in space.params.items():
        if not is_knob(name):
            continue
        default = defaults.get(name[len(KNOB):])
        if "choices" in spec:
            out[name] = default if default in spec["choices"] else spec["choices"][0]
        else:
            inside = isinstance(default, (int, float)) and spec["low"] <= default <= spec["high"]
            out[name] = default if inside else spec["low"]
    return out


def check(space: Space, images: torch.Tensor | None) -> str | None:
    """Check the space's network (see the module docstring); returns its source's sha256."""
    from models.data.batches import as_inputs

    base = Config.from_dict(space.fixed)
    searched = [name[len(KNOB):] for name in space.params if is_knob(name)]
    networks.check_names(base.model, [*base.knob_values, *searched])
    probe = Config.from_dict({**space.fixed,
                              **_probe_values(space, networks.defaults(base.model))})
    networks.resolve_knobs(probe.model, probe.knob_values)  # the fixed knobs' types
    if images is not None:
        encoder, decoder = networks.build(probe, tuple(images.shape[1:]))
        networks.check_forward(probe, encoder, decoder, as_inputs(images[:2]))
    return networks.source_sha256(base.model)


def require(settings: Settings, study: str, model: str | None) -> None:
    """Let this process build ``study``'s network from ``model`` (its ``--model``) when the
    study trains one that is not built in; ParamError (the command line names its flag) when
    ``model`` is missing or its source differs from the one the study recorded."""
    recorded = settings.base.model
    if recorded in NETWORKS or networks.in_process(recorded):  # shipped, or handed over here
        return
    if model is None:
        raise ParamError("model", f"is needed: study {study!r} trains the network {recorded}; "
                                  f"run this with {{model}} {recorded} (a worker imports only "
                                  "the code it is told to)")
    sha = networks.source_sha256(model)
    if settings.model_sha256 is not None and sha != settings.model_sha256:
        raise ParamError("model", f"{model}: its source has sha256 {_short(sha)}, but study "
                                  f"{study!r} was started with {_short(settings.model_sha256)}; "
                                  "run the code it was started with, or start a new study")
    networks.use_local(recorded, model)


def _short(sha: str | None) -> str:
    return "none" if sha is None else sha[:16]
