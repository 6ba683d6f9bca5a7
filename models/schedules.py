"""KL weight schedules: pure functions from the global step to the weight on the KL term.

All return a float in [0, ceiling]. ``step`` counts optimiser steps from 0.
"""

from __future__ import annotations

import math


def constant(step: int, ceiling: float) -> float:
    """The plain beta-VAE weight (Higgins et al. 2017): ``ceiling`` at every step."""
    return ceiling


def linear(step: int, ceiling: float, warmup_steps: int) -> float:
    """Linear warm-up (Bowman et al. 2016): 0 at step 0, ``ceiling`` from ``warmup_steps`` on."""
    if warmup_steps <= 0:
        return ceiling
    return ceiling * min(1.0, step / warmup_steps)


def sigmoid(step: int, ceiling: float, warmup_steps: int, sharpness: float = 10.0) -> float:
    """Logistic ramp centred in the warm-up (Bowman et al. 2016, the KL "annealing" curve).

    ``ceiling / (1 + exp(-sharpness * (step / warmup_steps - 0.5)))``: half the ceiling at
    ``warmup_steps / 2``, within 0.7 % of 0 and of the ceiling at the ends of the warm-up.
    """
    if warmup_steps <= 0:
        return ceiling
    return ceiling / (1.0 + math.exp(-sharpness * (step / warmup_steps - 0.5)))


def cyclical(step: int, ceiling: float, total_steps: int, cycles: int, ratio: float) -> float:
    """Cyclical annealing (Fu et al. 2019, eq. 6): ``cycles`` cycles over ``total_steps``.

    Within each cycle of length T = total_steps / cycles, tau = (step mod T) / T; the weight
    rises linearly while tau <= ratio and is then held at the ceiling: min(1, tau / ratio).
    """
    period = max(total_steps, 1) / cycles
    tau = (step % period) / period
    return ceiling * min(1.0, tau / ratio)


def kl_weight(step: int, *, schedule: str, ceiling: float, warmup_steps: int,
              total_steps: int, cycles: int, ratio: float) -> float:
    """Dispatch on the config's ``kl_schedule`` name."""
    if schedule == "constant":
        return constant(step, ceiling)
    if schedule == "linear":
        return linear(step, ceiling, warmup_steps)
    if schedule == "sigmoid":
        return sigmoid(step, ceiling, warmup_steps)
    if schedule == "cyclical":
        return cyclical(step, ceiling, total_steps, cycles, ratio)
    raise ValueError(f"unknown kl_schedule {schedule!r}")


def warmup_end(*, schedule: str, warmup_steps: int, total_steps: int, cycles: int,
               ratio: float) -> int:
    """The first step at which the weight has reached its ceiling for the first time."""
    if schedule in ("linear", "sigmoid"):
        return warmup_steps
    if schedule == "cyclical":
        return math.ceil(max(total_steps, 1) / cycles * ratio)
    return 0
