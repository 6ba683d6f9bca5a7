"""The objective's checkpoints: a resumed trial reproduces the uninterrupted one (random states
restored), a corrupt or refused checkpoint restarts the trial from scratch, the final epoch
writes one only when the study keeps them, and a store that cannot take the images leaves the
metrics recorded with the miss noted."""

import json

import optuna
import pytest
import torch
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState
from optuna_dashboard import get_note

from sweep import optuna_private
from sweep.optuna_private import CONSTRAINTS_KEY
from sweep.runner.objective import Objective
from sweep.runner.requeue import Requeue
from sweep.space import parse_space
from sweep.storage import trial_record
from sweep.storage.stores import FolderCheckpoints

METRICS = ("mse", "rate", "neg_elbo", "active_units", "mutual_info")


def space_of(tiny: dict, epochs: int = 3):
    # A KL warm-up longer than the run: no collapse stop; no pruner: every epoch runs.
    return parse_space({"objectives": ["mse", "rate"], "search": {}, "pruner": "none",
                        "fixed": {**tiny, "max_epochs": epochs, "kl_schedule": "linear",
                                  "kl_warmup_steps": 100_000}})


def study() -> optuna.Study:
    return optuna.create_study(directions=["minimize", "minimize"])


def interrupted_then_resumed(tmp_path, space, images, *, spoil=None):
    """Trial 0 stopped at the end of its second epoch (its checkpoint is the first's), then
    re-queued and run again from the same checkpoint folder; returns the re-run."""
    s = study()
    store = FileSystemArtifactStore(str(tmp_path))
    epochs = []

    def stop_at_second_epoch():
        epochs.append(1)
        if len(epochs) == 2:
            raise KeyboardInterrupt

    cut = Objective(space, images, store, tmp_path / "ckpt", on_epoch=stop_at_second_epoch)
    trial = s.ask()
    with pytest.raises(KeyboardInterrupt):
        cut(trial)
    last = tmp_path / "ckpt" / "trial-0" / "last.ckpt"
    assert last.exists()
    if spoil is not None:
        spoil(last)
    Requeue("test")(s, s.tell(trial, state=TrialState.FAIL))
    again = Objective(space, images, store, tmp_path / "ckpt")
    rerun = s.ask()
    s.tell(rerun, again(rerun))
    return s.trials[1]


def test_a_resumed_trial_reproduces_the_uninterrupted_one(tmp_path, tiny, images):
    space = space_of(tiny)
    whole = study()
    whole.optimize(Objective(space, images, FileSystemArtifactStore(str(tmp_path)),
                             tmp_path / "whole"), n_trials=1)
    expected = whole.trials[0].user_attrs
    rerun = interrupted_then_resumed(tmp_path, space, images)
    got = rerun.user_attrs
    histories = [trial_record.history(t) for t in (whole.trials[0], rerun)]
    assert rerun.state == TrialState.COMPLETE
    # Relative to the study's checkpoint store: its path is this machine's.
    assert got["resumed_from"] == "trial-0/last.ckpt" and got["start_epoch"] == 1
    assert str(tmp_path) not in json.dumps([rerun.user_attrs, rerun.system_attrs])
    assert got["retry_of"] == 0 and got["retry"] == 1
    for key in METRICS:
        assert got[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-7), key
    assert [h["epoch"] for h in histories[1]] == [0, 1, 2]
    assert histories[1][-1]["rate"] == pytest.approx(histories[0][-1]["rate"], rel=1e-5)


def test_checkpoints_load_with_weights_only(tmp_path, tiny, images):
    s = study()
    Objective(space_of(tiny, 1), images, FileSystemArtifactStore(str(tmp_path)),
              tmp_path / "ckpt", keep_checkpoints=True)(s.ask())
    state = torch.load(tmp_path / "ckpt" / "trial-0" / "last.ckpt", weights_only=True)
    assert "RandomState" in str(list(state["callbacks"]))


@pytest.mark.parametrize("write,why", [
    (lambda p: p.write_bytes(b"PK\x03\x04 cut"), "a write was cut short"),
    (lambda p: torch.save({"epoch": 0}, p, _use_new_zipfile_serialization=False),
     "legacy (pickle, not zip)"),
], ids=["truncated", "legacy"])
def test_a_refused_checkpoint_says_why(tmp_path, tiny, write, why):
    from models.config import Config
    from sweep.runner.objective import usable_checkpoint

    path = tmp_path / "last.ckpt"
    write(path)
    resume_from, reason = usable_checkpoint(path, Config.from_dict(dict(tiny)))
    assert resume_from is None and reason is not None and why in reason, reason


@pytest.mark.parametrize("spoil,why", [
    (lambda p: p.write_bytes(p.read_bytes()[:200]), "not a whole checkpoint"),
    # A pickle naming a global the weights-only loader refuses (it would run on load).
    (lambda p: torch.save({"state_dict": {}, "evil": print}, p), "Unpickl"),
], ids=["truncated", "refused"])
def test_a_bad_checkpoint_restarts_the_trial_from_scratch(tmp_path, tiny, images, spoil, why):
    rerun = interrupted_then_resumed(tmp_path, space_of(tiny, 2), images, spoil=spoil)
    assert rerun.state == TrialState.COMPLETE
    assert rerun.user_attrs["resumed_from"] is None and rerun.user_attrs["start_epoch"] == 0
    assert why in rerun.user_attrs["checkpoint_refused"]


