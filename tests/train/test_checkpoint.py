import json
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from reglab.lab.recipe import Recipe
from reglab.lab.run import RunExistsError, run_recipe
from reglab.train import checkpoint


def test_save_is_atomic_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    checkpoint.save({"epoch": 1, "w": torch.ones(3)}, path)

    real_save = torch.save

    def dies_halfway(obj, f):
        f.write(b"PK\x03\x04 half a zip")  # a torn write
        raise KeyboardInterrupt  # the process is stopped mid-write

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    state = checkpoint.load(path)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"], "no temporary file may be left behind"


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_load_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": Payload()}, path)
    with pytest.raises(pickle.UnpicklingError):
        checkpoint.load(path)


def _strip(history):
    return [{k: v for k, v in r.items() if k != "time"} for r in history]


RECIPE = {  # dropout, momentum, decay, a schedule and early stopping: all their state must resume
    "data": {"name": "digits", "batch_size": 32},
    "model": {"width": 64, "dropout": 0.2},
    "optimizer": {"name": "sgd", "lr": 0.05, "options": {"momentum": 0.9, "weight_decay": 1e-3, "decoupled": True}},
    "schedule": {"name": "cosine", "warmup_epochs": 3},
    "training": {"epochs": 20, "seed": 3},
    "early_stopping": {"enabled": True, "patience": 100},
}


def test_existing_run_is_refused_and_changed_recipe_cannot_resume(tmp_path):
    recipe = Recipe.from_dict({**RECIPE, "schedule": {"name": "cosine", "warmup_epochs": 1}, "training": {"epochs": 2}})
    run_recipe(recipe, tmp_path / "r")
    with pytest.raises(RunExistsError, match="--resume"):
        run_recipe(recipe, tmp_path / "r")
    with pytest.raises(
        ValueError,
        match=r"recipe differs .* \(model.width: \d+ -> 32, training.epochs: 2 -> 5\); resume it with the same "
        r"recipe, or start the new one in another folder",
    ):
        run_recipe(recipe.updated({"model.width": 32, "training.epochs": 5}), tmp_path / "r", resume=True)
    again = run_recipe(recipe, tmp_path / "r", resume=True)  # a finished run is only re-reported
    assert len(again.history) == 2
    with pytest.raises(ValueError, match=r"out .*recipe.toml/sub: .*recipe.toml is a file, not a folder"):
        run_recipe(recipe, tmp_path / "r" / "recipe.toml" / "sub")


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    """Kill `reglab train` mid-run with SIGKILL, resume it: same weights and history."""
    recipe = Recipe.from_dict(RECIPE)
    recipe.save(tmp_path / "recipe.toml")
    straight = run_recipe(recipe, tmp_path / "straight", threads="auto")  # the threads reglab train picks

    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "reglab.lab.cli",
        "train",
        "--recipe",
        str(tmp_path / "recipe.toml"),
        "--out",
        str(out),
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    err = proc.communicate()[1]
    assert proc.returncode == -signal.SIGKILL, err.decode()
    interrupted = checkpoint.load(out / "checkpoint.pt")
    assert not interrupted["finished"] and 0 < interrupted["trainer"]["epoch"] < 20, "the kill must land mid-run"

    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert _strip(json.loads((out / "history.json").read_text())) == _strip(straight.history)
    final = checkpoint.load(out / "checkpoint.pt")["trainer"]["model"]
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(final[name], tensor), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_acc"] == straight.summary["test_acc"]


def test_checkpoint_every_n_epochs_and_resume_from_it_is_exact(tmp_path, monkeypatch):
    """``checkpoint_every=3``: saves at epochs 3 and 6; a run stopped at epoch 5 resumes
    from epoch 3 to the uninterrupted run's history."""
    recipe = Recipe().updated({"data.name": "digits", "model.width": 32, "training.epochs": 7})
    full = run_recipe(recipe, tmp_path / "full", plots=False)
    saved = []
    real_save, real_end = checkpoint.save, checkpoint.Checkpointer.on_epoch_end

    def spy(obj, path):
        saved.append(obj["trainer"]["epoch"])
        real_save(obj, path)

    def end_then_crash(self, trainer, record):
        real_end(self, trainer, record)
        if trainer.epoch == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", spy)
    monkeypatch.setattr(checkpoint.Checkpointer, "on_epoch_end", end_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, tmp_path / "every3", plots=False, checkpoint_every=3)
    assert saved == [3]
    monkeypatch.setattr(checkpoint.Checkpointer, "on_epoch_end", real_end)
    resumed = run_recipe(recipe, tmp_path / "every3", resume=True, plots=False, checkpoint_every=3)
    assert saved == [3, 6]
    assert not (tmp_path / "every3" / "curves.png").exists()
    strip = lambda h: [{k: v for k, v in r.items() if k != "time"} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    with pytest.raises(ValueError, match="checkpoint every"):
        checkpoint.Checkpointer(tmp_path / "x.pt", every=0)
