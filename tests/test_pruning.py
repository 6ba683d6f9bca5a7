"""The Pareto pruner's rule on hand-made vectors: dominance with directions, the count of
dominating references, the epoch-e vectors of histories, and the decision's conditions."""

import math

import pytest

from sweep.pruning import (
    ParetoRule,
    count_dominating,
    decide,
    dominates,
    epoch_vector,
    may_prune,
    reference_vectors,
)

MIN, MAX = "minimize", "maximize"
OBJ = ("mse", "rate", "active_units")
DIRS = [MIN, MIN, MAX]


@pytest.mark.parametrize("a,b,directions,expected", [
    ((1.0, 1.0), (2.0, 2.0), [MIN, MIN], True),      # better in both
    ((1.0, 2.0), (2.0, 2.0), [MIN, MIN], True),      # better in one, tied in the other
    ((2.0, 2.0), (2.0, 2.0), [MIN, MIN], False),     # equal vectors do not dominate
    ((1.0, 3.0), (2.0, 2.0), [MIN, MIN], False),     # a trade-off: neither dominates
    ((2.0, 2.0), (1.0, 1.0), [MIN, MIN], False),     # worse
    ((1.0, 9.0), (2.0, 5.0), [MIN, MAX], True),      # maximise the second: 9 beats 5
    ((1.0, 5.0), (2.0, 9.0), [MIN, MAX], False),     # ... and 5 loses to 9
    ((0.1, 3.0, 16), (0.2, 3.0, 8), DIRS, True),
    ((0.1, 3.0, 8), (0.2, 3.0, 16), DIRS, False),    # fewer active units: a trade-off
    ((0.1, 3.0, 16), (0.1, 3.0, 16), DIRS, False),
    ((1.0,), (2.0,), [MIN], True),                   # one objective: strictly better
    ((2.0,), (2.0,), [MIN], False),
    ((3.0,), (2.0,), [MAX], True),
    ((math.nan, 1.0), (2.0, 2.0), [MIN, MIN], False),
    ((1.0, 1.0), (math.nan, 2.0), [MIN, MIN], False),
])
def test_dominance_follows_each_objectives_direction(a, b, directions, expected):
    assert dominates(a, b, directions) is expected


def test_dominance_needs_one_direction_per_objective():
    with pytest.raises(ValueError):
        dominates((1.0, 2.0), (2.0, 3.0), [MIN])


def test_count_of_dominating_references():
    current = (0.2, 3.0, 8)
    refs = [(0.1, 3.0, 8),    # dominates (better mse)
            (0.2, 2.0, 9),    # dominates
            (0.2, 3.0, 8),    # equal: no
            (0.1, 4.0, 8),    # trade-off: no
            (0.3, 1.0, 16)]   # trade-off: no
    assert count_dominating(current, refs, DIRS) == 2
    assert count_dominating(current, [], DIRS) == 0


def history(*rows):
    return [{"epoch": e, "step": 10 * (e + 1), "kl_weight": 1.0, "mse": mse, "rate": rate,
             "active_units": au} for e, (mse, rate, au) in enumerate(rows)]


def test_epoch_vectors_come_from_the_history_entry_of_that_epoch():
    h = history((0.3, 5.0, 4), (0.2, 6.0, 8))
    assert epoch_vector(h, OBJ, 1) == (0.2, 6.0, 8.0)
    assert epoch_vector(h, ("active_units",), 0) == (4.0,)
    assert epoch_vector(h, OBJ, 2) is None                     # the trial stopped before
    assert epoch_vector(h, ("mutual_info",), 0) is None        # metric not recorded
    assert epoch_vector(None, OBJ, 0) is None                  # no history attr
    assert epoch_vector(history((math.nan, 1.0, 2)), OBJ, 0) is None
    # a run cut mid-epoch by max_steps validates once more: the epoch-end entry counts
    cut = h + [{**h[-1], "step": 25, "mse": 0.9}]
    assert epoch_vector(cut, OBJ, 1) == (0.2, 6.0, 8.0)


