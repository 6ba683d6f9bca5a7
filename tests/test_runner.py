"""How ``start`` lays out its workers: GPU slots pinned with CUDA_VISIBLE_DEVICES, or CPU."""

import pytest

from sweep.cli import UsageError
from sweep.runner import default_study_name, worker_slots


@pytest.mark.parametrize("gpus,workers,per_gpu,visible,slots", [
    ("0,1", None, 1, 0, ["0", "1"]),
    ("2, 3,", None, 2, 8, ["2", "2", "3", "3"]),  # only the listed GPUs, K workers each
    (None, 3, 1, 0, [None, None, None]),  # CPU workers leave CUDA_VISIBLE_DEVICES alone
    (None, None, 1, 2, ["0", "1"]),  # default: every visible GPU
    (None, None, 3, 1, ["0", "0", "0"]),
    (None, None, 1, 0, [None]),  # no GPU: one worker, in the calling process
])
def test_worker_slots(gpus, workers, per_gpu, visible, slots):
    assert worker_slots(gpus, workers, per_gpu, visible) == slots


@pytest.mark.parametrize("gpus,workers,per_gpu,flag", [
    ("0", 2, 1, "--gpus"),
    (None, 0, 1, "--workers"),
    (None, None, 0, "--trials-per-gpu"),
    (",", None, 1, "--gpus"),
])
def test_worker_slots_refuse_bad_flags(gpus, workers, per_gpu, flag):
    with pytest.raises(UsageError, match=flag):
        worker_slots(gpus, workers, per_gpu, 4)


def test_default_study_name_follows_the_dataset():
    assert default_study_name("cifar10") == "vae-cifar10"
    assert default_study_name("folder:/data/cifar/train/") == "vae-train"
