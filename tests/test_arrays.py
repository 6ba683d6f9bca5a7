"""Tests for models.arrays: ``npy:PATH`` data, its kinds (uint8 8-bit, floats continuous),
and every bad file refused in one line naming the dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.arrays import is_continuous, load_array
from models.config import Config, ConfigError
from models.data import load_images


def test_uint8_images_load_as_they_are(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 3, 4, 5), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    cfg = Config(dataset=f"npy:{tmp_path}/x.npy")
    got = load_images(cfg)
    assert got.dtype == torch.uint8 and torch.equal(got, torch.from_numpy(images))
    assert torch.equal(load_images(cfg, held_out=True), got)  # held out: the path as given
    assert not is_continuous(cfg.dataset)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_vectors_load_as_float32_values(tmp_path, dtype):
    rows = (np.random.default_rng(1).normal(size=(7, 3)) * 100).astype(dtype)
    np.savez(tmp_path / "x.npz", rows)  # an .npz with one array, named by numpy
    got = load_array(f"npy:{tmp_path}/x.npz")
    assert got.dtype == torch.float32 and got.shape == (7, 3)
    assert np.array_equal(got.numpy(), rows.astype(np.float32))
    assert is_continuous(f"npy:{tmp_path}/x.npz")


def test_the_file_kind_is_read_from_its_bytes_not_its_name(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((2, 2), np.float32))
    (tmp_path / "x.npy").rename(tmp_path / "data.bin")
    assert load_array(f"npy:{tmp_path}/data.bin").shape == (2, 2)


def test_other_specs_are_not_continuous():
    assert not is_continuous("cifar10") and not is_continuous("folder:x")


def _bad(path, kind):
    rng = np.random.default_rng(2)
    if kind == "nan":
        x = rng.normal(size=(10, 4)).astype(np.float32)
        x[[3, 7], 1] = np.nan
        np.save(path, x)
    elif kind == "inf":
        x = np.zeros((10, 4))
        x[5, 0] = 1e300  # finite in float64, inf in float32
        np.save(path, x)
    elif kind == "rank":
        np.save(path, np.zeros((10, 3, 4), np.float32))
    elif kind == "empty":
        np.save(path, np.zeros((10, 0), np.float32))
    elif kind == "dtype":
        np.save(path, np.zeros((10, 4), np.int64))
    elif kind == "arrays":
        with open(path, "wb") as f:
            np.savez(f, a=np.zeros((10, 4)), b=np.zeros((10, 4)))
    elif kind == "text":
        path.write_text("1,2,3\n")


BAD = [("nan", "NaN or inf values (or beyond float32's range) in 2 example(s), the first at "
               "index 3"),
       ("inf", "NaN or inf values (or beyond float32's range) in 1 example(s), the first at "
               "index 5"),
       ("rank", "has shape (10, 3, 4), rank 3; expected (N, C, H, W) images or (N, D)"),
       ("empty", "has shape (10, 0): an empty axis"),
       ("dtype", "holds int64 values; expected uint8 (8-bit images) or a float type"),
       ("arrays", "holds 2 arrays (a, b); npy: takes an .npz with exactly one"),
       ("text", "is not a .npy or .npz file"),
       ("missing", "cannot read"),
       ]


@pytest.mark.parametrize("kind,needle", BAD, ids=[k for k, _ in BAD])
def test_a_bad_array_is_refused_in_one_line_naming_the_file(tmp_path, kind, needle):
    path = tmp_path / "bad.npy"
    _bad(path, kind)
    with pytest.raises(ConfigError) as err:
        load_images(Config(dataset=f"npy:{path}"))
    message = str(err.value)
    assert err.value.key == "dataset" and str(path) in message and needle in message, message
    assert "\n" not in message


@pytest.mark.parametrize("kind", ["rank", "dtype", "arrays", "missing"])
def test_the_header_check_refuses_what_it_can_see(tmp_path, kind):
    path = tmp_path / "bad.npy"
    _bad(path, kind)
    with pytest.raises(ConfigError, match="^dataset: "):
        is_continuous(f"npy:{path}")


def test_the_config_takes_npy_specs_with_a_path():
    assert Config(dataset="npy:data/x.npy").dataset == "npy:data/x.npy"
    with pytest.raises(ConfigError, match="npy:PATH"):
        Config(dataset="npy:")
