"""Tests for models.data: dataset loading, the folder cache, the split and the batch loader."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torchvision
from PIL import Image

from models.config import Config, ConfigError
from models.data import ImageDataModule, TensorBatches, datamodule, decode, load_images, split
from models.data import splits as splitting


def indexed(n: int, shape: tuple[int, int, int] = (3, 4, 4)) -> torch.Tensor:
    """n distinct uint8 images whose first pixel is their index (n <= 256)."""
    images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    return images


def ids(images: torch.Tensor) -> list[int]:
    return images[:, 0, 0, 0].tolist()


def write_tree(root: Path, images: dict[str, list[torch.Tensor]]) -> None:
    for cls, imgs in images.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(imgs):
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(root / cls / f"{i:03d}.png")


def random_images(n: int, seed: int, size: int = 8) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return list(torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g))


# --- synthetic ---------------------------------------------------------------------------

def test_synthetic_shape_dtype_and_fixed_data():
    state = torch.get_rng_state()
    a = load_images(Config(dataset="synthetic", synthetic_size=64, seed=0))
    b = load_images(Config(dataset="synthetic", synthetic_size=64, seed=123))
    assert a.shape == (64, 3, 32, 32) and a.dtype == torch.uint8
    assert torch.equal(a, b)  # the data does not depend on the trial's seed
    assert torch.equal(torch.get_rng_state(), state)  # nor does it consume the global RNG


def test_synthetic_is_structured():
    images = load_images(Config(dataset="synthetic"))
    assert images.shape == (2048, 3, 32, 32)
    x = images.float()
    assert x.std(dim=0).mean() > 30  # pixels vary across images: factors to learn
    assert x.flatten(1).std(dim=1).min() > 1  # no image is flat
    assert len(torch.unique(images.flatten(1), dim=0)) == len(images)
    # Shapes have hard edges on a smooth background: some neighbouring pixels jump a lot.
    jumps = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().amax(dim=(1, 2, 3))
    assert (jumps > 20).float().mean() > 0.5


# --- split -------------------------------------------------------------------------------

def test_split_sizes_and_disjoint():
    images = indexed(100)
    train, val = split(images, 0.1, seed=0)
    assert (len(train), len(val)) == (90, 10)
    assert set(ids(train)).isdisjoint(ids(val))
    assert sorted(ids(train) + ids(val)) == list(range(100))
    assert len(split(images, 0.001, seed=0)[1]) == 1  # at least one validation image


def test_split_deterministic_per_seed():
    images = indexed(100)
    assert ids(split(images, 0.2, 5)[1]) == ids(split(images, 0.2, 5)[1])
    assert ids(split(images, 0.2, 5)[1]) != ids(split(images, 0.2, 6)[1])


def test_validation_split_does_not_depend_on_the_training_seed(monkeypatch):
    monkeypatch.setattr(datamodule, "load_images", lambda cfg: indexed(200))
    modules = []
    for seed in (0, 1):
        dm = ImageDataModule(Config(dataset="synthetic", batch_size=10, val_fraction=0.25,
                                    seed=seed))
        dm.setup("fit")
        modules.append(dm)
    a, b = modules
    assert ids(a.val_images) == ids(b.val_images)  # the same 50 images, in the same order
    assert ids(a.val_images) == ids(split(indexed(200), 0.25, splitting.SPLIT_SEED)[1])
    assert ids(a.val_images) != list(range(150, 200))  # still a random draw, not a tail
    # the training shuffle still follows the trial's seed
    firsts = []
    for seed, dm in zip((0, 1), modules, strict=True):
        torch.manual_seed(seed)
        firsts.append(ids((next(iter(dm.train_dataloader())) * 255).round().to(torch.uint8)))
    assert sorted(ids(a.train_images)) == sorted(ids(b.train_images))
    assert firsts[0] != firsts[1]


def test_split_needs_a_training_image():
    with pytest.raises(ConfigError) as err:
        split(indexed(1), 0.1, seed=0)
    assert err.value.key == "val_fraction"


# --- TensorBatches -----------------------------------------------------------------------

def test_batches_length_and_drop_last():
    images = indexed(10)
    assert len(TensorBatches(images, 4, shuffle=False, drop_last=True)) == 2
    assert len(TensorBatches(images, 4, shuffle=False, drop_last=False)) == 3
    sizes = [len(b) for b in TensorBatches(images, 4, shuffle=True, drop_last=True)]
    assert sizes == [4, 4]
    sizes = [len(b) for b in TensorBatches(images, 4, shuffle=False, drop_last=False)]
    assert sizes == [4, 4, 2]


def test_batches_values_in_order_without_shuffle():
    images = indexed(10)
    batches = list(TensorBatches(images, 4, shuffle=False, drop_last=False))
    assert all(b.dtype == torch.float32 for b in batches)
    out = torch.cat(batches)
    assert 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, images.float() / 255)


def test_batches_shuffle_covers_each_image_once_per_epoch():
    images = indexed(100)
    loader = TensorBatches(images, 10, shuffle=True, drop_last=False)
    torch.manual_seed(0)
    epochs = [torch.cat(list(loader)) for _ in range(2)]
    for epoch in epochs:
        assert sorted(ids((epoch * 255).round().to(torch.uint8))) == list(range(100))
    assert not torch.equal(epochs[0], epochs[1])  # a new permutation each epoch
    torch.manual_seed(0)
    assert torch.equal(torch.cat(list(loader)), epochs[0])  # reproducible from the seed
    assert images.dtype == torch.uint8  # the source stays uint8


def test_batches_of_float_data_are_its_values_and_leave_the_data_alone():
    vectors = torch.randn(10, 3, generator=torch.Generator().manual_seed(2)) * 100
    kept = vectors.clone()
    for shuffle in (False, True):
        batches = list(TensorBatches(vectors, 4, shuffle=shuffle, drop_last=False))
        assert all(b.dtype == torch.float32 for b in batches)
        out = torch.cat(batches)
        assert sorted(out[:, 0].tolist()) == sorted(vectors[:, 0].tolist())  # not divided
        for b in batches:
            b.zero_()  # a network that edits its input in place
        assert torch.equal(vectors, kept)


# --- ImageDataModule ---------------------------------------------------------------------

def test_datamodule_setup_split_and_loaders(monkeypatch):
    calls = []
    monkeypatch.setattr(datamodule, "load_images", lambda cfg: calls.append(cfg) or indexed(50))
    dm = ImageDataModule(Config(dataset="synthetic", batch_size=8, val_fraction=0.2, seed=3))
    dm.setup("fit")
    dm.setup("fit")
    assert len(calls) == 1  # loaded once
    assert dm.image_shape == (3, 4, 4)
    assert ids(dm.val_images) == ids(split(indexed(50), 0.2)[1])
    assert dm.val_images.dtype == torch.uint8
    train = dm.train_dataloader()
    assert (len(train), train.drop_last, train.shuffle) == (5, True, True)  # 40 // 8
    val = dm.val_dataloader()
    assert (val.batch_size, val.shuffle, len(val)) == (datamodule.VAL_BATCH_CPU, False, 1)


def test_trials_on_one_images_tensor_split_it_once(monkeypatch):
    splits = []
    monkeypatch.setattr(splitting, "split", lambda *a: splits.append(a) or split(*a))
    images = indexed(50)

    def trial(images, val_fraction=0.2):
        dm = ImageDataModule(Config(batch_size=8, val_fraction=val_fraction), images=images)
        dm.setup("fit")
        return dm

    first, second = trial(images), trial(images)
    assert len(splits) == 1 and second.val_images is first.val_images
    assert ids(second.val_images) == ids(split(images, 0.2)[1])
    trial(images, 0.5)  # another fraction, another split
    trial(indexed(50))  # another tensor, even with equal images
    assert len(splits) == 3


def test_datamodule_of_vectors_knows_their_shape_and_kind():
    dm = ImageDataModule(Config(), images=torch.randn(20, 5))
    assert dm.image_shape == (5,) and not dm.eight_bit
    assert ImageDataModule(Config(), images=indexed(20)).eight_bit


def test_datamodule_keeps_small_train_split():
    dm = ImageDataModule(Config(batch_size=64, val_fraction=0.5), images=indexed(20))
    assert dm.image_shape == (3, 4, 4)  # known before setup when images are given
    dm.setup("fit")
    assert [len(b) for b in dm.train_dataloader()] == [10]  # not dropped: one short batch


def test_datamodule_moves_splits_to_the_trainer_device():
    dm = ImageDataModule(Config(val_fraction=0.25), images=indexed(20))
    dm.setup("fit")  # before the Trainer exists: CPU
    assert dm.val_images.device.type == "cpu"
    # Stands in for a Trainer on an accelerator (the meta device needs no hardware).
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("meta")))
    dm.setup("fit")
    assert dm.val_images.device.type == "meta" and len(dm.val_images) == 5
    assert dm.train_dataloader().images.device.type == "meta"


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3 * 4 * 4, 1)
        self.train_sizes: list[int] = []
        self.val_images = 0

    def training_step(self, batch, batch_idx):
        assert batch.device == self.device and batch.dtype == torch.float32
        self.train_sizes.append(len(batch))
        return self.lin(batch.flatten(1)).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.val_images += len(batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_datamodule_trains_with_lightning():
    dm = ImageDataModule(Config(batch_size=8, val_fraction=0.2), images=indexed(50))
    dm.setup("fit")
    model = Tiny()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    assert model.train_sizes == [8] * 10  # 40 train images, 5 full batches, 2 epochs
    assert model.val_images == 2 * 10


# --- folder datasets ---------------------------------------------------------------------

def test_folder_round_trip_and_cache(tmp_path, monkeypatch):
    cats, dogs = random_images(3, seed=1), random_images(2, seed=2)
    write_tree(tmp_path, {"dog": dogs, "cat": cats})
    cfg = Config(dataset=f"folder:{tmp_path}")
    images = load_images(cfg)
    assert images.dtype == torch.uint8
    assert torch.equal(images, torch.stack(cats + dogs))  # exact, in sorted class order
    caches = list(tmp_path.glob(".vae-sweep-cache-*.pt"))
    assert len(caches) == 1
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]

    def no_decoding(*args):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(decode, "_decode", no_decoding)
    assert torch.equal(load_images(cfg), images)  # second load reads the cache


def test_folder_cache_misses_when_files_change(tmp_path):
    write_tree(tmp_path, {"a": random_images(2, seed=1)})
    cfg = Config(dataset=f"folder:{tmp_path}")
    assert len(load_images(cfg)) == 2
    write_tree(tmp_path, {"b": random_images(1, seed=3)})
    assert len(load_images(cfg)) == 3
    assert len(list(tmp_path.glob(".vae-sweep-cache-*.pt"))) == 2


def test_folder_unwritable_cache_warns_and_loads(tmp_path, monkeypatch):
    imgs = random_images(2, seed=1)
    write_tree(tmp_path, {"a": imgs})

    def read_only(obj, path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(torch, "save", read_only)
    with pytest.warns(UserWarning, match="cannot cache"):
        images = load_images(Config(dataset=f"folder:{tmp_path}"))
    assert torch.equal(images, torch.stack(imgs))
    assert not list(tmp_path.glob(".vae-sweep-cache-*"))


def test_folder_corrupt_cache_is_replaced(tmp_path):
    imgs = random_images(2, seed=1)
    write_tree(tmp_path, {"a": imgs})
    cfg = Config(dataset=f"folder:{tmp_path}")
    load_images(cfg)
    (cache,) = tmp_path.glob(".vae-sweep-cache-*.pt")
    cache.write_bytes(b"not a tensor")
    with pytest.warns(UserWarning, match="ignoring unreadable cache"):
        assert torch.equal(load_images(cfg), torch.stack(imgs))
    assert torch.equal(torch.load(cache, weights_only=True), torch.stack(imgs))


def test_folder_jpeg_gray_and_bmp(tmp_path):
    (tmp_path / "x").mkdir()
    rgb = random_images(1, seed=4)[0]
    jpeg = torchvision.io.encode_jpeg(rgb, quality=90)
    (tmp_path / "x" / "a.jpg").write_bytes(jpeg.numpy().tobytes())
    gray = torch.randint(0, 256, (8, 8), dtype=torch.uint8)
    Image.fromarray(gray.numpy()).save(tmp_path / "x" / "b.png")
    Image.fromarray(rgb.permute(1, 2, 0).numpy()).save(tmp_path / "x" / "c.bmp")
    images = load_images(Config(dataset=f"folder:{tmp_path}"))
    assert images.shape == (3, 3, 8, 8)
    expected_jpeg = torchvision.io.decode_image(jpeg, mode=torchvision.io.ImageReadMode.RGB)
    assert torch.equal(images[0], expected_jpeg)  # the fast path decodes like the public API
    assert torch.equal(images[1], gray.expand(3, 8, 8))  # gray becomes RGB
    assert torch.equal(images[2], rgb)  # BMP (no torchvision decoder) via PIL


def test_folder_many_images_use_threads(tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "DECODE_BLOCK", 7)  # several blocks per thread
    imgs = random_images(600, seed=5, size=4)
    write_tree(tmp_path, {"a": imgs[:300], "b": imgs[300:]})
    assert torch.equal(load_images(Config(dataset=f"folder:{tmp_path}")), torch.stack(imgs))


def test_folder_sizes_must_match(tmp_path):
    write_tree(tmp_path, {"a": random_images(1, seed=1, size=8),
                          "b": random_images(1, seed=2, size=6)})
    with pytest.raises(ConfigError) as err:
        load_images(Config(dataset=f"folder:{tmp_path}"))
    assert err.value.key == "dataset"
    assert "3x8x8" in str(err.value) and "3x6x6" in str(err.value)


def test_folder_corrupt_image(tmp_path):
    write_tree(tmp_path, {"a": random_images(1, seed=1)})
    (tmp_path / "a" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ConfigError) as err:
        load_images(Config(dataset=f"folder:{tmp_path}"))
    assert err.value.key == "dataset"
    assert f"cannot decode {tmp_path / 'a' / 'broken.jpg'}" in str(err.value)


@pytest.mark.slow
def test_a_corrupt_png_is_named_in_one_line_without_libpng_noise(tmp_path):
    """One of 21 PNGs with 60 bytes of its pixel data zeroed: libpng printed its own error
    line first, and the decoding threads crashed (SIGSEGV). A subprocess, so that a crash
    fails this test and not the suite."""
    import os
    import subprocess
    import sys

    write_tree(tmp_path, {"a": random_images(21, seed=3, size=32)})
    bad = tmp_path / "a" / "007.png"
    raw = bytearray(bad.read_bytes())
    raw[200:260] = bytes(60)
    bad.write_bytes(raw)
    code = f"from models.data import load_images; from models.config import Config; " \
           f"load_images(Config(dataset='folder:{tmp_path}'))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ,
                                            "PYTHONPATH": str(Path(decode.__file__).parents[2])})
    assert proc.returncode == 1, proc.stderr  # the ConfigError, not a signal
    assert "libpng" not in proc.stderr and f"cannot decode {bad}" in proc.stderr, proc.stderr
    assert decode.png_intact((tmp_path / "a" / "000.png").read_bytes())


@pytest.mark.parametrize("layout", ["missing", "empty", "no-images"])
def test_folder_without_images(tmp_path, layout):
    root = tmp_path / "images"
    if layout != "missing":
        root.mkdir()
    if layout == "no-images":
        (root / "cls").mkdir()
        (root / "cls" / "notes.txt").write_text("not an image")
    with pytest.raises(ConfigError) as err:
        load_images(Config(dataset=f"folder:{root}"))
    assert err.value.key == "dataset"
    assert f"folder {root} has no images (" in str(err.value)
    assert "\n" not in str(err.value)


# --- torchvision datasets and bad specs --------------------------------------------------

@pytest.mark.parametrize("spec", ["imagenet", "folder:", "CIFAR10"])
def test_unknown_dataset_is_refused_by_the_config_before_any_loading(spec):
    with pytest.raises(ConfigError) as err:
        Config(dataset=spec)
    assert err.value.key == "dataset"
    assert "unknown dataset" in str(err.value)


def test_torchvision_dataset_unavailable(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"

    def offline(root, train, download):
        assert (root, train, download) == (str(data_dir), True, True)
        data_dir.mkdir()  # as torchvision does before it downloads
        (data_dir / "cifar-10-python.tar.gz").write_bytes(b"partial")
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(ConfigError) as err:
        load_images(Config(dataset="cifar10", data_dir=str(data_dir)))
    assert err.value.key == "dataset"
    message = str(err.value)
    assert message.startswith("dataset: cifar10 not found in " + str(data_dir))
    assert "folder:PATH" in message and "\n" not in message
    assert not data_dir.exists()  # the folder it made for the download is gone again


class FakeDataset:
    def __init__(self, data: object) -> None:
        self.data = data


def test_torchvision_arrays_become_nchw(monkeypatch):
    cifar = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    mnist = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", lambda **kw: FakeDataset(cifar))
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", lambda **kw: FakeDataset(mnist))
    images = load_images(Config(dataset="cifar10"))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8
    assert images[2, 1, 5, 7] == int(cifar[2, 5, 7, 1])
    images = load_images(Config(dataset="fashion-mnist"))
    assert images.shape == (5, 1, 28, 28) and torch.equal(images[:, 0], mnist)



def test_held_out_images_are_a_test_split_no_trial_saw(monkeypatch):
    """``--test-data`` scores on images outside training: torchvision's train=False split,
    synthetic images from another seed (same shape and kind, none the same)."""
    asked = []
    train_split = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    test_split = np.full((3, 32, 32, 3), 7, dtype=np.uint8)

    def cifar(root, train, download):
        asked.append(train)
        return FakeDataset(train_split if train else test_split)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", cifar)
    assert len(load_images(Config(dataset="cifar10"))) == 4
    held = load_images(Config(dataset="cifar10"), held_out=True)
    assert asked == [True, False] and len(held) == 3 and int(held[0, 0, 0, 0]) == 7

    cfg = Config(dataset="synthetic", synthetic_size=64)
    seen, unseen = load_images(cfg), load_images(cfg, held_out=True)
    assert seen.shape == unseen.shape
    assert not any(torch.equal(a, b) for a in unseen for b in seen)
