"""The search space: the default space reaches every parameter and respects its conditions,
any trial is rebuilt from its params, the baseline is the seed config, and every bad sweep
file is refused with one line naming the key."""

import json

import optuna
import pytest
from optuna.trial import FixedTrial

from models.config import Config
from sweep.pruning import ParetoRule
from sweep.space import (
    DEFAULT_SPACE,
    Space,
    SpaceError,
    baseline_params,
    fix,
    load_space,
    parse_space,
    suggest,
)

N_TRIALS = 300  # enough for a random sampler to visit every branch (cyclical: ~75 trials)


def run_random(space: Space, n_trials: int):
    """An in-memory study of ``n_trials`` random trials; returns it and each trial's Config."""
    configs: dict[int, Config] = {}

    def objective(trial: optuna.Trial) -> float:
        configs[trial.number] = suggest(trial, space)
        return 0.0

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=n_trials)
    return study, configs


@pytest.fixture(scope="module")
def default_run():
    return run_random(load_space(None), N_TRIALS)


def write(tmp_path, text: str):
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_default_space_samples_every_parameter_under_its_conditions(default_run):
    study, configs = default_run
    seen: set[str] = set()
    for t in study.trials:
        p = t.params
        seen |= set(p)
        assert ("kl_cycles" in p) == ("kl_ratio" in p) == (p["kl_schedule"] == "cyclical")
        assert ("kl_warmup_steps" in p) == (p["kl_schedule"] in ("linear", "sigmoid"))
        assert ("sigma_mode" in p) == (p["likelihood"] == "gaussian")
        assert ("mixture_components" in p) == (p["likelihood"] == "discretized_logistic_mixture")
        assert 0.01 <= p["kl_weight"] <= 10 and 1e-4 <= p["lr"] <= 3e-3
        assert p["free_bits"] in (0.0, 0.05, 0.1, 0.25, 0.5)
        cfg = configs[t.number]  # the Config carries what was suggested, the rest is default
        assert all(getattr(cfg, k) == v for k, v in p.items())
        if "kl_cycles" not in p:
            assert (cfg.kl_cycles, cfg.kl_ratio) == (Config().kl_cycles, Config().kl_ratio)
    assert seen == set(DEFAULT_SPACE["search"])
    assert {t.params["free_bits"] for t in study.trials} >= {0.0}


def test_fixed_trial_rebuilds_each_trials_config(default_run):
    study, configs = default_run
    space = load_space(None)
    for t in study.trials[:40]:
        assert suggest(FixedTrial(t.params), space) == configs[t.number]


def test_baseline_params_rebuild_the_seed_config():
    space = load_space(None)
    params = baseline_params(space)
    assert "kl_cycles" not in params and "sigma_mode" not in params  # conditions fail
    assert suggest(FixedTrial(params), space) == Config()
    # the way the runner uses it: the enqueued first trial is the seed configuration
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    study.enqueue_trial(params)
    got: list[Config] = []
    study.optimize(lambda t: got.append(suggest(t, space)) or 0.0, n_trials=1)
    assert got == [Config()]


def test_baseline_params_follow_fixed_values_and_skip_unreachable_defaults():
    space = parse_space({"fixed": {"kl_schedule": "cyclical"},
                         "search": {"latent_dim": {"choices": [16, 32]},
                                    "kl_cycles": {"low": 1, "high": 8,
                                                  "when": {"kl_schedule": ["cyclical"]}}}})
    params = baseline_params(space)
    assert params == {"kl_cycles": 4}  # latent_dim 256 is not a choice: the sampler picks it
    cfg = suggest(FixedTrial({**params, "latent_dim": 16}), space)
    assert cfg == Config(kl_schedule="cyclical", latent_dim=16)


def test_fixed_values_apply_and_leave_the_default_search(tmp_path):
    space = load_space(write(tmp_path, 'objectives = ["neg_elbo"]\n'
                                       '[fixed]\nbatch_size = 128\nkl_schedule = "linear"\n'
                                       'max_epochs = 3\n'))
    assert space.fixed == {"batch_size": 128, "kl_schedule": "linear", "max_epochs": 3}
    assert "kl_schedule" not in space.params and space.directions() == ["minimize"]
    study, configs = run_random(space, 20)
    for t in study.trials:
        cfg = configs[t.number]
        assert (cfg.batch_size, cfg.kl_schedule, cfg.max_epochs) == (128, "linear", 3)
        assert "kl_warmup_steps" in t.params and "kl_cycles" not in t.params


