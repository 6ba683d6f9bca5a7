"""The configuration: defaults are the seed question, values round-trip, bad values
name their key."""

import pytest

from models.config import Config, ConfigError, parse_overrides


def test_defaults_are_the_seed_configuration():
    c = Config()
    assert (c.model, c.latent_dim, c.batch_size, c.lr) == ("conv", 256, 40, 1e-3)
    assert c.knob_values == {}  # conv's own defaults: depth 4, width 32
    assert (c.recon_reduction, c.kl_reduction, c.likelihood) == ("mean", "sum", "mse")
    assert (c.kl_schedule, c.kl_weight, c.free_bits, c.decoder_activation) == (
        "constant", 1.0, 0.0, "sigmoid")


def test_round_trips_through_dict_and_json():
    c = Config(latent_dim=16, kl_schedule="cyclical", lr=3e-4, dataset="synthetic")
    assert Config.from_dict(c.to_dict()) == c
    assert Config.from_json(c.to_json()) == c


def test_overrides_are_typed():
    values = parse_overrides(["lr=0.002", "latent_dim=32", "kl_schedule=linear"])
    assert values == {"lr": 0.002, "latent_dim": 32, "kl_schedule": "linear"}
    assert Config().replace(**values).latent_dim == 32


@pytest.mark.parametrize("key,value", [
    ("lr", -1.0), ("kl_schedule", "exponential"), ("latent_dim", 0), ("model", "no-such"),
    ("model", "my_vae.py"), ("model.width", float("inf")), ("model.width", [1]),
    ("kl_ratio", 0.0), ("free_bits", -0.1), ("likelihood", "poisson"), ("max_steps", 0),
    ("lr", float("inf")), ("kl_weight", float("inf")), ("lr", float("nan")), ("seed", -1),
    ("seed", 2**32), ("latent_dim", 1_000_000_000), ("dataset", "no-such"),
    ("dataset", "folder:"),
])
def test_bad_values_name_the_key(key, value):
    with pytest.raises(ConfigError) as err:
        Config().replace(**{key: value})
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}:")


@pytest.mark.parametrize("item,key", [("nope=1", "nope"), ("lr=fast", "lr"),
                                      ("latent_dim=1.5", "latent_dim"), ("lr", "lr")])
def test_bad_overrides_name_the_key(item, key):
    with pytest.raises(ConfigError) as err:
        parse_overrides([item])
    assert err.value.key == key


def test_knobs_are_flat_model_keys_that_round_trip():
    c = Config.from_dict({"model": "resnet", "model.blocks": 3, "model.width": 16})
    assert c.knob_values == {"blocks": 3, "width": 16}
    flat = c.to_dict()
    assert [k for k in flat if k.startswith("model")] == ["model", "model.blocks", "model.width"]
    assert Config.from_dict(flat) == c
    assert Config.from_json(c.to_json()) == c
    assert c.replace(**{"model.blocks": 1}).knob_values == {"blocks": 1, "width": 16}


def test_knob_overrides_are_typed_by_their_text():
    values = parse_overrides(["model.blocks=2", "model.scale=0.5", "model.skip=true",
                              "model.act=gelu"])
    assert values == {"model.blocks": 2, "model.scale": 0.5, "model.skip": True,
                      "model.act": "gelu"}
    assert isinstance(values["model.blocks"], int)


def test_old_depth_and_width_keys_are_conv_knobs():
    """Databases and config.toml files from before networks were pluggable still load."""
    c = Config.from_dict({"depth": 2, "width": 8})
    assert c.knob_values == {"depth": 2, "width": 8}
    assert parse_overrides(["width=4"]) == {"model.width": 4}


def test_a_bad_knob_name_is_named():
    with pytest.raises(ConfigError) as err:
        Config.from_dict({"model.not-a-name": 1})
    assert err.value.key == "model.not-a-name"