class FullStore:
    def write(self, artifact_id, content_body):
        raise OSError(28, "No space left on device")

    def open_reader(self, artifact_id):
        raise FileNotFoundError(artifact_id)

    def remove(self, artifact_id):
        pass


def test_a_store_that_cannot_take_the_images_leaves_the_metrics(tmp_path, tiny, images):
    s = study()
    s.optimize(Objective(space_of(tiny, 1), images, FullStore(), tmp_path / "ckpt"), n_trials=1)
    trial = s.trials[0]
    assert trial.state == TrialState.COMPLETE and trial.values == [trial.user_attrs["mse"],
                                                                    trial.user_attrs["rate"]]
    assert "No space left on device" in trial.user_attrs["artifacts_missing"]


def test_a_checkpoint_of_the_final_epoch_is_trained_again_to_the_same_result(tmp_path, tiny,
                                                                             images):
    # The worker died between the last save and recording the result: nothing is left to
    # train, so a resume would give no metrics; the re-run trains again, to the same values.
    s = study()
    store = FileSystemArtifactStore(str(tmp_path))
    space = space_of(tiny, 1)
    first = s.ask()
    values = Objective(space, images, store, tmp_path / "ckpt", keep_checkpoints=True)(first)
    Requeue("test")(s, s.tell(first, state=TrialState.FAIL))
    rerun = s.ask()
    again = Objective(space, images, store, tmp_path / "ckpt")(rerun)
    attrs = s.trials[1].user_attrs
    assert "final epoch" in attrs["checkpoint_refused"] and attrs["resumed_from"] is None
    assert again == pytest.approx(values, rel=1e-6)


class CountingCheckpoints(FolderCheckpoints):
    """The folder store, counting the checkpoints handed to it."""

    def __init__(self, root):
        super().__init__(root)
        self.writes = 0

    def saved(self, root: int) -> None:
        self.writes += 1


@pytest.mark.parametrize("keep,writes", [(False, 1), (True, 2)])
def test_the_final_epoch_writes_a_checkpoint_only_for_a_study_that_keeps_them(
        tmp_path, tiny, images, keep, writes):
    # Nothing resumes from a final epoch's checkpoint: unless kept, it is not written.
    checkpoints = CountingCheckpoints(tmp_path / "ckpt")
    s = study()
    s.optimize(Objective(space_of(tiny, 2), images, FileSystemArtifactStore(str(tmp_path)),
                         checkpoints, keep_checkpoints=keep), n_trials=1)
    assert s.trials[0].state == TrialState.COMPLETE and checkpoints.writes == writes
    assert (tmp_path / "ckpt" / "trial-0" / "last.ckpt").exists() == keep


def test_a_run_that_ends_collapsed_before_the_stop_could_fire_is_infeasible_and_says_why(
        tmp_path, tiny, images):
    # The warm-up outlasts the run, so the collapse stop never fires; no unit passes the
    # activity threshold, so the run ends with none active all the same.
    space = space_of({**tiny, "au_threshold": 1e9}, epochs=1)
    s = study()
    objective = Objective(space, images, FileSystemArtifactStore(str(tmp_path)), tmp_path / "ckpt")
    trial = s.ask()
    s.tell(trial, objective(trial))
    done = s.trials[0]
    assert done.state == TrialState.COMPLETE and done.user_attrs["active_units"] == 0
    assert done.system_attrs[CONSTRAINTS_KEY] == [1.0]
    assert done.user_attrs["collapse_reason"] == "posterior collapse: 0 active units at epoch 1"
    # The dashboard shows the trial's note first: it says so in its first line.
    note = get_note(optuna.Trial(s, optuna_private.trial_id(done))).splitlines()
    assert note[0] == "## posterior collapse: 0 active units at epoch 1"
    assert note[2].startswith("At the end of training, during the KL warm-up (it ends at step "
                              "100000): rate ")


class RunsCode:
    """Unpickled in full, it creates ``path``: what a malicious checkpoint would run."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def test_a_checkpoint_swapped_after_its_check_runs_no_code(tmp_path, tiny, images, monkeypatch):
    # With this variable torch's own default is the full unpickler: only an explicit
    # weights_only=True in every load keeps the swapped file's code from running.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    import pickle

    import sweep.runner.objective as objective_module

    marker = tmp_path / "marker"
    checked = objective_module.usable_checkpoint
    swapped = []

    def check_then_swap(path, cfg):
        resume_from, refused = checked(path, cfg)
        if resume_from is not None:  # between the check and Lightning's read
            torch.save({"state_dict": {}, "evil": RunsCode(marker)}, resume_from)
            swapped.append(resume_from)
        return resume_from, refused

    monkeypatch.setattr(objective_module, "usable_checkpoint", check_then_swap)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        interrupted_then_resumed(tmp_path, space_of(tiny, 2), images)
    assert swapped and not marker.exists()