def test_a_toml_file_round_trips_through_load_space(tmp_path):
    path = write(tmp_path, """
objectives = ["bits_per_dim", "active_units"]
[fixed]
batch_size = 64
[search.kl_schedule]
choices = ["constant", "cyclical"]
[search.kl_cycles]
low = 2
high = 8
step = 2
when = { kl_schedule = ["cyclical"] }
[search.kl_weight]
low = 0.1
high = 1
log = true
""")
    space = load_space(path)
    assert space == Space(
        params={"kl_schedule": {"choices": ["constant", "cyclical"]},
                "kl_cycles": {"low": 2, "high": 8, "log": False, "step": 2,
                              "when": {"kl_schedule": ["cyclical"]}},
                "kl_weight": {"low": 0.1, "high": 1.0, "log": True}},
        fixed={"batch_size": 64}, objectives=("bits_per_dim", "active_units"))
    assert list(space.params) == ["kl_schedule", "kl_cycles", "kl_weight"]
    assert space.directions() == ["minimize", "maximize"]
    study, configs = run_random(space, 30)
    cycles = {configs[t.number].kl_cycles for t in study.trials if "kl_cycles" in t.params}
    assert cycles and cycles <= {2, 4, 6, 8}  # the step holds


@pytest.mark.parametrize("path", [None, "toml"])
def test_space_dict_round_trips_through_json(tmp_path, path):
    if path:
        path = write(tmp_path, '[fixed]\nlr = 0.001\n[search.latent_dim]\nchoices = [8, 16]\n'
                               '[search.model.depth]\nlow = 1\nhigh = 3\n'
                               'when = { latent_dim = [16], lr = [0.001] }\n')
    space = load_space(path)
    data = json.loads(json.dumps(space.to_dict()))
    again = Space.from_dict(data)
    assert again == space and list(again.params) == list(space.params)
    assert again.to_dict() == data


