"""``fit``'s throughput clock: training batches count, validation inside the epoch does not."""

import pytorch_lightning as pl

from models import train
from models.config import Config


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
    result = train.fit(Config(**tiny, max_epochs=2), images=images, callbacks=[clock])
    steps = result.metrics["steps"]
    assert steps == 2 * (len(images) - round(0.1 * len(images))) // tiny["batch_size"]
    assert clock.now > 100 * 2  # validation ran each epoch and moved the clock a lot ...
    # ... yet the throughput is images over the seconds of training batches alone.
    assert result.metrics["images_per_sec"] == tiny["batch_size"]
