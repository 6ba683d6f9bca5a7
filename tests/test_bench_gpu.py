"""The bench's GPU rows: marked as not measured without a GPU, and the tolerance rule.
(tests/test_cli.py runs their whole path on CPU through ``bench --trials-per-gpu``.)"""

import torch

from models.config import Config
from sweep.bench import gpu as bench_gpu


def test_gpu_rows_without_a_gpu_are_marked_not_measured(tiny, images):
    rows = bench_gpu.gpu_rows(Config.from_dict(dict(tiny)), images, 2, None, torch.device("cpu"))
    assert rows == {"device": "not measured (no GPU)", "variants": "not measured (no GPU)",
                    "trials_per_gpu": "not measured (no GPU)"}


def test_within_compares_relative_errors_and_the_share_of_active_units():
    ref = {"neg_elbo": 100.0, "mse": 0.05, "active_units": 10}
    assert bench_gpu.within({"neg_elbo": 101.9, "mse": 0.0509, "active_units": 22}, ref, 256)
    assert not bench_gpu.within({**ref, "neg_elbo": 102.1}, ref, 256)
    assert not bench_gpu.within({**ref, "mse": 0.0511}, ref, 256)
    assert not bench_gpu.within({**ref, "active_units": 23}, ref, 256)  # 13/256 > 5 %