BAD = [
    ("syntax", 'objectives = ["mse"\n[fixed]\n', "line 2"),
    ("top_key", "searches = 1\n", "searches"),
    ("unknown_search_field", "[search.latent_dims]\nchoices = [8]\n", "search.latent_dims"),
    ("unknown_fixed_field", "[fixed]\nbatchsize = 3\n", "fixed.batchsize"),
    ("fixed_and_searched", "[fixed]\nlr = 0.001\n[search.lr]\nlow = 1e-4\nhigh = 1e-3\n",
     "search.lr"),
    ("no_range", "[search.lr]\nlog = true\n", "search.lr"),
    ("unknown_param_key", "[search.lr]\nlow = 1e-4\nhigh = 1e-3\nlogg = true\n",
     "search.lr.logg"),
    ("low_ge_high", "[search.lr]\nlow = 0.01\nhigh = 0.001\n", "search.lr"),
    ("log_low_zero", "[search.kl_weight]\nlow = 0.0\nhigh = 1.0\nlog = true\n",
     "search.kl_weight.log"),
    ("empty_choices", "[search.latent_dim]\nchoices = []\n", "search.latent_dim.choices"),
    ("bad_choice", "[search.kl_schedule]\nchoices = ['nope']\n", "search.kl_schedule.choices"),
    ("latent_dim_low_0", "[search.latent_dim]\nlow = 0\nhigh = 8\n", "search.latent_dim.low"),
    ("bad_fixed_value", "[fixed]\nlr = -1.0\n", "fixed.lr"),
    ("string_range", "[search.likelihood]\nlow = 1\nhigh = 2\n", "search.likelihood"),
    ("step_off_grid", "[search.model.depth]\nlow = 1\nhigh = 4\nstep = 2\n",
     "search.model.depth.step"),
    ("when_unknown_field", "[search.kl_cycles]\nlow = 1\nhigh = 4\n"
                           "when = { kl_sched = ['cyclical'] }\n",
     "search.kl_cycles.when.kl_sched"),
    ("when_not_earlier", "[search.kl_cycles]\nlow = 1\nhigh = 4\n"
                         "when = { kl_schedule = ['cyclical'] }\n"
                         "[search.kl_schedule]\nchoices = ['cyclical', 'linear']\n",
     "search.kl_cycles.when.kl_schedule"),
    ("when_never_chosen", "[search.kl_schedule]\nchoices = ['linear']\n[search.kl_cycles]\n"
                          "low = 1\nhigh = 4\nwhen = { kl_schedule = ['cyclical'] }\n",
     "search.kl_cycles.when.kl_schedule"),
    ("unknown_objective", 'objectives = ["elbo"]\n', "objectives"),
    ("empty_objectives", "objectives = []\n", "objectives"),
    ("duplicate_objective", 'objectives = ["mse", "mse"]\n', "objectives"),
    ("unknown_pruner", 'pruner = "asha"\n', "pruner"),
    ("searched_data", "[search.synthetic_size]\nlow = 64\nhigh = 128\n",
     "search.synthetic_size"),
    ("unknown_dataset", '[fixed]\ndataset = "no-such"\n', "fixed.dataset"),
    ("infinite_fixed", "[fixed]\nlr = inf\n", "fixed.lr"),
    ("pruner_not_a_name", "pruner = 3\n", "pruner"),
    ("median_multi_objective", 'objectives = ["mse", "rate"]\npruner = "median"\n', "pruner"),
    ("hyperband_multi_objective", 'objectives = ["mse", "rate"]\n[pruner]\nkind = "hyperband"\n',
     "pruner.kind"),
    ("unknown_strategy", 'strategy = "grid"\n', "strategy"),
    ("negative_confirm", "confirm = -1\n", "confirm"),
    ("unknown_pruner_kind", '[pruner]\nkind = "asha"\n', "pruner.kind"),
    ("unknown_pruner_key", "[pruner]\nfractoin = 0.5\n", "pruner.fractoin"),
    ("rule_on_median", 'objectives = ["mse"]\n[pruner]\nkind = "median"\nmin_trials = 3\n',
     "pruner.min_trials"),
    ("fraction_above_1", "[pruner]\nfraction = 2\n", "pruner.fraction"),
    ("fraction_0", "[pruner]\nfraction = 0.0\n", "pruner.fraction"),
    ("fraction_nan", "[pruner]\nfraction = nan\n", "pruner.fraction"),
    ("fraction_text", '[pruner]\nfraction = "half"\n', "pruner.fraction"),
    ("min_trials_0", "[pruner]\nmin_trials = 0\n", "pruner.min_trials"),
    ("min_trials_float", "[pruner]\nmin_trials = 2.5\n", "pruner.min_trials"),
    ("min_epochs_bool", "[pruner]\nmin_epochs = true\n", "pruner.min_epochs"),
]