def test_reference_vectors_skip_trials_without_that_epoch():
    short, long = history((0.3, 5.0, 4)), history((0.3, 5.0, 4), (0.2, 6.0, 8))
    assert reference_vectors([short, long, None], OBJ, 1) == [(0.2, 6.0, 8.0)]
    assert reference_vectors([short, long], OBJ, 0) == [(0.3, 5.0, 4.0)] * 2


RULE = ParetoRule(min_trials=3, min_epochs=2, fraction=0.5)
GOOD, BAD = (0.1, 1.0, 16), (0.5, 9.0, 2)  # GOOD dominates BAD


@pytest.mark.parametrize("current,refs,epoch,final,rule,pruned", [
    # dominated by 3 of 4 >= 0.5: pruned
    (BAD, [GOOD, GOOD, GOOD, BAD], 2, False, RULE, "dominated by 3 of 4 earlier trials at "
                                                  "epoch 2 (mse, rate, active_units)"),
    # exactly the fraction: 2 of 4 = 0.5
    (BAD, [GOOD, GOOD, BAD, BAD], 2, False, RULE, "dominated by 2 of 4"),
    # below the fraction: 1 of 4
    (BAD, [GOOD, BAD, BAD, BAD], 2, False, RULE, None),
    # ties do not dominate: all equal, nothing prunes
    (BAD, [BAD, BAD, BAD], 2, False, RULE, None),
    # the current vector dominates them all
    (GOOD, [BAD, BAD, BAD], 2, False, RULE, None),
    # mixed directions: more active units (maximised) saves it from references with lower mse
    ((0.5, 9.0, 32), [GOOD, GOOD, GOOD], 2, False, RULE, None),
    # too few references at this epoch
    (BAD, [GOOD, GOOD], 2, False, RULE, None),
    # warm-up: epoch 0 is the first epoch, min_epochs = 2 allows epoch 1 on
    (BAD, [GOOD] * 3, 0, False, RULE, None),
    (BAD, [GOOD] * 3, 1, False, RULE, "dominated by 3 of 3 earlier trials at epoch 1"),
    # the final epoch is never pruned, however dominated
    (BAD, [GOOD] * 3, 5, True, RULE, None),
    (BAD, [GOOD] * 3, 1, True, ParetoRule(min_trials=1, min_epochs=1, fraction=0.1), None),
    # fraction = 1: every reference must dominate
    (BAD, [GOOD, GOOD, BAD], 2, False, ParetoRule(3, 1, 1.0), None),
    (BAD, [GOOD, GOOD, GOOD], 2, False, ParetoRule(3, 1, 1.0), "3 of 3"),
    # 3 / 10 >= 0.3 although 0.3 * 10 > 3 in floating point
    (BAD, [GOOD] * 3 + [BAD] * 7, 2, False, ParetoRule(3, 1, 0.3), "3 of 10"),
])
def test_decision(current, refs, epoch, final, rule, pruned):
    reason = decide(current, refs, DIRS, OBJ, epoch, final, rule)
    if pruned is None:
        assert reason is None
    else:
        assert reason is not None and pruned in reason


def test_single_objective_rule_is_a_percentile_rule():
    rule = ParetoRule(min_trials=4, min_epochs=1, fraction=0.5)
    refs = [(1.0,), (2.0,), (3.0,), (4.0,)]
    assert decide((2.5,), refs, [MIN], ("neg_elbo",), 3, False, rule) == (
        "dominated by 2 of 4 earlier trials at epoch 3 (neg_elbo)")
    assert decide((1.5,), refs, [MIN], ("neg_elbo",), 3, False, rule) is None
    assert decide((2.0,), refs, [MIN], ("neg_elbo",), 3, False, rule) is None  # 1.0 only


@pytest.mark.parametrize("epoch,final,min_epochs,expected", [
    (0, False, 1, True), (0, False, 2, False), (1, False, 2, True),
    (4, False, 5, True), (3, False, 5, False), (9, True, 1, False),
])
def test_may_prune_after_the_warm_up_and_before_the_final_epoch(epoch, final, min_epochs,
                                                                expected):
    assert may_prune(epoch, final, ParetoRule(min_epochs=min_epochs)) is expected


def test_defaults():
    assert ParetoRule() == ParetoRule(min_trials=5, min_epochs=2, fraction=0.5)
