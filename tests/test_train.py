"""``fit``: the throughput clock counts training batches only; precision and channels_last
are ways to run the same training."""

import pytest
import pytorch_lightning as pl
import torch

from models import train
from models.config import Config
from models.module import conv_layout


class FakeClock(pl.Callback):
    """Time moves only here: 1 s per training batch, 100 s per validation batch."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def on_train_batch_end(self, *args) -> None:
        self.now += 1.0

    def on_validation_batch_end(self, *args) -> None:
        self.now += 100.0


def test_images_per_sec_counts_training_time_only(tiny, images, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(train.time, "perf_counter", clock)
    result = train.fit(Config.from_dict(dict(tiny, max_epochs=2)), images=images, callbacks=[clock])
    steps = result.metrics["steps"]
    assert steps == 2 * (len(images) - round(0.1 * len(images))) // tiny["batch_size"]
    assert clock.now > 100 * 2  # validation ran each epoch and moved the clock a lot ...
    # ... yet the throughput is images over the seconds of training batches alone.
    assert result.metrics["images_per_sec"] == tiny["batch_size"]


def test_channels_last_on_the_cpu_by_default_changes_the_layout_not_the_result(tiny, images):
    cfg = Config.from_dict(dict(tiny, max_epochs=1))
    plain = train.fit(cfg, images=images, channels_last=False)
    nhwc = train.fit(cfg, images=images)  # the CPU's default layout
    conv = nhwc.module.encoder.convs[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert not plain.module.encoder.convs[0].weight.is_contiguous(
        memory_format=torch.channels_last)
    assert conv_layout(torch.device("cpu")) == torch.channels_last
    assert conv_layout(torch.device("cuda")) == torch.contiguous_format
    for key in ("neg_elbo", "mse"):  # same seed, same steps: only summation order differs
        assert nhwc.metrics[key] == pytest.approx(plain.metrics[key], rel=1e-4)


def test_bf16_autocast_trains_the_same_run_in_lower_precision(tiny, images):
    cfg = Config.from_dict(dict(tiny, max_epochs=1))
    plain = train.fit(cfg, images=images)
    bf16 = train.fit(cfg, images=images, precision="bf16-mixed")
    assert bf16.trainer.precision == "bf16-mixed"
    assert bf16.metrics["steps"] == plain.metrics["steps"]
    # bf16 keeps 8 bits of mantissa: a few steps of a tiny model agree within a few per cent.
    assert bf16.metrics["mse"] == pytest.approx(plain.metrics["mse"], rel=0.05)


@pytest.mark.parametrize("cut,with_mi", [
    (dict(max_epochs=3), [False, False, True]),  # the last epoch's validation
    (dict(max_epochs=3, max_steps=20), [False, True]),  # max_steps mid-epoch 2: validate()
])
def test_mutual_info_only_where_the_final_metrics_need_it(tiny, images, cut, with_mi):
    cfg = Config.from_dict(dict(tiny, **cut))  # 14 steps an epoch
    lean = train.fit(cfg, images=images, mutual_info_every_epoch=False)
    assert ["mutual_info" in entry for entry in lean.history] == with_mi
    full = train.fit(cfg, images=images)
    assert all("mutual_info" in entry for entry in full.history)
    # The same run either way: the estimate draws from its own generator.
    assert lean.metrics["mutual_info"] == full.metrics["mutual_info"]
    assert lean.metrics["neg_elbo"] == full.metrics["neg_elbo"]
