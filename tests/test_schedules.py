"""Each KL schedule's weight at exact steps, against its formula."""

import math

import pytest

from models import schedules


def test_constant():
    assert [schedules.constant(s, 0.7) for s in (0, 10, 10**6)] == [0.7, 0.7, 0.7]


def test_linear_exact_steps():
    w = [schedules.linear(s, 2.0, 100) for s in (0, 25, 50, 100, 150)]
    assert w == pytest.approx([0.0, 0.5, 1.0, 2.0, 2.0])
    assert schedules.linear(5, 2.0, 0) == 2.0


def test_sigmoid_exact_steps():
    s = lambda t: 1 / (1 + math.exp(-10 * (t - 0.5)))  # noqa: E731  the logistic, sharpness 10
    assert schedules.sigmoid(0, 1.0, 100) == 0.0  # starts at exactly 0 ...
    assert schedules.sigmoid(50, 1.0, 100) == pytest.approx(0.5)
    assert schedules.sigmoid(75, 1.0, 100) == pytest.approx((s(0.75) - s(0)) / (s(1) - s(0)))
    assert schedules.sigmoid(99, 3.0, 100) < 3.0
    # ... and reaches its ceiling exactly at warmup_end, held after it
    assert schedules.sigmoid(100, 3.0, 100) == 3.0
    assert schedules.sigmoid(101, 3.0, 100) == 3.0
    assert schedules.warmup_end(schedule="sigmoid", warmup_steps=100, total_steps=10**6,
                                cycles=4, ratio=0.5) == 100
    ramp = [schedules.sigmoid(k, 1.0, 100) for k in range(101)]
    assert ramp == sorted(ramp)  # monotone


def test_cyclical_exact_steps():
    # 1000 steps, 4 cycles of 250, rising over the first half (125 steps) of each
    w = lambda s: schedules.cyclical(s, 1.0, 1000, 4, 0.5)  # noqa: E731
    assert w(0) == 0.0
    assert w(62) == pytest.approx(62 / 125)
    assert w(124) == pytest.approx(124 / 125) and w(124) < 1.0
    assert w(125) == 1.0
    assert w(249) == 1.0
    assert w(250) == 0.0
    assert w(250 + 25) == pytest.approx(0.2)
    assert w(750) == 0.0
    assert w(999) == 1.0


def test_cyclical_matches_fu_et_al_when_the_cycles_do_not_divide_the_steps():
    # Fu et al.'s frange_cycle_linear(10, n_cycle=3, ratio=0.5): period 10/3, +0.6 per step,
    # cycles start at int(c * 10/3) = 0, 3, 6 with weight 0, then 0.6, then held at 1.
    w = [schedules.cyclical(s, 1.0, 10, 3, 0.5) for s in range(10)]
    assert w == pytest.approx([0, 0.6, 1, 0, 0.6, 1, 0, 0.6, 1, 1])
    assert w[3] == 0.0 and w[6] == 0.0  # the old (step mod T) / T gave 1.0 at step 3
    # ratio 1, 8 steps, 2 cycles: 0, .25, .5, .75 twice; the ceiling is never reached
    w = [schedules.cyclical(s, 2.0, 8, 2, 1.0) for s in range(8)]
    assert w == pytest.approx([0, 0.5, 1, 1.5] * 2)
    # 7 steps, 2 cycles of 3.5: starts at 0 and int(3.5) = 3; +1/1.75 per step
    w = [schedules.cyclical(s, 1.0, 7, 2, 0.5) for s in range(7)]
    assert w == pytest.approx([0, 1 / 1.75, 1, 0, 1 / 1.75, 1, 1])
    # every cycle of a long awkward run starts at exactly 0
    starts = [int(c * (1000 / 7)) for c in range(7)]  # period 142.857...
    assert all(schedules.cyclical(s, 1.0, 1000, 7, 0.3) == 0.0 for s in starts)
    assert all(schedules.cyclical(s - 1, 1.0, 1000, 7, 0.3) == 1.0 for s in starts[1:])


def test_dispatch_and_warmup_end():
    kw = dict(ceiling=1.0, warmup_steps=100, total_steps=1000, cycles=4, ratio=0.5)
    assert schedules.kl_weight(50, schedule="linear", **kw) == pytest.approx(0.5)
    assert schedules.kl_weight(50, schedule="cyclical", **kw) == pytest.approx(0.4)
    assert schedules.warmup_end(schedule="cyclical", warmup_steps=100, total_steps=1000,
                                cycles=4, ratio=0.5) == 125
    assert schedules.warmup_end(schedule="constant", warmup_steps=100, total_steps=1000,
                                cycles=4, ratio=0.5) == 0
    # the first ramp is over when the second cycle starts first (ratio 1, or T * ratio > T - 1)
    assert schedules.warmup_end(schedule="cyclical", warmup_steps=0, total_steps=8, cycles=2,
                                ratio=1.0) == 4
    assert schedules.warmup_end(schedule="cyclical", warmup_steps=0, total_steps=10, cycles=3,
                                ratio=0.5) == 2
    assert schedules.warmup_end(schedule="cyclical", warmup_steps=0, total_steps=10, cycles=1,
                                ratio=1.0) == 10
    with pytest.raises(ValueError, match="kl_schedule"):
        schedules.kl_weight(0, schedule="nope", **kw)
