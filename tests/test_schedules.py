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
    assert schedules.sigmoid(50, 1.0, 100) == pytest.approx(0.5)
    assert schedules.sigmoid(0, 1.0, 100) == pytest.approx(1 / (1 + math.exp(5)))
    assert schedules.sigmoid(100, 3.0, 100) == pytest.approx(3 / (1 + math.exp(-5)))
    assert schedules.sigmoid(75, 1.0, 100) == pytest.approx(1 / (1 + math.exp(-2.5)))


def test_cyclical_exact_steps():
    # 1000 steps, 4 cycles of 250, rising over the first half (125 steps) of each
    w = lambda s: schedules.cyclical(s, 1.0, 1000, 4, 0.5)  # noqa: E731
    assert w(0) == 0.0
    assert w(62.5) == pytest.approx(0.5)
    assert w(125) == pytest.approx(1.0)
    assert w(200) == pytest.approx(1.0)
    assert w(250) == 0.0
    assert w(250 + 25) == pytest.approx(0.2)
    assert w(999) == pytest.approx(1.0)


def test_dispatch_and_warmup_end():
    kw = dict(ceiling=1.0, warmup_steps=100, total_steps=1000, cycles=4, ratio=0.5)
    assert schedules.kl_weight(50, schedule="linear", **kw) == pytest.approx(0.5)
    assert schedules.kl_weight(50, schedule="cyclical", **kw) == pytest.approx(0.4)
    assert schedules.warmup_end(schedule="cyclical", warmup_steps=100, total_steps=1000,
                                cycles=4, ratio=0.5) == 125
    assert schedules.warmup_end(schedule="constant", warmup_steps=100, total_steps=1000,
                                cycles=4, ratio=0.5) == 0
    with pytest.raises(ValueError, match="kl_schedule"):
        schedules.kl_weight(0, schedule="nope", **kw)
