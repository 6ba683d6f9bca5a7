"""The trainer end to end on small synthetic data: collapse reproduced and cured, determinism,
metrics in their units, checkpoints that keep the per-epoch history."""

import math

import pytest
import pytorch_lightning as pl
import torch

from models import schedules
from models.config import Config
from models.data import ImageDataModule
from models.module import VAE, step_terms
from models.train import fit


def test_seed_configuration_collapses_and_sum_with_warmup_does_not(tiny, images):
    # The seed question at small scale: MSE averaged over pixels, KL summed, weight 1.
    seed = fit(Config.from_dict(dict(tiny, max_epochs=6)), images=images).metrics
    fixed = fit(Config.from_dict(dict(tiny, max_epochs=6, recon_reduction="sum",
                                      kl_schedule="linear", kl_warmup_steps=40)),
                images=images).metrics
    assert seed["active_units"] == 0 and seed["collapsed"]
    assert seed["rate"] < 0.5
    assert fixed["active_units"] > 0 and not fixed["collapsed"]
    assert fixed["mse"] < seed["mse"]


def test_same_config_and_seed_give_identical_metrics(tiny, images):
    cfg = Config.from_dict(dict(tiny, max_steps=8))
    a, b = fit(cfg, images=images).metrics, fit(cfg, images=images).metrics
    for key in ("mse", "rate", "neg_elbo", "neg_elbo_own", "active_units", "mutual_info",
                "kl_per_dim"):
        assert a[key] == b[key], key


def test_metrics_and_history_have_every_field(tiny, images):
    result = fit(Config.from_dict(dict(tiny, max_epochs=2, kl_schedule="cyclical")), images=images)
    m = result.metrics
    assert len(m["kl_per_dim"]) == 16
    assert m["rate"] == pytest.approx(sum(m["kl_per_dim"]), rel=1e-5)
    d = 3 * 32 * 32
    assert m["bits_per_dim"] == pytest.approx(m["neg_elbo"] / (d * math.log(2)) + math.log2(255))
    assert m["bits_per_dim_own"] == pytest.approx(
        m["neg_elbo_own"] / (d * math.log(2)) + math.log2(255))
    assert 0 <= m["active_units"] <= 16 and m["images_per_sec"] > 0
    assert [h["epoch"] for h in result.history] == [0, 1]
    # 461 training images at batch 32: 14 steps an epoch, the 4 cycles spread over 28 steps.
    assert [h["step"] for h in result.history] == [14, 28]
    assert [h["kl_weight"] for h in result.history] == [
        schedules.kl_weight(s, schedule="cyclical", ceiling=1.0, warmup_steps=1000,
                            total_steps=28, cycles=4, ratio=0.5) for s in (14, 28)]


@pytest.mark.parametrize("overrides", [
    dict(likelihood="gaussian", sigma_mode="learned"),
    dict(likelihood="gaussian", sigma_mode="optimal", free_bits=0.1),
    dict(likelihood="bernoulli", decoder_activation="none", kl_schedule="sigmoid"),
])


def test_every_likelihood_trains_to_finite_metrics(tiny, images, overrides):
    m = fit(Config.from_dict(dict(tiny, max_steps=4, **overrides)), images=images).metrics
    assert all(torch.isfinite(torch.tensor(m[k])) for k in ("mse", "rate", "neg_elbo"))


def test_resume_from_checkpoint_trains_only_the_remaining_epochs(tiny, images, tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint

    cfg = Config.from_dict(dict(tiny, max_epochs=1))
    ckpt = ModelCheckpoint(dirpath=tmp_path, filename="last", save_top_k=1,
                           enable_version_counter=False)
    fit(cfg, images=images, callbacks=[ckpt])
    assert (tmp_path / "last.ckpt").exists()
    again = fit(cfg.replace(max_epochs=2), images=images, ckpt_path=str(tmp_path / "last.ckpt"))
    assert again.metrics["start_epoch"] == 1 and again.metrics["epochs_trained"] == 1
    assert [h["epoch"] for h in again.history] == [0, 1]


def _validate(overrides, tiny, images, state=None):
    """Validation metrics of an untrained VAE with the weights ``state`` (trains nothing)."""
    cfg = Config.from_dict(dict(tiny, **overrides))
    dm = ImageDataModule(cfg, images[:96])
    dm.setup("fit")
    torch.manual_seed(0)
    model = VAE(cfg.to_dict(), dm.image_shape, 10)
    if state is not None:
        model.load_state_dict(state, strict=False)  # strict: gaussian-learned adds log_sigma
    pl.seed_everything(1, verbose=False)  # the same posterior samples in every run
    pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
               enable_model_summary=False).validate(model, datamodule=dm, verbose=False)
    return model.last_metrics, model.state_dict()


def test_same_decoder_outputs_same_yardstick_whatever_the_likelihood(tiny, images):
    base, state = _validate(dict(likelihood="mse"), tiny, images)
    own = {}
    for name, overrides in (("optimal", dict(likelihood="gaussian", sigma_mode="optimal")),
                            ("learned", dict(likelihood="gaussian", sigma_mode="learned")),
                            ("bernoulli", dict(likelihood="bernoulli")),
                            # no sigmoid layer, read as logits: the same images predicted
                            ("logits", dict(likelihood="bernoulli", decoder_activation="none"))):
        m, _ = _validate(overrides, tiny, images, state)
        for key in ("neg_elbo", "bits_per_dim", "mse", "rate", "mutual_info"):
            assert m[key] == pytest.approx(base[key], rel=1e-5), (name, key)
        own[name] = m["neg_elbo_own"]
    # their own likelihoods still disagree: that is what the yardstick is for
    assert own["optimal"] == pytest.approx(base["neg_elbo_own"], rel=1e-5)
    assert own["bernoulli"] == pytest.approx(own["logits"], rel=1e-3)
    assert abs(own["learned"] - base["neg_elbo"]) > 100
    assert abs(own["bernoulli"] - base["neg_elbo"]) > 100


def test_step_terms_follow_the_schedule_and_backpropagate(tiny, images):
    cfg = Config.from_dict(dict(tiny, kl_schedule="linear", kl_warmup_steps=10))
    model = VAE(cfg.to_dict(), (3, 32, 32), 100)
    x = images[:8].float() / 255
    assert step_terms(model, x, 0).weight == 0.0
    terms = step_terms(model, x, 5)
    assert terms.weight == pytest.approx(0.5)
    assert terms.loss.item() == pytest.approx((terms.recon + 0.5 * terms.kl).item(), rel=1e-6)
    terms.loss.backward()
    assert model.encoder.head.weight.grad is not None
