"""The bench's own_model row: a network that is not built in, through the registry by its
import path, timed in the bare loop and through fit, back to back."""

import pytest
import torch

from models import networks
from models.config import Config
from sweep.bench import own_model
from sweep.bench.rows import bare_loop


def test_the_row_times_the_users_network_both_ways(tiny, images):
    cfg = Config.from_dict({k: v for k, v in tiny.items() if not k.startswith("model.")})
    said: list[str] = []
    row = own_model.own_model_rows(cfg, images[:200], 2, 2, torch.device("cpu"),
                                   own_model.SPEC, bare_loop, said.append)
    assert row["model"] == own_model.SPEC
    assert len(row["repeats"]["limit"]) == len(row["repeats"]["project"]) == 2
    ratios = sorted(p / b for p, b in zip(row["repeats"]["project"], row["repeats"]["limit"],
                                          strict=True))
    # The repeats are kept to 0.1 image/s and the ratio to 0.001, from the unrounded
    # rates: recomputed from the kept ones, it can land on the next 0.001.
    assert row["project_over_limit"] == pytest.approx(sum(ratios) / 2, abs=1.5e-3)
    assert len(said) == 2 and said[0].startswith("own model 1/2: limit ")


def test_the_stand_in_meets_the_contract_and_is_not_built_in():
    cfg = Config(model=own_model.SPEC, latent_dim=6, knobs={"channels": 4})
    encoder, decoder = networks.build(cfg, (3, 32, 32))
    networks.check_forward(cfg, encoder, decoder, torch.rand(2, 3, 32, 32))
    assert own_model.SPEC not in networks.BUILTIN.values()
