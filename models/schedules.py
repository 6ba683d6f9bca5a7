"""KL weight schedules: pure functions from the global step to the weight on the KL term.

All return a float in [0, ceiling]. ``step`` counts optimiser steps from 0 (Lightning's
``global_step`` before the step is taken), as the integer iteration index of the papers' code.
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
    """Logistic ramp over the warm-up (Bowman et al. 2016, the KL "annealing" curve).

    The logistic s(t) = 1 / (1 + exp(-sharpness * (t - 1/2))) at t = step / warmup_steps,
    rescaled so that the ramp starts at exactly 0 and ends at exactly the ceiling:
    ``ceiling * (s(t) - s(0)) / (s(1) - s(0))`` for 0 <= step <= warmup_steps, half the
    ceiling at warmup_steps / 2, and the ceiling from ``warmup_steps`` on (``warmup_end``).
    """
    if warmup_steps <= 0 or step >= warmup_steps:
        return ceiling

    def s(t: float) -> float:
        return 1.0 / (1.0 + math.exp(-sharpness * (t - 0.5)))

    return ceiling * (s(step / warmup_steps) - s(0.0)) / (s(1.0) - s(0.0))


def cycle_start(step: int, total_steps: int, cycles: int) -> int:
    """First step of the cycle that ``step`` is in: floor(c * T) for the largest cycle index
    c < cycles with floor(c * T) <= step, T = total_steps / cycles (Fu et al.'s int(c * period))."""
    period = max(total_steps, 1) / cycles
    c = min(cycles - 1, max(0, math.floor(step / period)))
    # floor(step / T) can miss by one where c * T is within rounding of an integer.
    while c > 0 and math.floor(c * period) > step:
        c -= 1
    while c + 1 < cycles and math.floor((c + 1) * period) <= step:
        c += 1
    return math.floor(c * period)


def cyclical(step: int, ceiling: float, total_steps: int, cycles: int, ratio: float) -> float:
    """Cyclical annealing (Fu et al. 2019, eq. 6) as their code's ``frange_cycle_linear``.

    Over ``total_steps`` integer steps, cycle c of period T = total_steps / cycles starts at
    step floor(c * T) with weight 0; i steps into a cycle the weight is
    ``ceiling * min(1, i / (T * ratio))``, i.e. it rises by ceiling / (T * ratio) per step and
    is then held at the ceiling until the next cycle's start. So every cycle starts at 0 even
    when the total does not divide by the cycles. After the last cycle it stays at the
    ceiling (their schedule ends at ``total_steps``).
    """
    period = max(total_steps, 1) / cycles
    i = step - cycle_start(step, total_steps, cycles)
    return ceiling * min(1.0, i / (period * ratio))


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
    """The step at which the first warm-up is over: the first step at the ceiling.

    For ``cyclical`` that is ceil(T * ratio), T = total_steps / cycles, unless the second
    cycle starts first (at floor(T), e.g. ``ratio = 1``): then its start, where the first
    ramp ended. ``constant`` has no warm-up (0).
    """
    if schedule in ("linear", "sigmoid"):
        return warmup_steps
    if schedule == "cyclical":
        period = max(total_steps, 1) / cycles
        return min(math.ceil(period * ratio), math.floor(period))
    return 0
