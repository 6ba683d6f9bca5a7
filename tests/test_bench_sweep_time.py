"""The bench's time-to-answer arithmetic on hand-made (seconds, neg_elbo) lists, and its
score of each side's answer on fresh seeds on hand-made trials."""

from datetime import datetime, timedelta, timezone

from optuna.distributions import IntDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from models.config import Config
from sweep.bench.fresh_seeds import Side, compare, first_proposed, unused_seeds
from sweep.bench.sweep_time import script_pick, to_script_best


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


# Each side's answer re-trained on fresh seeds (sweep.bench.fresh_seeds), on hand-made trials.

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def made(number: int, at_s: float, value: float = 0.0, au: int = 5,
         state: TrialState = TrialState.COMPLETE, **cfg) -> FrozenTrial:
    """A trial started ``at_s`` seconds after T0, its config (``cfg``) in its params."""
    t = create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                     params=cfg, distributions={k: IntDistribution(0, 512) for k in cfg},
                     user_attrs={"active_units": au})
    t.number, t.datetime_start = number, T0 + timedelta(seconds=at_s)
    return t


def config_of(t: FrozenTrial) -> Config | None:
    return Config(**t.params) if t.params else None


def test_fresh_seeds_are_the_smallest_no_trial_used():
    assert unused_seeds({0, 1, 2}, 2) == [3, 4]
    assert unused_seeds([1, 1, 5], 3) == [0, 2, 3]
    assert unused_seeds([], 0) == []


def test_a_pick_is_timed_to_when_its_config_was_first_proposed_whatever_its_seed():
    pick = made(3, 30.0, latent_dim=16, seed=0)
    trials = [made(0, 5.0, latent_dim=8, seed=0), made(1, 12.0),  # no config: never trained
              made(2, 20.0, latent_dim=16, seed=7), pick, made(4, 40.0, latent_dim=16, seed=1)]
    assert first_proposed(pick, trials, config_of, T0.timestamp() + 2.0) == 18.0


def test_the_script_picks_its_best_trial_that_kept_a_code():
    trials = [made(0, 0, -50.0, au=0), made(1, 1, -40.0), made(2, 2, -45.0),
              made(3, 3, state=TrialState.FAIL)]
    assert script_pick(trials).number == 2
    assert script_pick([made(0, 0, -50.0, au=0)]) is None


def test_both_picks_are_retrained_on_the_same_unused_seeds_and_their_means_compared():
    script = [made(0, 10.0, -300.0, latent_dim=8, seed=0)]  # lucky on its own seed
    sweep_trials = [made(0, 4.0, -100.0, latent_dim=32, seed=0),
                    made(1, 6.0, -90.0, latent_dim=32, seed=1)]
    start = T0.timestamp()
    trained: list[tuple[int, int]] = []

    def train(cfg: Config) -> dict[str, float]:  # a config's value: latent_dim + 100 * seed
        trained.append((cfg.latent_dim, cfg.seed))
        return {"neg_elbo": cfg.latent_dim + 100.0 * cfg.seed, "active_units": 3}

    out = compare({"baseline": Side(script[0], script, config_of, start),
                   "project": Side(sweep_trials[0], sweep_trials, config_of, start),
                   "none_found": Side(None, [], config_of, start)},
                  used={0, 1}, r=2, train=train)
    assert out["seeds"] == [2, 3]
    base, mine = out["baseline"], out["project"]
    assert base["values"] == [208.0, 308.0] and base["mean"] == 258.0
    assert mine["values"] == [232.0, 332.0] and mine["mean"] == 282.0
    assert base["own_seed_value"] == -300.0 and base["own_seed_refit"] == 8.0
    assert (base["s"], mine["s"]) == (10.0, 4.0) and out["ratio"] == 0.4
    assert out["project_minus_baseline"] == 24.0 and out["none_found"] is None
    assert base["config"]["latent_dim"] == 8 and base["params"] == {"latent_dim": 8, "seed": 0}
    assert sorted(trained) == [(8, 0), (8, 2), (8, 3), (32, 0), (32, 2), (32, 3)]
