"""The bench's time-to-answer arithmetic on hand-made (seconds, neg_elbo) lists."""

from sweep.bench.sweep_time import to_script_best


def test_the_project_is_timed_to_the_scripts_best_and_divided_by_the_scripts_own_time():
    script = [(10.0, -5.0), (20.0, -8.0), (30.0, -7.0)]
    out = to_script_best(script, [(4.0, -7.5), (6.0, -9.0), (12.0, -10.0)])
    assert out == {"script_best_neg_elbo": -8.0, "baseline_s_to_script_best": 20.0,
                   "project_s_to_script_best": 6.0, "ratio_to_script_best": 0.3}


def test_a_project_that_never_matched_the_script_has_no_ratio():
    out = to_script_best([(10.0, -5.0)], [(4.0, -4.0)])
    assert out["project_s_to_script_best"] is None and out["ratio_to_script_best"] is None


def test_a_script_with_no_usable_trial_gives_nothing():
    assert to_script_best([], [(4.0, -4.0)]) == {}