@pytest.mark.parametrize("text,key", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_sweep_files_are_refused_naming_the_key(tmp_path, text, key):
    path = write(tmp_path, text)
    with pytest.raises(SpaceError) as err:
        load_space(path)
    message = str(err.value)
    assert key in message and "\n" not in message
    if key.startswith("line"):
        assert message.startswith(str(path))


def test_messages_say_what_is_wrong(tmp_path):
    with pytest.raises(SpaceError, match=r"^pruner.fraction: must be in \(0, 1\], got 2 \(in "):
        load_space(write(tmp_path, "[pruner]\nkind = 'pareto'\nfraction = 2\n"))
    with pytest.raises(SpaceError, match="prunes single-objective studies only"):
        parse_space({"objectives": ["mse", "rate"], "pruner": "median"})
    with pytest.raises(SpaceError, match="'nope' is not one of"):
        load_space(write(tmp_path, "[search.kl_schedule]\nchoices = ['nope']\n"))
    with pytest.raises(SpaceError, match="unknown metric 'elbo'"):
        parse_space({"objectives": ["elbo"]})
    with pytest.raises(SpaceError, match="cannot read"):
        load_space(tmp_path / "missing.toml")


@pytest.mark.parametrize("text,kind,optuna_pruner", [
    ('objectives = ["neg_elbo"]\n', "hyperband", optuna.pruners.HyperbandPruner),
    ('objectives = ["neg_elbo"]\npruner = "median"\n', "median", optuna.pruners.MedianPruner),
    ('objectives = ["neg_elbo"]\npruner = "hyperband"\n', "hyperband",
     optuna.pruners.HyperbandPruner),
    ('objectives = ["neg_elbo"]\npruner = "none"\n', "none", optuna.pruners.NopPruner),
    ('objectives = ["neg_elbo"]\npruner = "pareto"\n', "pareto", optuna.pruners.NopPruner),
    ("", "hyperband", optuna.pruners.HyperbandPruner),  # the default: bits_per_dim alone
    ('objectives = ["mse", "rate"]\n', "pareto", optuna.pruners.NopPruner),  # several
    ('pruner = "pareto"\n', "pareto", optuna.pruners.NopPruner),
    ('pruner = "none"\n', "none", optuna.pruners.NopPruner),
])
def test_pruner_is_chosen_in_the_file_and_survives_the_study_attrs(tmp_path, text, kind,
                                                                   optuna_pruner):
    space = load_space(write(tmp_path, text))
    again = Space.from_dict(json.loads(json.dumps(space.to_dict())))
    assert again == space and again.pruner == kind
    assert type(again.make_pruner()) is optuna_pruner
    assert again.pareto == ParetoRule()


@pytest.mark.parametrize("text,rule", [
    ("[pruner]\nmin_trials = 8\n", ParetoRule(min_trials=8)),  # kind defaults to pareto
    ('[pruner]\nkind = "pareto"\nmin_trials = 3\nmin_epochs = 4\nfraction = 1\n',
     ParetoRule(min_trials=3, min_epochs=4, fraction=1.0)),
    ('objectives = ["mse"]\n[pruner]\nkind = "pareto"\nfraction = 0.25\n',
     ParetoRule(fraction=0.25)),
])
def test_pareto_rule_parameters_come_from_the_pruner_table(tmp_path, text, rule):
    space = load_space(write(tmp_path, text))
    assert space.pruner == "pareto" and space.pareto == rule
    data = json.loads(json.dumps(space.to_dict()))
    assert data["pruner"] == {"kind": "pareto", "min_trials": rule.min_trials,
                              "min_epochs": rule.min_epochs, "fraction": rule.fraction}
    assert Space.from_dict(data) == space


def test_the_command_line_fixes_fields_over_the_file(tmp_path):
    space = load_space(write(tmp_path, "[fixed]\nbatch_size = 64\nmax_epochs = 5\n"
                                       "[search.lr]\nlow = 1e-4\nhigh = 1e-3\n"
                                       "[search.latent_dim]\nchoices = [8, 16]\n"))
    fixed = fix(space, {"max_epochs": 2, "lr": 0.002})
    # max_epochs: the command line over [fixed]; lr: over the search, which it leaves.
    assert fixed.fixed == {"batch_size": 64, "max_epochs": 2, "lr": 0.002}
    assert list(fixed.params) == ["latent_dim"]
    cfg = suggest(FixedTrial({"latent_dim": 8}), fixed)
    assert (cfg.batch_size, cfg.max_epochs, cfg.lr, cfg.latent_dim) == (64, 2, 0.002, 8)


def test_float_data_gets_its_yardstick_and_an_unbounded_decoder():
    from sweep.space import for_continuous

    space, notes = for_continuous(parse_space({"fixed": {"batch_size": 64}}))
    assert space.objectives == ("nats_per_dim",) and space.directions() == ["minimize"]
    assert space.fixed == {"batch_size": 64, "decoder_activation": "none"}
    assert baseline_params(space) == baseline_params(parse_space({"fixed": {"batch_size": 64}}))
    assert len(notes) == 3 and all(n.startswith("float data: ") for n in notes)
    # the likelihoods of 8-bit levels are not searched on float data
    assert space.params["likelihood"]["choices"] == ["mse", "gaussian", "bernoulli"]
    assert "mixture_components" not in space.params
    # What the user chose stays: a decoder activation fixed or searched, other objectives.
    chosen = parse_space({"objectives": ["mse", "rate"], "fixed": {"decoder_activation":
                                                                   "sigmoid"}})
    space, notes = for_continuous(chosen)
    assert space.fixed == chosen.fixed and space.objectives == chosen.objectives
    assert notes == ["float data: the discretised likelihoods (of 8-bit levels) leave the search"]
    searched = parse_space({"search": {"decoder_activation": {"choices": ["sigmoid", "none"]}}})
    assert for_continuous(searched)[0].params == searched.params
    with pytest.raises(SpaceError, match="^objectives: bits_per_dim is for 8-bit"):
        for_continuous(parse_space({"objectives": ["bits_per_dim", "active_units"]}))
